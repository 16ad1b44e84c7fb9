package vswitch

import (
	"net/netip"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// A virtual subnet with L2Only records is also switched by MAC: their VMs
// learn their CAs themselves (DHCP in the tenant, say), so policy cannot
// answer or resolve their addresses. What policy does resolve is switched as
// in any subnet; what it cannot goes by destination MAC inside the subnet,
// and broadcasts, and ARP and ND requests nobody in policy answers, are
// flooded to the subnet's local ports and to the PAs of its L2Only records.

// learnsCAs reports whether the VM of p has an L2Only record: it learns its
// CAs itself, so its source CAs are not checked (its source MAC still is).
func learnsCAs(t *policy.Table, p *PortConfig) bool {
	return len(t.L2Only(p.VSID).Records(p.MAC)) > 0
}

// l2Dest returns the lookup record, of any Type, of the VM with unicast MAC
// mac in vsid, if vsid has L2Only records: there a frame policy cannot
// resolve by CA goes by destination MAC.
func l2Dest(t *policy.Table, vsid policy.VSID, mac packet.MAC) (*policy.LookupRecord, bool) {
	if mac.IsMulticast() || t.L2Only(vsid) == nil {
		return nil, false
	}
	return t.LookupMAC(vsid, mac)
}

// l2 switches by destination MAC a frame of port p that policy did not
// answer or resolve, if p's subnet has L2Only records: a broadcast (any
// multicast if group, for ND) is flooded, a unicast frame goes to the VM
// whose lookup record has that MAC, unchanged. IP packets resolved by MAC
// take decide and deliver instead, for their MTU handling. l2 reports
// false, having done nothing, for any other frame: the caller drops it as
// it would without L2Only records.
func (s *Switch) l2(r *Result, p *PortConfig, pt *PortTable, t *policy.Table, buf []byte, off int, frame []byte, group bool) bool {
	l2 := t.L2Only(p.VSID)
	if l2 == nil {
		return false
	}
	dst := packet.Ethernet(frame).Dst()
	if dst.IsMulticast() {
		if dst != packet.Broadcast && !group {
			return false
		}
		s.flood(r, p, pt, t, l2, buf, off, frame)
		return true
	}
	rec, ok := t.LookupMAC(p.VSID, dst)
	if !ok {
		return false
	}
	if s.tr != nil {
		s.tr.byMAC(p.VSID, rec)
	}
	var d decision
	if reason := s.target(&d, rec, netip.Addr{}, p.VSID, false, pt, t); reason != ReasonNone {
		*r = s.drop(reason)
		return true
	}
	if d.local >= 0 {
		s.toLocal(r, &d, frame)
		return true
	}
	dstPA := d.pa()
	srcPA, _ := t.LocalPA(dstPA.Is6()) // target checked there is one
	if len(frame)+Overhead(d.encap, dstPA.Is6())-packet.EthernetHeaderLen > s.cfg.UnderlayMTU {
		*r = s.drop(ReasonTooBig)
		return true
	}
	toUnderlay(r, nil, &d, buf, off, len(frame), srcPA, dstPA, 0)
	if s.tr != nil {
		s.tr.encap(r, d.dstVSID)
	}
	return true
}

// flood makes the Flood verdict for frame, from port p in a subnet with
// L2Only records l2: encapsulated once, with FlowID 0, for the paths to
// their remote PAs, and as it is for the other local ports of the subnet.
// Both lists come precomputed from the snapshots, so nothing is allocated.
func (s *Switch) flood(r *Result, p *PortConfig, pt *PortTable, t *policy.Table, l2 *policy.L2Subnet, buf []byte, off int, frame []byte) {
	if !s.floodAllowed(p) {
		*r = s.drop(ReasonStormControl)
		return
	}
	paths := l2.Flood()
	encap := t.Encapsulation(p.VSID)
	for _, path := range paths {
		if len(frame)+Overhead(encap, path.Dst.Is6())-packet.EthernetHeaderLen > s.cfg.UnderlayMTU {
			*r = s.drop(ReasonTooBig)
			return
		}
	}
	ports := pt.InVSID(p.VSID)
	for _, i := range ports {
		if i != p.Index {
			s.countTx(i, len(frame))
		}
	}
	s.Counters.VSID(p.VSID).Flooded.Add(uint64(len(paths) + len(ports) - 1))
	encapsulate(buf[off-EncapHeaderLen:off], encap, p.VSID, 0)
	if s.tr != nil {
		s.tr.note("flood", "flooded in VSID %d (L2Only records): %d remote PAs, %d local ports", p.VSID, len(paths), len(ports)-1)
	}
	*r = Result{Action: Flood, Encap: encap, Data: buf[off-EncapHeaderLen : off+len(frame)],
		Copies: Copies{Paths: paths, Ports: ports, Except: p.Index}}
}

// l2Source reports whether the inner source mac of a frame of vsid from
// srcPA is a VM with an L2Only record at srcPA.
func l2Source(t *policy.Table, vsid policy.VSID, mac packet.MAC, srcPA netip.Addr) bool {
	for _, rec := range t.L2Only(vsid).Records(mac) {
		if rec.ProviderAddress == srcPA {
			return true
		}
	}
	return false
}

// l2Ingress delivers a validated frame of a subnet with L2Only records by its
// inner destination MAC, checking no CA: a group-addressed frame to every
// local port of the subnet, a unicast one to the port with that MAC. pkt is
// the encapsulation header and then the n-byte inner frame eth.
func (s *Switch) l2Ingress(pt *PortTable, vsid policy.VSID, pkt []byte, eth packet.Ethernet, n int) Result {
	if eth.Dst().IsMulticast() {
		ports := pt.InVSID(vsid)
		if s.tr != nil {
			s.tr.note("flood", "group-addressed frame delivered to the %d local ports of VSID %d", len(ports), vsid)
		}
		for _, i := range ports {
			s.countTx(i, n)
		}
		s.Counters.VSID(vsid).Flooded.Add(uint64(len(ports)))
		return Result{Action: Flood, Data: pkt[:EncapHeaderLen+n], Copies: Copies{Ports: ports, Except: -1}}
	}
	p, ok := pt.ByMAC(vsid, eth.Dst())
	if !ok {
		return s.drop(ReasonNoLocalPort)
	}
	if s.tr != nil {
		s.tr.note("deliver", "delivered by MAC %s to port %s (L2Only records)", eth.Dst(), p.Name)
	}
	s.Counters.VSID(vsid).Decapsulated.Add(1)
	s.countTx(p.Index, n)
	return Result{Action: ToPort, Port: p.Index, Data: pkt[EncapHeaderLen : EncapHeaderLen+n]}
}
