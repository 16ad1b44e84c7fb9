package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/wnv/wnv/packet"
)

// tx is one all-or-nothing change: a writable view of a Table that copies
// what it writes (shards, small maps) and shares the rest. Dropping a tx
// leaves the old Table untouched, which is how every failed operation leaves
// the state exactly as it was.
type tx struct {
	old *Table
	t   Table

	byCA   cowShards[caKey, *LookupRecord]
	byZero cowShards[macKey, *LookupRecord]
	byMAC  cowShards[macKey, []*LookupRecord]

	gwOwned, vsidsOwned, pasOwned, proutesOwned, natOwned bool
	natTouched                                            map[netip.Addr]bool // PAs whose Nat records changed

	l2Work map[VSID]map[packet.MAC][]*LookupRecord // L2Only records of the VSIDs touched

	rdWork   map[GUID]map[crKey]*CustomerRoute // routing domains touched
	linked   map[VSID]bool                     // VSIDs that gained an on-link prefix
	unlinked map[VSID]bool                     // VSIDs that lost an on-link prefix
	changed  bool

	// Bulk allocation for large batches: one slab instead of a million
	// small objects.
	slab    []LookupRecord
	ptrSlab []*LookupRecord
}

func newTx(old *Table) *tx {
	t := *old
	t.moves = nil
	return &tx{
		old:    old,
		t:      t,
		byCA:   newCOW(old.byCA),
		byZero: newCOW(old.byZero),
		byMAC:  newCOW(old.byMAC),
	}
}

// reset starts x over from an empty state, keeping the version sequence.
func (x *tx) reset() {
	e := emptyTable()
	e.version = x.old.version
	*x = *newTx(e)
	x.changed = true
}

// clearRecords drops every lookup record without touching routes.
func (x *tx) clearRecords() {
	e := emptyTable()
	x.byCA, x.byZero, x.byMAC = newCOW(e.byCA), newCOW(e.byZero), newCOW(e.byMAC)
	x.t.gw, x.t.l2only, x.t.nrec, x.t.nUnusable = e.gw, e.l2only, 0, 0
	for pa := range x.t.nat {
		x.touchNat(pa)
	}
	x.t.nat = e.nat
	x.l2Work = nil
	x.gwOwned, x.natOwned, x.changed = true, true, true
}

// expect sizes the tx for n new lookup records.
func (x *tx) expect(n int) {
	if n < nShards {
		return
	}
	per := n/nShards + n/nShards/8 + 8
	x.byCA.hint, x.byMAC.hint = per, per
	x.slab = make([]LookupRecord, 0, n)
	x.ptrSlab = make([]*LookupRecord, 0, n)
}

func (x *tx) commit() *Table {
	x.restate()
	t := x.t
	t.byCA, t.byZero, t.byMAC = x.byCA.arr, x.byZero.arr, x.byMAC.arr
	if len(x.rdWork) > 0 {
		t.rds = maps.Clone(x.old.rds)
		for rd, w := range x.rdWork {
			if len(w) == 0 {
				delete(t.rds, rd)
			} else {
				t.rds[rd] = buildRD(w)
			}
		}
	}
	if x.pasOwned || len(x.natTouched) > 0 {
		t.pickLocalPAs()
	}
	x.commitL2(&t)
	t.version = x.old.version + 1
	return &t
}

