package policy

// Diff returns the Batch that turns the lookup records and customer routes
// of cur into those of want, for reconciling by level: records missing from
// want are removed, new ones added, changed ones put; routes that differ in
// anything but identity are removed and added again. cur is normally
// Store.Objects(); want may be unnormalized (it is normalized the way Add
// would, which drops the derived Unusable state). Provider addresses,
// provider routes and Global are not covered.
func Diff(cur, want Objects) Batch {
	var b Batch
	curRecs := make(map[recKey]LookupRecord, len(cur.LookupRecords))
	for _, r := range cur.LookupRecords {
		_ = checkLookupRecord(&r)
		curRecs[keyOfRecord(&r)] = r
	}
	wantRecs := make(map[recKey]bool, len(want.LookupRecords))
	for _, r := range want.LookupRecords {
		_ = checkLookupRecord(&r)
		k := keyOfRecord(&r)
		wantRecs[k] = true
		if c, ok := curRecs[k]; !ok {
			b.AddLookupRecords = append(b.AddLookupRecords, r)
		} else if c != r {
			b.PutLookupRecords = append(b.PutLookupRecords, r)
		}
	}
	for _, r := range cur.LookupRecords {
		_ = checkLookupRecord(&r)
		if !wantRecs[keyOfRecord(&r)] {
			b.RemoveLookupRecords = append(b.RemoveLookupRecords, r)
		}
	}

	curRoutes := make(map[rdRouteKey]CustomerRoute, len(cur.CustomerRoutes))
	for _, r := range cur.CustomerRoutes {
		_ = checkCustomerRoute(&r)
		curRoutes[keyOfRoute(&r)] = r
	}
	kept := make(map[rdRouteKey]bool, len(want.CustomerRoutes))
	for _, r := range want.CustomerRoutes {
		_ = checkCustomerRoute(&r)
		k := keyOfRoute(&r)
		c, ok := curRoutes[k]
		if ok && c == r {
			kept[k] = true
			continue
		}
		b.AddCustomerRoutes = append(b.AddCustomerRoutes, r)
	}
	for _, r := range cur.CustomerRoutes {
		_ = checkCustomerRoute(&r)
		if !kept[keyOfRoute(&r)] {
			b.RemoveCustomerRoutes = append(b.RemoveCustomerRoutes, r)
		}
	}
	return b
}

// recKey is a record's identity: (VSID, CA) and the MAC.
type recKey struct {
	ca  caKey
	mac [6]byte
}

func keyOfRecord(r *LookupRecord) recKey {
	return recKey{ca: makeCAKey(r.VirtualSubnetID, r.CustomerAddress), mac: r.MACAddress}
}

type rdRouteKey struct {
	rd GUID
	crKey
}

func keyOfRoute(r *CustomerRoute) rdRouteKey {
	return rdRouteKey{rd: r.RoutingDomainID, crKey: routeKey(r)}
}
