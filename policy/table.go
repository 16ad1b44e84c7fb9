package policy

import (
	"net/netip"
	"slices"

	"github.com/wnv/wnv/packet"
)

// Table is an immutable snapshot of the policy, indexed for the switch's fast
// path. All reads are lock-free and allocation-free; the pointers it returns
// point into the snapshot and must not be modified. An old Table keeps
// answering with the state it was built from. The zero Table is empty.
type Table struct {
	version uint64
	global  Global

	// Lookup records. Static and Dynamic records are identified by (VSID,
	// CA) alone (the MAC must match too), zero-CA records by (VSID, family,
	// MAC).
	byCA   *shardArray[caKey, *LookupRecord]
	byZero *shardArray[macKey, *LookupRecord]
	byMAC  *shardArray[macKey, []*LookupRecord]
	gw     map[uint64]*LookupRecord // VSID|v6Bit -> GatewayWildcard record
	l2only map[VSID]*L2Subnet       // see l2only.go
	nrec   int
	// nUnusable counts the records the data path must not use (Unusable):
	// the lookups below skip them, and L2Subnets leave them out.
	nUnusable int

	rds   map[GUID]*rdTable
	vsids map[VSID]*vsidInfo
	ncr   int

	subnets map[VSID]Encapsulation // virtual subnets not on the default NVGRE; see virtualsubnet.go

	// nat holds the Static and Dynamic records with Rule Nat, usable or
	// not, by PA: IP Rewrite needs the record of a PA, and one PA per CA.
	// Few records use IP Rewrite, so the map is copied whole by a change
	// of one of them.
	nat map[netip.Addr][]*LookupRecord

	pas     map[netip.Addr]*ProviderAddress
	localPA [2]*ProviderAddress // best usable PA for IPv4, IPv6
	proutes map[prKey]*ProviderRoute

	moves []RecordMove // records whose PA the change that made this Table moved
}

// RecordMove is a lookup record whose ProviderAddress changed: its CA is now
// behind another host.
type RecordMove struct {
	Record LookupRecord
	OldPA  netip.Addr
}

// Moves lists the records whose ProviderAddress the change that produced
// this Table changed (by Set, or by a Put that replaced a record), so
// subscribers can raise customer-address-moved events without diffing tables.
func (t *Table) Moves() []RecordMove { return t.moves }

// vsidInfo is what customer routes say about one virtual subnet.
type vsidInfo struct {
	rd     GUID
	routes int
	onLink []netip.Prefix
}

type prKey struct {
	ifIndex int
	prefix  netip.Prefix
	nextHop netip.Addr
}

func providerRouteKey(r *ProviderRoute) prKey {
	return prKey{ifIndex: r.InterfaceIndex, prefix: r.DestinationPrefix, nextHop: r.NextHop}
}

func emptyTable() *Table {
	return &Table{
		byCA:    new(shardArray[caKey, *LookupRecord]),
		byZero:  new(shardArray[macKey, *LookupRecord]),
		byMAC:   new(shardArray[macKey, []*LookupRecord]),
		gw:      map[uint64]*LookupRecord{},
		nat:     map[netip.Addr][]*LookupRecord{},
		l2only:  map[VSID]*L2Subnet{},
		rds:     map[GUID]*rdTable{},
		vsids:   map[VSID]*vsidInfo{},
		pas:     map[netip.Addr]*ProviderAddress{},
		proutes: map[prKey]*ProviderRoute{},
	}
}

// LookupCA returns the usable Static or Dynamic record of ca in vsid.
func (t *Table) LookupCA(vsid VSID, ca netip.Addr) (*LookupRecord, bool) {
	r, ok := t.recordOf(vsid, ca)
	if !ok || r.Unusable {
		return nil, false
	}
	return r, true
}

// recordOf returns the Static or Dynamic record of ca in vsid, usable or not.
func (t *Table) recordOf(vsid VSID, ca netip.Addr) (*LookupRecord, bool) {
	k := makeCAKey(vsid, ca)
	return t.byCA.getAt(k.shard(), k)
}

// LookupMAC returns a usable record of mac in vsid (any of them: they share
// the VM's PA).
func (t *Table) LookupMAC(vsid VSID, mac packet.MAC) (*LookupRecord, bool) {
	k := makeMACKey(uint32(vsid), mac)
	rs, _ := t.byMAC.getAt(k.shard(), k)
	for _, r := range rs {
		if !r.Unusable {
			return r, true
		}
	}
	return nil, false
}

// GatewayWildcard returns the usable GatewayWildcard record of vsid for the
// family.
func (t *Table) GatewayWildcard(vsid VSID, v6 bool) (*LookupRecord, bool) {
	vf := uint64(vsid)
	if v6 {
		vf |= v6Bit
	}
	r, ok := t.gw[vf]
	if !ok || r.Unusable {
		return nil, false
	}
	return r, true
}