// unusableReason says why the data path cannot use r with the objects x
// holds now, or "" if it can. Objects may be provisioned in any order, so
// these are states a record waits in, not errors.
func (x *tx) unusableReason(r *LookupRecord) string {
	pfx, covered := x.onLinkFor(r.VirtualSubnetID, r.CustomerAddress)
	// A record of a subnet's gateway address gives the gateway its MAC
	// and is never sent to: Microsoft's scripts put it at the link-local
	// PA 169.254.254.254, which no host configures.
	gateway := covered && GatewayAddress(pfx) == r.CustomerAddress
	switch {
	case !zeroCA(r.Type) && !covered:
		return fmt.Sprintf("no customer route: no on-link route of VirtualSubnetID %d covers CustomerAddress %s",
			r.VirtualSubnetID, r.CustomerAddress)
	case r.ProviderAddress.IsLinkLocalUnicast() && !gateway && !x.t.IsLocalPA(r.ProviderAddress):
		// No other host can be reached at a link-local PA.
		return fmt.Sprintf("ProviderAddress %s is link-local, so it can only be this host's, and this host has not configured it",
			r.ProviderAddress)
	case r.Rule == TranslationMethodNat:
		return x.natReason(r)
	case r.Rule != TranslationMethodEncap:
		return fmt.Sprintf("Rule %s is not implemented: use TranslationMethodEncap or TranslationMethodNat", r.Rule)
	}
	return ""
}

// natReason says why IP Rewrite cannot carry r, or "": it swaps r's CA for
// its PA in the IP header, so the PA must stand for that one CA and be of
// its family.
func (x *tx) natReason(r *LookupRecord) string {
	switch {
	case zeroCA(r.Type):
		return fmt.Sprintf("Rule Nat needs a Static or Dynamic record: a record of Type %s stands for many CAs, which IP Rewrite cannot tell apart at one PA; use Rule Encap",
			r.Type)
	case r.CustomerAddress.Is4() != r.ProviderAddress.Is4():
		return fmt.Sprintf("Rule Nat needs a ProviderAddress of the CustomerAddress's family: IP Rewrite cannot turn %s into %s in an IP header",
			family(r.CustomerAddress), family(r.ProviderAddress))
	}
	for _, o := range x.t.nat[r.ProviderAddress] {
		if o.VirtualSubnetID != r.VirtualSubnetID || o.CustomerAddress != r.CustomerAddress {
			return fmt.Sprintf("ProviderAddress %s is also the PA of CustomerAddress %s in VirtualSubnetID %d, and IP Rewrite needs a PA of its own for every CA",
				r.ProviderAddress, o.CustomerAddress, o.VirtualSubnetID)
		}
	}
	return ""
}

// isNat reports whether r belongs in the Nat index.
func isNat(r *LookupRecord) bool { return r.Rule == TranslationMethodNat && !zeroCA(r.Type) }

// natReplace swaps old for nw in the Nat index (either may be nil or not
// a Nat record), copying the index on the tx's first change of it.
func (x *tx) natReplace(old, nw *LookupRecord) {
	if (old == nil || !isNat(old)) && (nw == nil || !isNat(nw)) {
		return
	}
	if !x.natOwned {
		x.t.nat = maps.Clone(x.old.nat)
		if x.t.nat == nil {
			x.t.nat = map[netip.Addr][]*LookupRecord{}
		}
		x.natOwned = true
	}
	if old != nil && isNat(old) {
		pa := old.ProviderAddress
		rs := slices.DeleteFunc(slices.Clone(x.t.nat[pa]), func(r *LookupRecord) bool { return r == old })
		if len(rs) == 0 {
			delete(x.t.nat, pa)
		} else {
			x.t.nat[pa] = rs
		}
		x.touchNat(pa)
	}
	if nw != nil && isNat(nw) {
		pa := nw.ProviderAddress
		x.t.nat[pa] = append(slices.Clip(x.t.nat[pa]), nw)
		x.touchNat(pa)
	}
}

func (x *tx) touchNat(pa netip.Addr) {
	if x.natTouched == nil {
		x.natTouched = map[netip.Addr]bool{}
	}
	x.natTouched[pa] = true
}

func (x *tx) setStatus(r *LookupRecord) {
	r.UnusableReason = x.unusableReason(r)
	r.Unusable = r.UnusableReason != ""
}

