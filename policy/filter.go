package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/wnv/wnv/packet"
)

// Filters select objects for Get, Set and Remove, as the filter parameters
// of the NetWNV cmdlets do: each property takes a list, and an object
// matches a property when it equals any value in the list (string and GUID
// properties take wildcards, see Wildcard); an empty list matches anything
// and an empty filter every object. Addresses are compared in canonical
// form, so CustomerAddress 0.0.0.0 selects the IPv4 L2Only and
// GatewayWildcard records and NextHop 0.0.0.0 the IPv4 on-link routes.

type LookupRecordFilter struct {
	CustomerAddress []netip.Addr
	VirtualSubnetID []VSID
	MACAddress      []packet.MAC
	ProviderAddress []netip.Addr
	CustomerID      []Wildcard
	Context         []Wildcard
	Rule            []Rule
	VMName          []Wildcard
	UseVmMACAddress []bool
	Type            []RecordType
	// Unusable and Unsynchronized select by the read-only states.
	Unusable       []bool
	Unsynchronized []bool
}

func (f *LookupRecordFilter) match(r *LookupRecord) bool {
	return anyAddr(f.CustomerAddress, r.CustomerAddress) &&
		anyOf(f.VirtualSubnetID, r.VirtualSubnetID) &&
		anyOf(f.MACAddress, r.MACAddress) &&
		anyAddr(f.ProviderAddress, r.ProviderAddress) &&
		anyGUID(f.CustomerID, r.CustomerID) &&
		anyLike(f.Context, r.Context) &&
		anyOf(f.Rule, r.Rule) &&
		anyLike(f.VMName, r.VMName) &&
		anyOf(f.UseVmMACAddress, r.UseVmMACAddress) &&
		anyOf(f.Type, r.Type) &&
		anyOf(f.Unusable, r.Unusable) &&
		anyOf(f.Unsynchronized, r.Unsynchronized)
}

func (f *LookupRecordFilter) empty() bool {
	return len(f.CustomerAddress)+len(f.VirtualSubnetID)+len(f.MACAddress)+len(f.ProviderAddress)+len(f.CustomerID)+
		len(f.Context)+len(f.Rule)+len(f.VMName)+len(f.UseVmMACAddress)+len(f.Type)+len(f.Unusable)+len(f.Unsynchronized) == 0
}

func (f *LookupRecordFilter) String() string {
	var d describe
	describeAny(&d, "CustomerAddress", f.CustomerAddress)
	describeAny(&d, "VirtualSubnetID", f.VirtualSubnetID)
	describeAny(&d, "MACAddress", f.MACAddress)
	describeAny(&d, "ProviderAddress", f.ProviderAddress)
	describeAny(&d, "CustomerID", f.CustomerID)
	describeAny(&d, "Context", f.Context)
	describeAny(&d, "Rule", f.Rule)
	describeAny(&d, "VMName", f.VMName)
	describeAny(&d, "UseVmMACAddress", f.UseVmMACAddress)
	describeAny(&d, "Type", f.Type)
	describeAny(&d, "Unusable", f.Unusable)
	describeAny(&d, "Unsynchronized", f.Unsynchronized)
	return d.String()
}

// anyOf reports whether v is in want, or want is empty.
func anyOf[T comparable](want []T, v T) bool { return len(want) == 0 || slices.Contains(want, v) }

// anyAddr is anyOf for addresses, which the store keeps unmapped.
func anyAddr(want []netip.Addr, a netip.Addr) bool {
	return len(want) == 0 || slices.ContainsFunc(want, func(w netip.Addr) bool { return w.Unmap() == a })
}

func anyLike(want []Wildcard, s string) bool {
	return len(want) == 0 || slices.ContainsFunc(want, func(w Wildcard) bool { return w.Match(s) })
}

// anyGUID matches the braced form and, since ParseGUID takes both, the bare
// one.
func anyGUID(want []Wildcard, g GUID) bool {
	if len(want) == 0 {
		return true
	}
	s := g.String()
	return slices.ContainsFunc(want, func(w Wildcard) bool { return w.Match(s) || w.Match(s[1:37]) })
}

// describe lists the set properties of a filter for not-found errors.
type describe []string

