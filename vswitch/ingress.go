package vswitch

import (
	"net/netip"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// FromUnderlay validates and decapsulates one NVGRE packet that arrived from
// provider address src for local provider address dst; payload starts at the
// GRE header. Only a packet whose inner source matches a lookup record of its
// VSID at the sending PA, addressed to a local port of that VSID, is delivered
// (in a subnet with L2Only records, also by MAC: see l2Ingress).
func (s *Switch) FromUnderlay(src, dst netip.Addr, payload []byte) Result {
	g, err := packet.ParseNVGRE(payload)
	if err != nil {
		return s.drop(ReasonMalformedGRE)
	}
	vsid := policy.VSID(g.VSID())
	if s.tr != nil {
		s.tr.decap("NVGRE", vsid)
	}
	r := s.ingress(src, dst, vsid, payload)
	if r.Action == Drop {
		s.Counters.ForUnderlay(s.ports.Load(), vsid).Drops.Add(1)
	}
	return r
}

// FromVXLAN is FromUnderlay for a VXLAN packet: payload is the UDP payload,
// starting at the VXLAN header, and the VNI is the VSID. Validation is the
// same as for NVGRE; either encapsulation is accepted for any VSID, so a
// subnet can change encapsulation without a flag day between hosts.
func (s *Switch) FromVXLAN(src, dst netip.Addr, payload []byte) Result {
	v, err := packet.ParseVXLAN(payload)
	if err != nil {
		return s.drop(ReasonMalformedVXLAN)
	}
	vsid := policy.VSID(v.VNI())
	if s.tr != nil {
		s.tr.decap("VXLAN", vsid)
	}
	r := s.ingress(src, dst, vsid, payload)
	if r.Action == Drop {
		s.Counters.ForUnderlay(s.ports.Load(), vsid).Drops.Add(1)
	}
	return r
}

// ingress validates and delivers the inner frame of pkt, an NVGRE or VXLAN
// header and the frame.
func (s *Switch) ingress(srcPA, dstPA netip.Addr, vsid policy.VSID, pkt []byte) Result {
	frame := pkt[EncapHeaderLen:]
	t := s.policy.Load()
	if t == nil {
		return s.drop(ReasonUnknownVSID)
	}
	if !t.IsLocalPA(dstPA) {
		return s.drop(ReasonNotForLocalPA)
	}
	eth, err := packet.ParseEthernet(frame)
	if err != nil || eth.HasVLAN() {
		return s.drop(ReasonMalformed)
	}
	var srcCA, dstCA netip.Addr
	var length int
	switch eth.Type() {
	case packet.EtherTypeWNVControl:
		return s.redirect(t, srcPA, dstPA, vsid, eth)
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			return s.drop(ReasonMalformed)
		}
		srcCA, dstCA, length = ip.Src(), ip.Dst(), eth.HeaderLen()+ip.TotalLen()
	case packet.EtherTypeIPv6:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil {
			return s.drop(ReasonMalformed)
		}
		srcCA, dstCA, length = ip.Src(), ip.Dst(), eth.HeaderLen()+packet.IPv6HeaderLen+ip.PayloadLen()
	default:
		// In a subnet with L2Only records, ARP and other non-IP frames go by
		// MAC from any VM with a lookup record at srcPA, L2Only or not, so a
		// Static VM's requests for a learned CA arrive too.
		if t.L2Only(vsid) == nil {
			return s.drop(ReasonUnsupportedEtherType)
		}
		pt := s.ports.Load()
		if !pt.HasVSID(vsid) {
			return s.drop(ReasonUnknownVSID)
		}
		if rec, ok := t.LookupMAC(vsid, eth.Src()); !ok || rec.ProviderAddress != srcPA {
			s.mismatch(vsid, netip.Addr{}, srcPA)
			return s.drop(ReasonPolicyMismatch)
		}
		return s.l2Ingress(pt, vsid, pkt, eth, len(frame))
	}
	if r, ok := s.forwardMoved(srcPA, dstPA, vsid, eth.Dst(), dstCA); ok {
		if s.tr != nil {
			s.tr.forward(r.Dst, eth.Dst(), vsid)
		}
		return r
	}
	pt := s.ports.Load()
	// No event either: the sender picks the VSID, and no policy fetched for
	// it would make the packet deliverable here.
	if !pt.HasVSID(vsid) {
		return s.drop(ReasonUnknownVSID)
	}
	if !sourceValid(s.tr, t, vsid, eth.Src(), srcCA, srcPA) {
		if l2Source(t, vsid, eth.Src(), srcPA) {
			if s.tr != nil {
				s.tr.validated("its MAC has an L2Only record at that PA", vsid, srcCA, nil)
			}
			return s.l2Ingress(pt, vsid, pkt, eth, length)
		}
		s.mismatch(vsid, srcCA, srcPA)
		return s.drop(ReasonPolicyMismatch)
	}
	p, ok := pt.ByMAC(vsid, eth.Dst())
	if !ok || !p.owns(dstCA) && !forwardsFor(t, p, dstCA) {
		if t.L2Only(vsid) != nil {
			return s.l2Ingress(pt, vsid, pkt, eth, length)
		}
		return s.drop(ReasonNoLocalPort)
	}
	if s.tr != nil {
		s.tr.delivered(p, IngressDecision{VSID: vsid, SrcPA: srcPA, SrcCA: srcCA, DstCA: dstCA, SrcMAC: eth.Src(), DstMAC: eth.Dst(), Port: p.Index, Gen: s.gen.Load()})
	}
	s.Counters.VSID(vsid).Decapsulated.Add(1)
	s.countTx(p.Index, length)
	return Result{Action: ToPort, Port: p.Index, Data: frame[:length], Validated: true}
}