// restate recomputes the state of the records this change may have made
// usable or unusable that it did not write itself: those of VSIDs whose
// on-link routes changed and, when this host's PAs changed, those with a
// link-local PA. A new on-link route can only make records usable, so it
// costs nothing while every record is usable; a removed one, or a change of
// PAs, costs a scan of the records.
func (x *tx) restate() {
	x.restateNat()
	gained := len(x.linked) > 0 && x.t.nUnusable > 0
	if len(x.unlinked) == 0 && !gained && !x.pasOwned {
		return
	}
	var stale []*LookupRecord
	check := func(r *LookupRecord) {
		if (x.unlinked[r.VirtualSubnetID] || gained && r.Unusable && x.linked[r.VirtualSubnetID] ||
			x.pasOwned && r.ProviderAddress.IsLinkLocalUnicast()) && x.unusableReason(r) != r.UnusableReason {
			stale = append(stale, r)
		}
	}
	for r := range x.byCA.arr.all {
		check(r)
	}
	if x.pasOwned {
		for r := range x.byZero.arr.all {
			check(r)
		}
	}
	for _, p := range stale {
		n := *p
		x.setStatus(&n)
		x.replace(p, x.alloc(&n))
	}
}

// restateNat recomputes the state of the Nat records at the PAs whose Nat
// records changed: one PA shared by two CAs makes both unusable, and
// removing one makes the other usable again.
func (x *tx) restateNat() {
	for pa := range x.natTouched {
		for _, r := range slices.Clone(x.t.nat[pa]) {
			if x.unusableReason(r) != r.UnusableReason {
				n := *r
				x.setStatus(&n)
				x.replace(r, x.alloc(&n))
			}
		}
	}
}

func (x *tx) onLinkFor(vsid VSID, ca netip.Addr) (netip.Prefix, bool) {
	v, ok := x.t.vsids[vsid]
	if !ok {
		return netip.Prefix{}, false
	}
	return v.onLinkFor(ca)
}

// Lookup records.

func recordName(r *LookupRecord) string {
	return fmt.Sprintf("LookupRecord %s %s in VirtualSubnetID %d", r.CustomerAddress, r.MACAddress, r.VirtualSubnetID)
}

func famBit(a netip.Addr) uint32 {
	if a.Is4() {
		return 0
	}
	return v6Bit
}

func zeroKey(r *LookupRecord) macKey {
	return makeMACKey(uint32(r.VirtualSubnetID)|famBit(r.CustomerAddress), r.MACAddress)
}

func (x *tx) alloc(r *LookupRecord) *LookupRecord {
	if len(x.slab) < cap(x.slab) {
		x.slab = append(x.slab, *r)
		return &x.slab[len(x.slab)-1]
	}
	p := new(LookupRecord)
	*p = *r
	return p
}

// findRecord returns the record with r's identity (CA, VSID, MAC); r must be
// normalized.
func (x *tx) findRecord(r *LookupRecord) (*LookupRecord, bool) {
	var p *LookupRecord
	var ok bool
	if r.CustomerAddress.IsUnspecified() {
		p, ok = x.byZero.get(zeroKey(r))
	} else {
		p, ok = x.byCA.get(makeCAKey(r.VirtualSubnetID, r.CustomerAddress))
	}
	if !ok || p.MACAddress != r.MACAddress {
		return nil, false
	}
	return p, true
}