// LookupPA returns the usable record with Rule Nat whose ProviderAddress is
// pa: the one CA that IP Rewrite maps to pa.
func (t *Table) LookupPA(pa netip.Addr) (*LookupRecord, bool) {
	for _, r := range t.nat[pa.Unmap()] {
		if !r.Unusable {
			return r, true
		}
	}
	return nil, false
}

// RewritePAs lists, in order, the PAs of this host that usable records
// with Rule Nat map a VM's CA to: every packet to them but a tunnel packet
// is IP Rewrite traffic.
func (t *Table) RewritePAs() []netip.Addr {
	var pas []netip.Addr
	for pa := range t.nat {
		if _, ok := t.LookupPA(pa); ok && t.IsLocalPA(pa) {
			pas = append(pas, pa)
		}
	}
	slices.SortFunc(pas, netip.Addr.Compare)
	return pas
}

// VMMACPAs maps the rewrite PAs (RewritePAs) whose records have
// UseVmMACAddress to their VMs' MACs: what leaves from them has the VM's
// MAC as source on the wire.
func (t *Table) VMMACPAs() map[netip.Addr]packet.MAC {
	macs := map[netip.Addr]packet.MAC{}
	for _, pa := range t.RewritePAs() {
		if r, _ := t.LookupPA(pa); r.UseVmMACAddress {
			macs[pa] = r.MACAddress
		}
	}
	return macs
}

// RoutingDomain returns the routing domain of vsid, known from its customer
// routes.
func (t *Table) RoutingDomain(vsid VSID) (GUID, bool) {
	if v, ok := t.vsids[vsid]; ok {
		return v.rd, true
	}
	return GUID{}, false
}

// Route returns the customer route of rd that matches dst longest; among equal
// prefixes the lowest Metric wins.
func (t *Table) Route(rd GUID, dst netip.Addr) (*CustomerRoute, bool) {
	r, ok := t.rds[rd]
	if !ok {
		return nil, false
	}
	return r.lookup(dst)
}

// OnLinkPrefix returns the longest on-link prefix of vsid that contains a.
func (t *Table) OnLinkPrefix(vsid VSID, a netip.Addr) (netip.Prefix, bool) {
	v, ok := t.vsids[vsid]
	if !ok {
		return netip.Prefix{}, false
	}
	return v.onLinkFor(a.Unmap())
}

func (v *vsidInfo) onLinkFor(a netip.Addr) (netip.Prefix, bool) {
	best, found := netip.Prefix{}, false
	for _, p := range v.onLink {
		if p.Contains(a) && (!found || p.Bits() > best.Bits()) {
			best, found = p, true
		}
	}
	return best, found
}

// GatewayAddress is the virtual gateway of an on-link prefix, its first host
// address: 10.0.0.0/24 -> 10.0.0.1, fd00:0:0:1::/64 -> fd00:0:0:1::1.
func GatewayAddress(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// IsLocalPA reports whether a is a provider address of this host in any
// AddressState but Duplicate: a duplicate PA belongs to another host, so
// traffic for it must still be encapsulated there.
func (t *Table) IsLocalPA(a netip.Addr) bool {
	p, ok := t.pas[a.Unmap()]
	return ok && p.AddressState != AddressDuplicate
}

// LocalPA returns a local PA of the family to send from: Preferred first,
// then Deprecated, Tentative and Invalid (state not yet known); never a
// Duplicate. Ties go to the lowest address.
func (t *Table) LocalPA(v6 bool) (netip.Addr, bool) {
	i := 0
	if v6 {
		i = 1
	}
	if p := t.localPA[i]; p != nil {
		return p.ProviderAddress, true
	}
	return netip.Addr{}, false
}

// usability ranks AddressStates for LocalPA; 0 means never.
var usability = [...]int{AddressInvalid: 1, AddressTentative: 2, AddressDuplicate: 0, AddressDeprecated: 3, AddressPreferred: 4}

func (t *Table) pickLocalPAs() {
	t.localPA = [2]*ProviderAddress{}
	for _, p := range t.pas {
		if len(t.nat[p.ProviderAddress]) > 0 {
			continue // a VM's own PA (IP Rewrite), not the host's
		}
		i := 0
		if p.ProviderAddress.Is6() {
			i = 1
		}
		u := usability[p.AddressState]
		if u == 0 {
			continue
		}
		cur := t.localPA[i]
		if cur == nil || u > usability[cur.AddressState] ||
			u == usability[cur.AddressState] && p.ProviderAddress.Less(cur.ProviderAddress) {
			t.localPA[i] = p
		}
	}
}

// Global returns the host-wide setting.
func (t *Table) Global() Global { return t.global }

// Version increases by one with every published change.
func (t *Table) Version() uint64 { return t.version }

// Counts returns the number of objects of each kind.
func (t *Table) Counts() (records, customerRoutes, providerAddresses, providerRoutes int) {
	return t.nrec, t.ncr, len(t.pas), len(t.proutes)
}