// sourceValid checks the inner source of a packet received in vsid from PA
// srcPA against policy. A frame sourced by a gateway of vsid (GatewayMAC, or
// the MAC of the lookup record of one of vsid's gateway addresses) was
// routed by the sending host: its CA must belong to the same routing domain,
// with a lookup record at srcPA in the CA's own subnet. Otherwise the (VSID,
// CA, MAC) record, or the GatewayWildcard record of that MAC, must exist at
// srcPA.
// A trace's tr is told which record vouched for the source.
func sourceValid(tr *tracer, t *policy.Table, vsid policy.VSID, mac packet.MAC, ca, srcPA netip.Addr) bool {
	if mac == GatewayMAC {
		return routedFrom(tr, t, vsid, ca, srcPA)
	}
	if rec, ok := t.LookupCA(vsid, ca); ok {
		ok = rec.MACAddress == mac && rec.ProviderAddress == srcPA
		if ok && tr != nil {
			tr.validated("its lookup record names that MAC and PA", vsid, ca, rec)
		}
		return ok
	}
	if rec, ok := t.GatewayWildcard(vsid, ca.Is6()); ok && rec.MACAddress == mac {
		ok = rec.ProviderAddress == srcPA
		if ok && tr != nil {
			tr.validated("sent by the subnet's gateway (GatewayWildcard record) at that PA", vsid, ca, rec)
		}
		return ok
	}
	// Last, as only routed frames get here: the gateway's record.
	if rec, ok := t.LookupMAC(vsid, mac); ok && isGatewayRecord(t, rec) {
		return routedFrom(tr, t, vsid, ca, srcPA)
	}
	return false
}

// routedFrom reports whether CA ca, routed into vsid, lives at srcPA.
func routedFrom(tr *tracer, t *policy.Table, vsid policy.VSID, ca, srcPA netip.Addr) bool {
	rec, _, _, reason := resolve(t, vsid, ca)
	ok := reason == ReasonNone && rec.ProviderAddress == srcPA
	if ok && tr != nil {
		tr.validated("routed by the sending host; its lookup record in its own subnet is at that PA", vsid, ca, rec)
	}
	return ok
}