func (x *tx) addRecord(r LookupRecord) (*LookupRecord, error) {
	if err := checkLookupRecord(&r); err != nil {
		return nil, err
	}
	var p *LookupRecord
	if zeroCA(r.Type) {
		zk := zeroKey(&r)
		if _, ok := x.byZero.get(zk); ok {
			return nil, existsf("%s already exists: use Set to change it", recordName(&r))
		}
		if r.Type == GatewayWildcard {
			if g, ok := x.t.gw[zk.vf]; ok {
				return nil, existsf("VirtualSubnetID %d already has an %s GatewayWildcard record with MACAddress %s: remove it first",
					r.VirtualSubnetID, family(r.CustomerAddress), g.MACAddress)
			}
		}
		x.setStatus(&r)
		p = x.alloc(&r)
		x.byZero.set(zk, p)
		switch r.Type {
		case GatewayWildcard:
			x.ownGW()
			x.t.gw[zk.vf] = p
		case L2Only:
			x.l2Replace(nil, p)
		}
	} else {
		k := makeCAKey(r.VirtualSubnetID, r.CustomerAddress)
		if old, ok := x.byCA.get(k); ok {
			if old.MACAddress == r.MACAddress {
				return nil, existsf("%s already exists: use Set to change it", recordName(&r))
			}
			return nil, existsf("CustomerAddress %s in VirtualSubnetID %d is already mapped to MACAddress %s: remove that record first",
				r.CustomerAddress, r.VirtualSubnetID, old.MACAddress)
		}
		x.setStatus(&r)
		p = x.alloc(&r)
		x.byCA.set(k, p)
	}
	x.macAdd(p)
	x.natReplace(nil, p)
	x.t.nrec++
	x.t.nUnusable += b2i(p.Unusable)
	x.changed = true
	return p, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (x *tx) removeRecord(p *LookupRecord) {
	if zeroCA(p.Type) {
		zk := zeroKey(p)
		x.byZero.del(zk)
		switch p.Type {
		case GatewayWildcard:
			if x.t.gw[zk.vf] == p {
				x.ownGW()
				delete(x.t.gw, zk.vf)
			}
		case L2Only:
			x.l2Replace(p, nil)
		}
	} else {
		x.byCA.del(makeCAKey(p.VirtualSubnetID, p.CustomerAddress))
	}
	x.macReplace(p, nil)
	x.natReplace(p, nil)
	x.t.nrec--
	x.t.nUnusable -= b2i(p.Unusable)
	x.changed = true
}

// setRecord applies a Set change to p and validates the result.
func (x *tx) setRecord(p *LookupRecord, c *LookupRecordChange) (*LookupRecord, error) {
	n := *p
	c.apply(&n)
	if err := checkLookupRecord(&n); err != nil {
		return nil, err
	}
	x.setStatus(&n)
	x.moved(p, &n)
	np := x.alloc(&n)
	x.replace(p, np)
	return np, nil
}

// replace puts np, a new version of p with the same identity, in p's place.
func (x *tx) replace(p, np *LookupRecord) {
	if zeroCA(p.Type) {
		zk := zeroKey(p)
		x.byZero.set(zk, np)
		switch p.Type {
		case GatewayWildcard:
			x.ownGW()
			x.t.gw[zk.vf] = np
		case L2Only:
			x.l2Replace(p, np)
		}
	} else {
		x.byCA.set(makeCAKey(p.VirtualSubnetID, p.CustomerAddress), np)
	}
	x.macReplace(p, np)
	x.natReplace(p, np)
	x.t.nUnusable += b2i(np.Unusable) - b2i(p.Unusable)
	x.changed = true
}

func (x *tx) macAdd(p *LookupRecord) {
	k := makeMACKey(uint32(p.VirtualSubnetID), p.MACAddress)
	rs, _ := x.byMAC.get(k)
	var n []*LookupRecord
	if len(rs) == 0 && len(x.ptrSlab) < cap(x.ptrSlab) {
		x.ptrSlab = append(x.ptrSlab, p)
		n = x.ptrSlab[len(x.ptrSlab)-1 : len(x.ptrSlab) : len(x.ptrSlab)]
	} else {
		n = append(slices.Clip(rs), p)
	}
	x.byMAC.set(k, n)
}

// macReplace swaps old for nw in the MAC index, or drops old when nw is nil.
// Slices are never modified in place: older Tables still read them.
func (x *tx) macReplace(old, nw *LookupRecord) {
	k := makeMACKey(uint32(old.VirtualSubnetID), old.MACAddress)
	rs, _ := x.byMAC.get(k)
	n := make([]*LookupRecord, 0, len(rs))
	for _, r := range rs {
		switch {
		case r != old:
			n = append(n, r)
		case nw != nil:
			n = append(n, nw)
		}
	}
	if len(n) == 0 {
		x.byMAC.del(k)
	} else {
		x.byMAC.set(k, n)
	}
}

func (x *tx) ownGW() {
	if !x.gwOwned {
		x.t.gw = maps.Clone(x.old.gw)
		x.gwOwned = true
	}
}

// Customer routes.

func routeName(r *CustomerRoute) string {
	return fmt.Sprintf("CustomerRoute %s via %s in VirtualSubnetID %d of RoutingDomainID %s",
		r.DestinationPrefix, r.NextHop, r.VirtualSubnetID, r.RoutingDomainID)
}

// rdRoutes returns the writable routes of rd.
func (x *tx) rdRoutes(rd GUID) map[crKey]*CustomerRoute {
	if w, ok := x.rdWork[rd]; ok {
		return w
	}
	if x.rdWork == nil {
		x.rdWork = map[GUID]map[crKey]*CustomerRoute{}
	}
	w := map[crKey]*CustomerRoute{}
	if t, ok := x.old.rds[rd]; ok {
		w = maps.Clone(t.routes)
	}
	x.rdWork[rd] = w
	return w
}

func (x *tx) ownVSIDs() {
	if !x.vsidsOwned {
		x.t.vsids = maps.Clone(x.old.vsids)
		x.vsidsOwned = true
	}
}

func (x *tx) addRoute(r CustomerRoute) (*CustomerRoute, error) {
	if err := checkCustomerRoute(&r); err != nil {
		return nil, err
	}
	info := x.t.vsids[r.VirtualSubnetID]
	if info != nil && info.rd != r.RoutingDomainID {
		return nil, existsf("VirtualSubnetID %d belongs to RoutingDomainID %s: a virtual subnet belongs to exactly one routing domain",
			r.VirtualSubnetID, info.rd)
	}
	w := x.rdRoutes(r.RoutingDomainID)
	k := routeKey(&r)
	if _, ok := w[k]; ok {
		return nil, existsf("%s already exists: use Set to change its Metric", routeName(&r))
	}
	p := &r
	w[k] = p
	x.t.ncr++
	n := vsidInfo{rd: r.RoutingDomainID}
	if info != nil {
		n = *info
	}
	n.routes++
	if p.OnLink() {
		n.onLink = append(slices.Clip(n.onLink), p.DestinationPrefix)
		mark(&x.linked, r.VirtualSubnetID)
	}
	x.ownVSIDs()
	x.t.vsids[r.VirtualSubnetID] = &n
	x.changed = true
	return p, nil
}

func (x *tx) removeRoute(p *CustomerRoute) {
	delete(x.rdRoutes(p.RoutingDomainID), routeKey(p))
	x.t.ncr--
	x.ownVSIDs()
	n := *x.t.vsids[p.VirtualSubnetID]
	n.routes--
	if p.OnLink() {
		n.onLink = slices.Clone(n.onLink)
		if i := slices.Index(n.onLink, p.DestinationPrefix); i >= 0 {
			n.onLink = slices.Delete(n.onLink, i, i+1)
		}
		mark(&x.unlinked, p.VirtualSubnetID)
	}
	if n.routes == 0 {
		delete(x.t.vsids, p.VirtualSubnetID)
	} else {
		x.t.vsids[p.VirtualSubnetID] = &n
	}
	x.changed = true
}

func mark(m *map[VSID]bool, v VSID) {
	if *m == nil {
		*m = map[VSID]bool{}
	}
	(*m)[v] = true
}

func (x *tx) setRouteMetric(p *CustomerRoute, metric uint32) *CustomerRoute {
	n := *p
	n.Metric = metric
	x.rdRoutes(p.RoutingDomainID)[routeKey(p)] = &n
	x.changed = true
	return &n
}

// findRoute returns the route with r's identity; r must be normalized.
func (x *tx) findRoute(r *CustomerRoute) (*CustomerRoute, bool) {
	k := routeKey(r)
	if w, ok := x.rdWork[r.RoutingDomainID]; ok {
		p, ok := w[k]
		return p, ok
	}
	if t, ok := x.old.rds[r.RoutingDomainID]; ok {
		p, ok := t.routes[k]
		return p, ok
	}
	return nil, false
}

// Provider addresses and routes: few, so each change copies its map.

func (x *tx) ownPAs() {
	if !x.pasOwned {
		x.t.pas = maps.Clone(x.old.pas)
		x.pasOwned = true
	}
}

func (x *tx) addPA(pa ProviderAddress) (*ProviderAddress, error) {
	if err := checkProviderAddress(&pa); err != nil {
		return nil, err
	}
	if _, ok := x.t.pas[pa.ProviderAddress]; ok {
		return nil, existsf("ProviderAddress %s already exists: remove it first", pa.ProviderAddress)
	}
	x.ownPAs()
	x.t.pas[pa.ProviderAddress] = &pa
	x.changed = true
	return &pa, nil
}

func (x *tx) removePA(p *ProviderAddress) {
	x.ownPAs()
	delete(x.t.pas, p.ProviderAddress)
	x.changed = true
}

func (x *tx) setPA(p *ProviderAddress, c *ProviderAddressChange) (*ProviderAddress, error) {
	n := *p
	c.apply(&n)
	if err := checkProviderAddress(&n); err != nil {
		return nil, err
	}
	if n != *p {
		x.ownPAs()
		x.t.pas[n.ProviderAddress] = &n
		x.changed = true
	}
	return &n, nil
}

func (x *tx) setPAState(a netip.Addr, st AddressState) error {
	if err := checkAddressState(st); err != nil {
		return err
	}
	a = a.Unmap()
	p, ok := x.t.pas[a]
	if !ok {
		return notFoundf("ProviderAddress %s is not configured: add it first", a)
	}
	if p.AddressState == st {
		return nil
	}
	n := *p
	n.AddressState = st
	x.ownPAs()
	x.t.pas[a] = &n
	x.changed = true
	return nil
}

func (x *tx) ownProviderRoutes() {
	if !x.proutesOwned {
		x.t.proutes = maps.Clone(x.old.proutes)
		x.proutesOwned = true
	}
}

func (x *tx) addProviderRoute(r ProviderRoute) (*ProviderRoute, error) {
	if err := checkProviderRoute(&r); err != nil {
		return nil, err
	}
	k := providerRouteKey(&r)
	if _, ok := x.t.proutes[k]; ok {
		return nil, existsf("ProviderRoute %s via %s on InterfaceIndex %d already exists: use Set to change its Metric",
			r.DestinationPrefix, r.NextHop, r.InterfaceIndex)
	}
	x.ownProviderRoutes()
	x.t.proutes[k] = &r
	x.changed = true
	return &r, nil
}

func (x *tx) removeProviderRoute(p *ProviderRoute) {
	x.ownProviderRoutes()
	delete(x.t.proutes, providerRouteKey(p))
	x.changed = true
}

func (x *tx) setProviderRouteMetric(p *ProviderRoute, metric uint32) *ProviderRoute {
	n := *p
	n.Metric = metric
	x.ownProviderRoutes()
	x.t.proutes[providerRouteKey(p)] = &n
	x.changed = true
	return &n
}

// moved notes a record whose PA changes from old to n.
func (x *tx) moved(old, n *LookupRecord) {
	if old.ProviderAddress != n.ProviderAddress {
		x.t.moves = append(x.t.moves, RecordMove{Record: *n, OldPA: old.ProviderAddress})
	}
}
