package policy

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/wnv/wnv/packet"
)

// L2Subnet is what the L2Only records of one virtual subnet say: which VMs
// learn their CAs themselves (by MAC, at which PA), and where a frame flooded
// in the subnet goes. Immutable, like the Table that holds it; built when a
// change commits, so the switch floods from a precomputed list.
type L2Subnet struct {
	byMAC map[packet.MAC][]*LookupRecord // one record per CA family, IPv4 first
	flood []Path
}

// Path is one way through the underlay: from a PA of this host to a remote one.
type Path struct{ Src, Dst netip.Addr }

// L2Only returns what the L2Only records of vsid say, or nil if it has none:
// ARP and ND for unknown targets are then flooded in it.
func (t *Table) L2Only(vsid VSID) *L2Subnet { return t.l2only[vsid] }

// Records returns the L2Only records of mac in the subnet, IPv4 family
// first; none for a nil L2Subnet.
func (s *L2Subnet) Records(mac packet.MAC) []*LookupRecord {
	if s == nil {
		return nil
	}
	return s.byMAC[mac]
}

// Flood lists a path to every distinct remote PA holding an L2Only record of
// the subnet, sorted by destination, each from this host's PA of its family
// (see LocalPA). PAs of this host are left out, their VMs are local ports;
// so are PAs of a family this host has no PA of.
func (s *L2Subnet) Flood() []Path { return s.flood }

// l2Records returns the L2Only records of vsid that x is changing, copied
// from the old Table on first use.
func (x *tx) l2Records(vsid VSID) map[packet.MAC][]*LookupRecord {
	w, ok := x.l2Work[vsid]
	if !ok {
		if x.l2Work == nil {
			x.l2Work = map[VSID]map[packet.MAC][]*LookupRecord{}
		}
		w = map[packet.MAC][]*LookupRecord{}
		if s := x.t.l2only[vsid]; s != nil {
			w = maps.Clone(s.byMAC)
		}
		x.l2Work[vsid] = w
	}
	return w
}

// l2Replace swaps L2Only record old for nw: old nil adds nw, nw nil removes
// old. Unusable records count as nil: the switch never sees them. Slices are
// never modified in place: older Tables still read them.
func (x *tx) l2Replace(old, nw *LookupRecord) {
	if old != nil && old.Unusable {
		old = nil
	}
	if nw != nil && nw.Unusable {
		nw = nil
	}
	if old == nil && nw == nil {
		return
	}
	r := nw
	if r == nil {
		r = old
	}
	w := x.l2Records(r.VirtualSubnetID)
	rs := slices.DeleteFunc(slices.Clone(w[r.MACAddress]), func(p *LookupRecord) bool { return p == old })
	if nw != nil {
		rs = append(rs, nw)
		slices.SortFunc(rs, func(a, b *LookupRecord) int { return a.CustomerAddress.BitLen() - b.CustomerAddress.BitLen() })
	}
	if len(rs) == 0 {
		delete(w, r.MACAddress)
	} else {
		w[r.MACAddress] = rs
	}
}

// commitL2 builds t's L2Subnets of the VSIDs x changed, and every subnet's
// flood paths again if the PAs of this host changed. t's local PAs must be
// picked already.
func (x *tx) commitL2(t *Table) {
	if len(x.l2Work) == 0 && !(x.pasOwned && len(t.l2only) > 0) {
		return
	}
	t.l2only = maps.Clone(t.l2only)
	for vsid, w := range x.l2Work {
		if len(w) == 0 {
			delete(t.l2only, vsid)
		} else {
			t.l2only[vsid] = &L2Subnet{byMAC: w, flood: t.floodPaths(w)}
		}
	}
	if x.pasOwned {
		for vsid, s := range t.l2only {
			if _, built := x.l2Work[vsid]; !built {
				t.l2only[vsid] = &L2Subnet{byMAC: s.byMAC, flood: t.floodPaths(s.byMAC)}
			}
		}
	}
}

func (t *Table) floodPaths(byMAC map[packet.MAC][]*LookupRecord) []Path {
	seen := map[netip.Addr]bool{}
	var out []Path
	for _, rs := range byMAC {
		for _, r := range rs {
			pa := r.ProviderAddress
			if seen[pa] || t.IsLocalPA(pa) {
				continue
			}
			seen[pa] = true
			if src, ok := t.LocalPA(pa.Is6()); ok {
				out = append(out, Path{Src: src, Dst: pa})
			}
		}
	}
	slices.SortFunc(out, func(a, b Path) int { return a.Dst.Compare(b.Dst) })
	return out
}
