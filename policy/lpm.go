package policy

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// crKey is a customer route's identity inside its routing domain.
type crKey struct {
	vsid    VSID
	prefix  netip.Prefix
	nextHop netip.Addr
}

func routeKey(r *CustomerRoute) crKey {
	return crKey{vsid: r.VirtualSubnetID, prefix: r.DestinationPrefix, nextHop: r.NextHop}
}

// rdTable is the immutable routing table of one routing domain: its routes
// and a longest-prefix-match index per family. Each index has one map per
// prefix length, keyed by the masked destination, and a bitmask of the
// populated lengths so a lookup probes only those, longest first.
type rdTable struct {
	routes map[crKey]*CustomerRoute
	v4     *lpm4
	v6     *lpm6
}

type lpm4 struct {
	lens    uint64 // bit L set: some prefix of length L
	buckets [33]map[uint32]*CustomerRoute
}

type lpm6 struct {
	lens    [3]uint64 // bit L%64 of word L/64
	buckets [129]map[[2]uint64]*CustomerRoute
}

func mask4(a uint32, l int) uint32 {
	if l == 0 {
		return 0
	}
	return a & (^uint32(0) << (32 - l))
}

func mask6(hi, lo uint64, l int) [2]uint64 {
	switch {
	case l <= 64:
		if l == 0 {
			return [2]uint64{}
		}
		return [2]uint64{hi & (^uint64(0) << (64 - l)), 0}
	case l == 128:
		return [2]uint64{hi, lo}
	default:
		return [2]uint64{hi, lo & (^uint64(0) << (128 - l))}
	}
}

// better reports whether a should win over b for the same prefix: lowest
// Metric, then a stable order so the winner does not depend on insertion.
func better(a, b *CustomerRoute) bool {
	if a.Metric != b.Metric {
		return a.Metric < b.Metric
	}
	return compareRoutes(a, b) < 0
}

func buildRD(routes map[crKey]*CustomerRoute) *rdTable {
	t := &rdTable{routes: routes}
	for _, r := range routes {
		p := r.DestinationPrefix
		l := p.Bits()
		if p.Addr().Is4() {
			if t.v4 == nil {
				t.v4 = new(lpm4)
			}
			b := &t.v4.buckets[l]
			if *b == nil {
				*b = make(map[uint32]*CustomerRoute)
				t.v4.lens |= 1 << l
			}
			a4 := p.Addr().As4()
			k := binary.BigEndian.Uint32(a4[:])
			if cur, ok := (*b)[k]; !ok || better(r, cur) {
				(*b)[k] = r
			}
			continue
		}
		if t.v6 == nil {
			t.v6 = new(lpm6)
		}
		b := &t.v6.buckets[l]
		if *b == nil {
			*b = make(map[[2]uint64]*CustomerRoute)
			t.v6.lens[l/64] |= 1 << (l % 64)
		}
		a16 := p.Addr().As16()
		k := [2]uint64{binary.BigEndian.Uint64(a16[:8]), binary.BigEndian.Uint64(a16[8:])}
		if cur, ok := (*b)[k]; !ok || better(r, cur) {
			(*b)[k] = r
		}
	}
	return t
}

func (t *rdTable) lookup(dst netip.Addr) (*CustomerRoute, bool) {
	dst = dst.Unmap()
	if dst.Is4() {
		l4 := t.v4
		if l4 == nil {
			return nil, false
		}
		a4 := dst.As4()
		a := binary.BigEndian.Uint32(a4[:])
		for lens := l4.lens; lens != 0; {
			l := 63 - bits.LeadingZeros64(lens)
			lens &^= 1 << l
			if r, ok := l4.buckets[l][mask4(a, l)]; ok {
				return r, true
			}
		}
		return nil, false
	}
	l6 := t.v6
	if l6 == nil || !dst.Is6() {
		return nil, false
	}
	a16 := dst.As16()
	hi, lo := binary.BigEndian.Uint64(a16[:8]), binary.BigEndian.Uint64(a16[8:])
	for w := 2; w >= 0; w-- {
		for lens := l6.lens[w]; lens != 0; {
			b := 63 - bits.LeadingZeros64(lens)
			lens &^= 1 << b
			l := w*64 + b
			if r, ok := l6.buckets[l][mask6(hi, lo, l)]; ok {
				return r, true
			}
		}
	}
	return nil, false
}

// RouteVia returns the customer route of rd that matches dst longest among
// those whose NextHop is on-link in vsid, lowest Metric first among equal
// prefixes: under UseExternalRouter, the route naming the router that a VM
// of vsid hands dst to. Routes of other subnets, and their on-link routes,
// do not count: the host does not route to reach a router; nor does a
// NextHop that is vsid's gateway address, which is the host itself. It
// scans rd's routes, which the switch does once per flow.
func (t *Table) RouteVia(rd GUID, vsid VSID, dst netip.Addr) (*CustomerRoute, bool) {
	r, ok := t.rds[rd]
	if !ok {
		return nil, false
	}
	dst = dst.Unmap()
	var best *CustomerRoute
	for _, c := range r.routes {
		if c.OnLink() || !c.DestinationPrefix.Contains(dst) {
			continue
		}
		if pfx, ok := t.OnLinkPrefix(vsid, c.NextHop); !ok || GatewayAddress(pfx) == c.NextHop {
			continue
		}
		if best == nil || c.DestinationPrefix.Bits() > best.DestinationPrefix.Bits() ||
			c.DestinationPrefix.Bits() == best.DestinationPrefix.Bits() && better(c, best) {
			best = c
		}
	}
	return best, best != nil
}
