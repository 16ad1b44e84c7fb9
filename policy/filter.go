package policy

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/wnv/wnv/packet"
)

// Filters select objects for Get, Set and Remove. A zero field matches
// anything; an empty filter matches every object. Addresses are compared in
// canonical form, so CustomerAddress 0.0.0.0 selects the IPv4 L2Only and
// GatewayWildcard records and NextHop 0.0.0.0 the IPv4 on-link routes.

type LookupRecordFilter struct {
	CustomerAddress netip.Addr
	VirtualSubnetID VSID
	MACAddress      packet.MAC
	ProviderAddress netip.Addr
	CustomerID      GUID
	VMName          string
	// Unusable and Unsynchronized select by state when set.
	Unusable       *bool
	Unsynchronized *bool
}

func (f *LookupRecordFilter) match(r *LookupRecord) bool {
	return (!f.CustomerAddress.IsValid() || f.CustomerAddress.Unmap() == r.CustomerAddress) &&
		(f.VirtualSubnetID == 0 || f.VirtualSubnetID == r.VirtualSubnetID) &&
		(f.MACAddress.IsZero() || f.MACAddress == r.MACAddress) &&
		(!f.ProviderAddress.IsValid() || f.ProviderAddress.Unmap() == r.ProviderAddress) &&
		(f.CustomerID.IsZero() || f.CustomerID == r.CustomerID) &&
		(f.VMName == "" || f.VMName == r.VMName) &&
		(f.Unusable == nil || *f.Unusable == r.Unusable) &&
		(f.Unsynchronized == nil || *f.Unsynchronized == r.Unsynchronized)
}

func (f *LookupRecordFilter) empty() bool { return *f == LookupRecordFilter{} }

// LookupRecordChange holds the properties Set may change on a lookup record;
// nil fields are left as they are.
type LookupRecordChange struct {
	ProviderAddress *netip.Addr
	CustomerID      *GUID
	Context         *string
	Rule            *Rule
	VMName          *string
	UseVmMACAddress *bool
	// Unsynchronized is what the change leaves the mark at: only a redirect
	// sets it, any other Set clears it. Not part of the provider API.
	Unsynchronized bool `json:"-"`
}

func (c *LookupRecordChange) apply(r *LookupRecord) {
	r.Unsynchronized = c.Unsynchronized
	if c.ProviderAddress != nil {
		r.ProviderAddress = *c.ProviderAddress
	}
	if c.CustomerID != nil {
		r.CustomerID = *c.CustomerID
	}
	if c.Context != nil {
		r.Context = *c.Context
	}
	if c.Rule != nil {
		r.Rule = *c.Rule
	}
	if c.VMName != nil {
		r.VMName = *c.VMName
	}
	if c.UseVmMACAddress != nil {
		r.UseVmMACAddress = *c.UseVmMACAddress
	}
}

type CustomerRouteFilter struct {
	RoutingDomainID   GUID
	VirtualSubnetID   VSID
	DestinationPrefix netip.Prefix
	NextHop           netip.Addr
	CustomerID        GUID
}

func (f *CustomerRouteFilter) match(r *CustomerRoute) bool {
	return (f.RoutingDomainID.IsZero() || f.RoutingDomainID == r.RoutingDomainID) &&
		(f.VirtualSubnetID == 0 || f.VirtualSubnetID == r.VirtualSubnetID) &&
		(!f.DestinationPrefix.IsValid() || f.DestinationPrefix == r.DestinationPrefix) &&
		(!f.NextHop.IsValid() || f.NextHop.Unmap() == r.NextHop) &&
		(f.CustomerID.IsZero() || f.CustomerID == r.CustomerID)
}

func (f *CustomerRouteFilter) empty() bool { return *f == CustomerRouteFilter{} }

type ProviderAddressFilter struct {
	ProviderAddress netip.Addr
	InterfaceIndex  int
	VlanID          uint16
}

func (f *ProviderAddressFilter) match(p *ProviderAddress) bool {
	return (!f.ProviderAddress.IsValid() || f.ProviderAddress.Unmap() == p.ProviderAddress) &&
		(f.InterfaceIndex == 0 || f.InterfaceIndex == p.InterfaceIndex) &&
		(f.VlanID == 0 || f.VlanID == p.VlanID)
}

func (f *ProviderAddressFilter) empty() bool { return *f == ProviderAddressFilter{} }

type ProviderRouteFilter struct {
	InterfaceIndex    int
	DestinationPrefix netip.Prefix
	NextHop           netip.Addr
	CustomerID        GUID
}

func (f *ProviderRouteFilter) match(r *ProviderRoute) bool {
	return (f.InterfaceIndex == 0 || f.InterfaceIndex == r.InterfaceIndex) &&
		(!f.DestinationPrefix.IsValid() || f.DestinationPrefix == r.DestinationPrefix) &&
		(!f.NextHop.IsValid() || f.NextHop.Unmap() == r.NextHop) &&
		(f.CustomerID.IsZero() || f.CustomerID == r.CustomerID)
}

func (f *ProviderRouteFilter) empty() bool { return *f == ProviderRouteFilter{} }