func describeAny[T any](d *describe, field string, vs []T) {
	if len(vs) == 0 {
		return
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	*d = append(*d, field+" "+strings.Join(s, " or "))
}

func (d describe) String() string { return strings.Join(d, " and ") }

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

// ProviderAddressChange holds the properties Set may change on a provider
// address, as Set-NetVirtualizationProviderAddress does; nil fields are left
// as they are.
type ProviderAddressChange struct {
	PrefixLength *uint8
	VlanID       *uint16
	MACAddress   *packet.MAC
}

func (c *ProviderAddressChange) apply(p *ProviderAddress) {
	if c.PrefixLength != nil {
		p.PrefixLength = *c.PrefixLength
	}
	if c.VlanID != nil {
		p.VlanID = *c.VlanID
	}
	if c.MACAddress != nil {
		p.MACAddress = *c.MACAddress
	}
}

type CustomerRouteFilter struct {
	RoutingDomainID   []Wildcard
	VirtualSubnetID   []VSID
	DestinationPrefix []netip.Prefix
	NextHop           []netip.Addr
	Metric            []uint32
	CustomerID        []Wildcard
}

func (f *CustomerRouteFilter) match(r *CustomerRoute) bool {
	return anyGUID(f.RoutingDomainID, r.RoutingDomainID) &&
		anyOf(f.VirtualSubnetID, r.VirtualSubnetID) &&
		anyOf(f.DestinationPrefix, r.DestinationPrefix) &&
		anyAddr(f.NextHop, r.NextHop) &&
		anyOf(f.Metric, r.Metric) &&
		anyGUID(f.CustomerID, r.CustomerID)
}

func (f *CustomerRouteFilter) empty() bool {
	return len(f.RoutingDomainID)+len(f.VirtualSubnetID)+len(f.DestinationPrefix)+len(f.NextHop)+len(f.Metric)+len(f.CustomerID) == 0
}

func (f *CustomerRouteFilter) String() string {
	var d describe
	describeAny(&d, "RoutingDomainID", f.RoutingDomainID)
	describeAny(&d, "VirtualSubnetID", f.VirtualSubnetID)
	describeAny(&d, "DestinationPrefix", f.DestinationPrefix)
	describeAny(&d, "NextHop", f.NextHop)
	describeAny(&d, "Metric", f.Metric)
	describeAny(&d, "CustomerID", f.CustomerID)
	return d.String()
}

type ProviderAddressFilter struct {
	ProviderAddress  []netip.Addr
	InterfaceIndex   []int
	PrefixLength     []uint8
	VlanID           []uint16
	AddressState     []AddressState
	MACAddress       []packet.MAC
	ManagedByCluster []bool
}

func (f *ProviderAddressFilter) match(p *ProviderAddress) bool {
	return anyAddr(f.ProviderAddress, p.ProviderAddress) &&
		anyOf(f.InterfaceIndex, p.InterfaceIndex) &&
		anyOf(f.PrefixLength, p.PrefixLength) &&
		anyOf(f.VlanID, p.VlanID) &&
		anyOf(f.AddressState, p.AddressState) &&
		anyOf(f.MACAddress, p.MACAddress) &&
		anyOf(f.ManagedByCluster, p.ManagedByCluster)
}

func (f *ProviderAddressFilter) empty() bool {
	return len(f.ProviderAddress)+len(f.InterfaceIndex)+len(f.PrefixLength)+len(f.VlanID)+len(f.AddressState)+
		len(f.MACAddress)+len(f.ManagedByCluster) == 0
}

func (f *ProviderAddressFilter) String() string {
	var d describe
	describeAny(&d, "ProviderAddress", f.ProviderAddress)
	describeAny(&d, "InterfaceIndex", f.InterfaceIndex)
	describeAny(&d, "PrefixLength", f.PrefixLength)
	describeAny(&d, "VlanID", f.VlanID)
	describeAny(&d, "AddressState", f.AddressState)
	describeAny(&d, "MACAddress", f.MACAddress)
	describeAny(&d, "ManagedByCluster", f.ManagedByCluster)
	return d.String()
}

type ProviderRouteFilter struct {
	InterfaceIndex    []int
	DestinationPrefix []netip.Prefix
	NextHop           []netip.Addr
	Metric            []uint32
	CustomerID        []Wildcard
}

func (f *ProviderRouteFilter) match(r *ProviderRoute) bool {
	return anyOf(f.InterfaceIndex, r.InterfaceIndex) &&
		anyOf(f.DestinationPrefix, r.DestinationPrefix) &&
		anyAddr(f.NextHop, r.NextHop) &&
		anyOf(f.Metric, r.Metric) &&
		anyGUID(f.CustomerID, r.CustomerID)
}

func (f *ProviderRouteFilter) empty() bool {
	return len(f.InterfaceIndex)+len(f.DestinationPrefix)+len(f.NextHop)+len(f.Metric)+len(f.CustomerID) == 0
}

func (f *ProviderRouteFilter) String() string {
	var d describe
	describeAny(&d, "InterfaceIndex", f.InterfaceIndex)
	describeAny(&d, "DestinationPrefix", f.DestinationPrefix)
	describeAny(&d, "NextHop", f.NextHop)
	describeAny(&d, "Metric", f.Metric)
	describeAny(&d, "CustomerID", f.CustomerID)
	return d.String()
}

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
	// With VSIDs and CAs or MACs given, the indexes answer; records found
	// twice (a value listed twice) are dropped after sorting.
	switch {
	case len(f.VirtualSubnetID) > 0 && len(f.CustomerAddress) > 0 && !slices.ContainsFunc(f.CustomerAddress, netip.Addr.IsUnspecified):
		for _, vsid := range f.VirtualSubnetID {
			for _, ca := range f.CustomerAddress {
				if r, ok := t.recordOf(vsid, ca); ok && f.match(r) {
					ps = append(ps, r)
				}
			}
		}
	case len(f.VirtualSubnetID) > 0 && len(f.MACAddress) > 0:
		for _, vsid := range f.VirtualSubnetID {
			for _, m := range f.MACAddress {
				rs, _ := t.byMAC.get(makeMACKey(uint32(vsid), m))
				for _, r := range rs {
					if f.match(r) {
						ps = append(ps, r)
					}
				}
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
	return slices.Compact(ps)
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
		if !anyGUID(f.RoutingDomainID, rd) {
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