// FromRewritten validates and delivers an IP Rewrite packet (Rule Nat) that
// arrived on the underlay: frame is the underlay's Ethernet frame, its IP
// packet from one VM's PA to another's. The destination PA must be that of
// a usable Nat record on this host, the source PA that of another, and the
// source's virtual subnet must reach the destination's CA (the same
// subnet, or one its routing domain routes from); then both addresses go
// back to the CAs, the MACs become the VMs' (the source's is its subnet's
// gateway's when routed), and the frame goes to the destination's port.
// With partial, the transport checksum holds only the pseudo-header sum (a
// checksum offload finishes it). The frame is changed in place, even when
// it is then dropped.
func (s *Switch) FromRewritten(frame []byte, partial bool) Result {
	t := s.policy.Load()
	if t == nil {
		return s.drop(ReasonNotForLocalPA)
	}
	eth, err := packet.ParseEthernet(frame)
	if err != nil || eth.HasVLAN() {
		return s.drop(ReasonMalformed)
	}
	var srcPA, dstPA netip.Addr
	var length int
	var ip4 packet.IPv4
	var ip6 packet.IPv6
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		if ip4, err = packet.ParseIPv4(eth.Payload()); err != nil {
			return s.drop(ReasonMalformed)
		}
		srcPA, dstPA, length = ip4.Src(), ip4.Dst(), eth.HeaderLen()+ip4.TotalLen()
	case packet.EtherTypeIPv6:
		if ip6, err = packet.ParseIPv6(eth.Payload()); err != nil {
			return s.drop(ReasonMalformed)
		}
		srcPA, dstPA, length = ip6.Src(), ip6.Dst(), eth.HeaderLen()+packet.IPv6HeaderLen+ip6.PayloadLen()
	default:
		return s.drop(ReasonUnsupportedEtherType)
	}
	if s.tr != nil {
		s.tr.rewriteArrival(srcPA, dstPA)
	}
	dst, ok := t.LookupPA(dstPA)
	if !ok || !t.IsLocalPA(dstPA) {
		return s.drop(ReasonNotForLocalPA)
	}
	pt := s.ports.Load()
	src, ok := t.LookupPA(srcPA)
	if s.tr != nil {
		s.tr.rewritePeers(dst, src, ok)
	}
	if !ok || !rewritePeers(t, src, dst) {
		s.mismatch(dst.VirtualSubnetID, netip.Addr{}, srcPA)
		s.Counters.ForUnderlay(pt, dst.VirtualSubnetID).Drops.Add(1)
		return s.drop(ReasonRewriteMismatch)
	}
	p, ok := pt.ByMAC(dst.VirtualSubnetID, dst.MACAddress)
	if !ok || !p.owns(dst.CustomerAddress) {
		s.Counters.ForUnderlay(pt, dst.VirtualSubnetID).Drops.Add(1)
		return s.drop(ReasonNoLocalPort)
	}
	srcMAC := src.MACAddress
	if src.VirtualSubnetID != dst.VirtualSubnetID {
		pfx, _ := t.OnLinkPrefix(dst.VirtualSubnetID, dst.CustomerAddress)
		srcMAC = gatewayMAC(t, dst.VirtualSubnetID, pfx)
	}
	if ip4 != nil {
		ip4.SetAddrs(src.CustomerAddress, dst.CustomerAddress, partial)
	} else {
		ip6.SetAddrs(src.CustomerAddress, dst.CustomerAddress, partial)
	}
	eth.SetDst(dst.MACAddress)
	eth.SetSrc(srcMAC)
	if s.tr != nil {
		s.tr.rewrittenBack(p, src, dst)
	}
	s.Counters.VSID(dst.VirtualSubnetID).Decapsulated.Add(1)
	s.countTx(p.Index, length)
	return Result{Action: ToPort, Port: p.Index, Src: srcPA, Dst: dstPA, Data: frame[:length], Validated: true}
}

// rewritePeers reports whether the VM of Nat record src may send to that of
// dst: in the same virtual subnet, or routed to dst's CA from src's subnet
// by its routing domain.
func rewritePeers(t *policy.Table, src, dst *policy.LookupRecord) bool {
	if src.VirtualSubnetID == dst.VirtualSubnetID {
		return src != dst
	}
	rec, _, _, reason := resolve(t, src.VirtualSubnetID, dst.CustomerAddress)
	return reason == ReasonNone && rec.VirtualSubnetID == dst.VirtualSubnetID && rec.CustomerAddress == dst.CustomerAddress
}