// Deterministic orders for listings.

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func compareRecords(a, b *LookupRecord) int {
	if c := cmp.Compare(a.VirtualSubnetID, b.VirtualSubnetID); c != 0 {
		return c
	}
	if c := a.CustomerAddress.Compare(b.CustomerAddress); c != 0 {
		return c
	}
	return slices.Compare(a.MACAddress[:], b.MACAddress[:])
}

func compareRoutes(a, b *CustomerRoute) int {
	if c := slices.Compare(a.RoutingDomainID[:], b.RoutingDomainID[:]); c != 0 {
		return c
	}
	if c := cmp.Compare(a.VirtualSubnetID, b.VirtualSubnetID); c != 0 {
		return c
	}
	if c := comparePrefixes(a.DestinationPrefix, b.DestinationPrefix); c != 0 {
		return c
	}
	return a.NextHop.Compare(b.NextHop)
}

func compareProviderRoutes(a, b *ProviderRoute) int {
	if c := cmp.Compare(a.InterfaceIndex, b.InterfaceIndex); c != 0 {
		return c
	}
	if c := comparePrefixes(a.DestinationPrefix, b.DestinationPrefix); c != 0 {
		return c
	}
	return a.NextHop.Compare(b.NextHop)
}

// Listings of a snapshot, copied and in a deterministic order.

// LookupRecords returns the records matching f, ordered by VSID, CA, MAC.
func (t *Table) LookupRecords(f LookupRecordFilter) []LookupRecord {
	ps := t.matchRecords(&f)
	out := make([]LookupRecord, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

func (t *Table) matchRecords(f *LookupRecordFilter) []*LookupRecord {
	var ps []*LookupRecord
	switch {
	case f.VirtualSubnetID != 0 && f.CustomerAddress.IsValid() && !f.CustomerAddress.IsUnspecified():
		if r, ok := t.recordOf(f.VirtualSubnetID, f.CustomerAddress); ok && f.match(r) {
			ps = append(ps, r)
		}
		return ps
	case f.VirtualSubnetID != 0 && !f.MACAddress.IsZero():
		rs, _ := t.byMAC.get(makeMACKey(uint32(f.VirtualSubnetID), f.MACAddress))
		for _, r := range rs {
			if f.match(r) {
				ps = append(ps, r)
			}
		}
	default:
		for r := range t.byCA.all {
			if f.match(r) {
				ps = append(ps, r)
			}
		}
		for r := range t.byZero.all {
			if f.match(r) {
				ps = append(ps, r)
			}
		}
	}
	slices.SortFunc(ps, compareRecords)
	return ps
}

// CustomerRoutes returns the routes matching f, ordered by RoutingDomainID,
// VSID, prefix, next hop.
func (t *Table) CustomerRoutes(f CustomerRouteFilter) []CustomerRoute {
	ps := t.matchRoutes(&f)
	out := make([]CustomerRoute, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

func (t *Table) matchRoutes(f *CustomerRouteFilter) []*CustomerRoute {
	var ps []*CustomerRoute
	for rd, rt := range t.rds {
		if !f.RoutingDomainID.IsZero() && rd != f.RoutingDomainID {
			continue
		}
		for _, r := range rt.routes {
			if f.match(r) {
				ps = append(ps, r)
			}
		}
	}
	slices.SortFunc(ps, compareRoutes)
	return ps
}

// ProviderAddresses returns the PAs matching f in address order.
func (t *Table) ProviderAddresses(f ProviderAddressFilter) []ProviderAddress {
	ps := t.matchPAs(&f)
	out := make([]ProviderAddress, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

func (t *Table) matchPAs(f *ProviderAddressFilter) []*ProviderAddress {
	var ps []*ProviderAddress
	for _, p := range t.pas {
		if f.match(p) {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *ProviderAddress) int { return a.ProviderAddress.Compare(b.ProviderAddress) })
	return ps
}

// ProviderRoutes returns the provider routes matching f, ordered by
// InterfaceIndex, prefix, next hop.
func (t *Table) ProviderRoutes(f ProviderRouteFilter) []ProviderRoute {
	ps := t.matchProviderRoutes(&f)
	out := make([]ProviderRoute, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

func (t *Table) matchProviderRoutes(f *ProviderRouteFilter) []*ProviderRoute {
	var ps []*ProviderRoute
	for _, r := range t.proutes {
		if f.match(r) {
			ps = append(ps, r)
		}
	}
	slices.SortFunc(ps, compareProviderRoutes)
	return ps
}

// Objects returns a full copy of the snapshot's desired state.
func (t *Table) Objects() Objects {
	return Objects{
		LookupRecords:     t.LookupRecords(LookupRecordFilter{}),
		CustomerRoutes:    t.CustomerRoutes(CustomerRouteFilter{}),
		ProviderAddresses: t.ProviderAddresses(ProviderAddressFilter{}),
		ProviderRoutes:    t.ProviderRoutes(ProviderRouteFilter{}),
		Global:            t.global,
	}
}

// Objects is the whole desired state of a host, for checkpoints and
// policy-server sync.
type Objects struct {
	LookupRecords     []LookupRecord    `json:"LookupRecords"`
	CustomerRoutes    []CustomerRoute   `json:"CustomerRoutes"`
	ProviderAddresses []ProviderAddress `json:"ProviderAddresses"`
	ProviderRoutes    []ProviderRoute   `json:"ProviderRoutes"`
	Global            Global            `json:"Global"`
}
