package vswitch

import (
	"encoding/binary"
	"net/netip"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// FromPort processes one frame a VM sent on port. The frame is buf[off:off+n]
// and off must be at least Headroom, so encapsulation happens in place.
// Replies the switch generates (ARP, ND, ICMP errors) are built in scratch,
// which needs room for a full frame plus 576 bytes.
func (s *Switch) FromPort(port int, buf []byte, off, n int, scratch []byte) Result {
	var r Result
	s.FromPortFlows(&r, nil, port, buf, off, n, 0, scratch)
	return r
}

// FromPortFlows is FromPort for a worker with its own decision cache f
// (whose counts reach Counters when the worker calls f.Flush), writing the
// verdict into r (a Result is large enough that copying it
// through the pipeline's levels cost a quarter of the fast path). A TCP
// super-frame that the caller will cut into segments after the switch (TSO)
// passes segLen, the size of the largest of those frames, for the MTU check;
// otherwise segLen is 0. The switch makes one decision for the whole
// super-frame.
func (s *Switch) FromPortFlows(r *Result, f *Flows, port int, buf []byte, off, n, segLen int, scratch []byte) {
	// Every path below sets every field of *r (see clearExtras), so it is
	// not zeroed first.
	if f != nil {
		f.sync(s.gen.Load())
	}
	r.again = false
	frame := buf[off : off+n]
	pt := s.ports.Load()
	p, ok := pt.Port(port)
	if !ok {
		*r = s.drop(ReasonUnknownPort)
		return
	}
	if s.tr != nil {
		s.tr.fromPort(p)
	}
	pc := s.Counters.Port(port)
	if f != nil {
		f.countRx(pc, n)
	} else {
		pc.RxFrames.Add(1)
		pc.RxBytes.Add(uint64(n))
	}
	if f == nil || !s.egressCached(r, f, p, buf, off, frame, segLen) {
		// The cached path takes only frames from the port's own CAs,
		// which are never learned.
		learn, reason := s.learn(p, frame)
		if reason != ReasonNone {
			*r = s.drop(reason)
		} else {
			s.egressFlows(r, f, p, pt, buf, off, frame, segLen, scratch)
			if learn != nil {
				r.Learn = learn
			}
		}
	}
	if r.Action == Drop {
		pc.Drops.Add(1)
		s.Counters.VSID(p.VSID).Drops.Add(1)
	}
}

// egressCached switches the kind of frame nearly every one is: untagged
// IPv4 without options, from the port's MAC and one of its CAs, to a unicast
// destination f has a decision for, leaving without a drop or an ICMP error.
// It checks what egressFlows and deliver check and makes their verdict, in
// one function without the calls and generality that make them 20-30%
// slower; TestCachedPathMatchesGeneralPath keeps the two in step. For any
// other frame it returns false, having changed nothing, and they take it.
func (s *Switch) egressCached(r *Result, f *Flows, p *PortConfig, buf []byte, off int, frame []byte, segLen int) bool {
	const ipOff = packet.EthernetHeaderLen
	if len(frame) < ipOff+packet.IPv4HeaderLen || binary.BigEndian.Uint16(frame[12:14]) != packet.EtherTypeIPv4 || frame[ipOff] != 0x45 {
		return false
	}
	eth := packet.Ethernet(frame)
	ip := packet.IPv4(frame[ipOff:])
	tl := ip.TotalLen()
	if tl < packet.IPv4HeaderLen || tl > len(ip) || !packet.IPv4HeaderChecksumOK(ip) || eth.Src() != p.MAC || eth.Dst().IsMulticast() {
		return false
	}
	t := s.policy.Load()
	d, gw := f.lookup(newFlowKey(p.Index, ip[16:20]))
	if t == nil || d == nil || !p.owns(ip.Src()) || d.routed && ip.TTL() <= 1 || d.encap == rewriteEncap {
		return false
	}
	ip, frame = ip[:tl], frame[:ipOff+tl]
	var srcPA, dstPA netip.Addr
	if d.local < 0 {
		dstPA = d.pa()
		var ok bool
		if srcPA, ok = sourcePA(t, p.VSID, ip.Src(), dstPA); !ok {
			return false
		}
		wire := len(frame)
		if segLen > 0 {
			wire = segLen
		}
		if wire+Overhead(d.encap, dstPA.Is6())-packet.EthernetHeaderLen > s.cfg.UnderlayMTU {
			return false
		}
	}
	if d.routed {
		ip.DecTTL()
		eth.SetSrc(*gw)
	}
	eth.SetDst(d.mac)
	if d.local >= 0 {
		s.toLocal(r, d, frame)
		return true
	}
	sport, dport := packet.FlowPorts(ip.Protocol(), ip[packet.IPv4HeaderLen:])
	toUnderlay(r, f, d, buf, off, len(frame), srcPA, dstPA, flowID4(binary.BigEndian.Uint64(ip[12:20]), ip.Protocol(), sport, dport))
	return true
}

func (s *Switch) egress(p *PortConfig, pt *PortTable, buf []byte, off int, frame, scratch []byte) Result {
	r := Result{again: true}
	s.egressFlows(&r, nil, p, pt, buf, off, frame, 0, scratch)
	return r
}

func (s *Switch) egressFlows(r *Result, f *Flows, p *PortConfig, pt *PortTable, buf []byte, off int, frame []byte, segLen int, scratch []byte) {
	eth, err := packet.ParseEthernet(frame)
	if err != nil || eth.HasVLAN() {
		*r = s.drop(ReasonMalformed)
		return
	}
	if eth.Src() != p.MAC {
		*r = s.drop(ReasonSpoofedMAC)
		return
	}
	if s.tr != nil {
		s.tr.sourceMAC(p)
	}
	t := s.policy.Load()
	if t == nil {
		*r = s.drop(ReasonNoRoute)
		return
	}
	switch eth.Type() {
	case packet.EtherTypeARP:
		s.arp(r, p, pt, t, buf, off, frame, eth, scratch)
		return
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			*r = s.drop(ReasonMalformed)
			return
		}
		if !sourceAllowed(f, t, p, ip.Src()) {
			*r = s.drop(ReasonSpoofedCA)
			return
		}
		if s.tr != nil {
			s.tr.sourceCA(t, p, ip.Src())
		}
		// A multicast or broadcast dst is caught by decide, once per flow.
		if eth.Dst().IsMulticast() {
			if !s.l2(r, p, pt, t, buf, off, frame, false) {
				*r = s.drop(ReasonMulticast)
			}
			return
		}
		key := newFlowKey(p.Index, ip[16:20])
		d, gw := f.lookup(key)
		if d == nil {
			var dd decision
			var g packet.MAC
			if d = s.decide(r, f, p, pt, t, key, ip.Dst(), eth.Dst(), &dd, &g); d == nil {
				return
			}
			gw = &g
		}
		sport, dport := packet.FlowPorts(ip.Protocol(), ip.Payload())
		flow := flowID4(binary.BigEndian.Uint64(ip[12:20]), ip.Protocol(), sport, dport)
		s.deliver(r, f, p, t, d, gw, buf, off, frame[:eth.HeaderLen()+ip.TotalLen()], segLen, scratch, flow)
	case packet.EtherTypeIPv6:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil {
			*r = s.drop(ReasonMalformed)
			return
		}
		src, dst := ip.Src(), ip.Dst()
		if ip.NextHeader() == packet.ProtoICMPv6 {
			if m, err := packet.ParseICMPv6(ip.Payload(), src, dst); err == nil && m.Type() == packet.ICMPv6NeighborSolicitation {
				s.neighborSolicit(r, p, pt, t, buf, off, frame, src, m, scratch)
				return
			}
		}
		// Multicast first: a VM's MLD reports and router solicitations come
		// from its link-local address, which is not spoofing. Link-local
		// unicast goes by MAC in a subnet with L2Only records (see decide).
		if eth.Dst().IsMulticast() || !dst.IsGlobalUnicast() && (!dst.IsLinkLocalUnicast() || t.L2Only(p.VSID) == nil) {
			*r = s.drop(ReasonMulticast)
			return
		}
		if !sourceAllowed(f, t, p, src) {
			*r = s.drop(ReasonSpoofedCA)
			return
		}
		if s.tr != nil {
			s.tr.sourceCA(t, p, src)
		}
		key := newFlowKey(p.Index, ip[24:40])
		d, gw := f.lookup(key)
		if d == nil {
			var dd decision
			var g packet.MAC
			if d = s.decide(r, f, p, pt, t, key, dst, eth.Dst(), &dd, &g); d == nil {
				return
			}
			gw = &g
		}
		sport, dport := packet.FlowPorts(ip.NextHeader(), ip.Payload())
		s.deliver(r, f, p, t, d, gw, buf, off, frame[:eth.HeaderLen()+packet.IPv6HeaderLen+ip.PayloadLen()], segLen, scratch, FlowID(src, dst, ip.NextHeader(), sport, dport))
	default:
		if !s.l2(r, p, pt, t, buf, off, frame, false) {
			*r = s.drop(ReasonUnsupportedEtherType)
		}
	}
}

// resolve finds the lookup record for CA a as seen from a VM in vsid:
// in its own subnet first, then through the routing domain's customer routes.
// gw is zero if a is in vsid's subnet; if a is in another subnet or reached
// through a next hop, the frame is routed and gw is its new source MAC, the
// gateway's of the subnet it is delivered in (see gatewayMAC).
func resolve(t *policy.Table, vsid policy.VSID, a netip.Addr) (rec *policy.LookupRecord, dstVSID policy.VSID, gw packet.MAC, reason Reason) {
	_, onLink := t.OnLinkPrefix(vsid, a)
	return resolveOnLink(nil, t, vsid, a, onLink)
}

// resolveOnLink is resolve for a caller that has looked up whether a is in
// one of vsid's on-link prefixes already, telling tr (if not nil) the route
// and record it takes.
func resolveOnLink(tr *tracer, t *policy.Table, vsid policy.VSID, a netip.Addr, onLink bool) (rec *policy.LookupRecord, dstVSID policy.VSID, gw packet.MAC, reason Reason) {
	if onLink {
		if rec, ok := t.LookupCA(vsid, a); ok {
			if tr != nil {
				tr.lookup(rec, a, vsid)
			}
			return rec, vsid, gw, ReasonNone
		}
		return nil, vsid, gw, ReasonNoLookupRecord
	}
	rd, ok := t.RoutingDomain(vsid)
	if !ok {
		return nil, 0, gw, ReasonNoRoute
	}
	rt, ok := t.Route(rd, a)
	if !ok {
		return nil, 0, gw, ReasonOtherRoutingDomain
	}
	if tr != nil {
		tr.route(rd, rt, a)
	}
	nh := a
	if !rt.OnLink() {
		nh = rt.NextHop
		if rt, ok = t.Route(rd, nh); !ok || !rt.OnLink() {
			return nil, 0, gw, ReasonNoRoute
		}
		if tr != nil {
			tr.route(rd, rt, nh)
		}
	}
	dstVSID = rt.VirtualSubnetID
	// Another subnet's gateway address is the host's too, not a VM's, even
	// with a lookup record (see gatewayMAC).
	if policy.GatewayAddress(rt.DestinationPrefix) == nh {
		return nil, dstVSID, gw, ReasonToGateway
	}
	gw = gatewayMAC(t, dstVSID, rt.DestinationPrefix)
	rec, ok = t.LookupCA(dstVSID, nh)
	if !ok {
		rec, ok = t.GatewayWildcard(dstVSID, nh.Is6())
	}
	if !ok {
		return nil, dstVSID, gw, ReasonNoLookupRecord
	}
	if tr != nil {
		tr.lookup(rec, nh, dstVSID)
	}
	return rec, dstVSID, gw, ReasonNone
}

// externalRouter is where the VM with MAC self in vsid sends dst, outside
// its subnet, under UseExternalRouter: to the router named by the NextHop nh
// of the customer route RouteVia picks, a VM with a lookup record in vsid,
// at L2 (its MAC, the sender's VSID, no TTL change). The router routes; it
// is never handed back its own frames.
func externalRouter(tr *tracer, t *policy.Table, vsid policy.VSID, self packet.MAC, dst netip.Addr) (rec *policy.LookupRecord, nh netip.Addr, reason Reason) {
	rd, ok := t.RoutingDomain(vsid)
	if !ok {
		return nil, nh, ReasonNoRoute
	}
	rt, ok := t.RouteVia(rd, vsid, dst)
	if !ok {
		return nil, nh, ReasonNoExternalRouter
	}
	if tr != nil {
		tr.route(rd, rt, dst)
	}
	rec, ok = t.LookupCA(vsid, rt.NextHop)
	if ok && tr != nil {
		tr.lookup(rec, rt.NextHop, vsid)
	}
	switch {
	case !ok:
		return nil, rt.NextHop, ReasonNoLookupRecord
	case rec.MACAddress == self:
		return nil, rt.NextHop, ReasonNoExternalRouter
	}
	return rec, rt.NextHop, ReasonNone
}

// gatewayMAC is the MAC of the gateway of vsid's on-link prefix pfx, which
// ARP and ND answer with and routed frames come from: that of the lookup
// record of the gateway address if policy has one (Microsoft's deployments
// give each subnet's default gateway one, at PA 169.254.254.254), else
// GatewayMAC. Such a record names the host's gateway, never a destination.
func gatewayMAC(t *policy.Table, vsid policy.VSID, pfx netip.Prefix) packet.MAC {
	if rec, ok := t.LookupCA(vsid, policy.GatewayAddress(pfx)); ok {
		return rec.MACAddress
	}
	return GatewayMAC
}

// isGatewayRecord reports whether rec is the lookup record of its subnet's
// gateway address.
func isGatewayRecord(t *policy.Table, rec *policy.LookupRecord) bool {
	pfx, ok := t.OnLinkPrefix(rec.VirtualSubnetID, rec.CustomerAddress)
	return ok && policy.GatewayAddress(pfx) == rec.CustomerAddress
}

// sourceAllowed reports whether port p may send from src: one of its CAs,
// any CA where its subnet learns them, or one outside its subnet when p is
// the subnet's gateway, which f records for a kernel to install.
func sourceAllowed(f *Flows, t *policy.Table, p *PortConfig, src netip.Addr) bool {
	if p.owns(src) || learnsCAs(t, p) {
		return true
	}
	if !forwardsFor(t, p, src) {
		return false
	}
	f.recordForwarded(p, src)
	return true
}

// forwardsFor reports whether port p may send from, and receive for, CA a
// that is not its own: a is outside p's subnet and p is its subnet's
// gateway or router, the VM whose MAC has the subnet's GatewayWildcard
// record, which receivers validate such a source against.
func forwardsFor(t *policy.Table, p *PortConfig, a netip.Addr) bool {
	rec, ok := t.GatewayWildcard(p.VSID, a.Is6())
	if !ok || rec.MACAddress != p.MAC {
		return false
	}
	_, onLink := t.OnLinkPrefix(p.VSID, a)
	return !onLink
}

// deliver sends on an IP packet from port p as its flow's decision d says:
// rewrite MACs (the source to *gw) and TTL when routed, then deliver locally
// or encapsulate with FlowID flow. frame ends where the IP packet does.
func (s *Switch) deliver(r *Result, f *Flows, p *PortConfig, t *policy.Table, d *decision, gw *packet.MAC, buf []byte, off int, frame []byte, segLen int, scratch []byte, flow uint8) {
	eth := packet.Ethernet(frame)
	v6 := eth.Type() == packet.EtherTypeIPv6
	if d.routed {
		if v6 {
			ip := packet.IPv6(eth.Payload())
			if ip.HopLimit() <= 1 {
				*r = s.icmpError6(p, t, frame, scratch, ReasonTTLExceeded, packet.ICMPv6TimeExceeded, 0, 0)
				return
			}
			if s.tr != nil {
				s.tr.routed(*gw, ip.HopLimit())
			}
			ip.DecHopLimit()
		} else {
			ip := packet.IPv4(eth.Payload())
			if ip.TTL() <= 1 {
				*r = s.icmpError4(p, t, frame, scratch, ReasonTTLExceeded, packet.ICMPv4TimeExceeded, 0, 0)
				return
			}
			if s.tr != nil {
				s.tr.routed(*gw, ip.TTL())
			}
			ip.DecTTL()
		}
		eth.SetSrc(*gw)
	}
	eth.SetDst(d.mac)

	if d.local >= 0 {
		s.toLocal(r, d, frame)
		return
	}
	dstPA := d.pa()
	if s.tr != nil {
		s.tr.dstPA = dstPA
	}
	var src netip.Addr
	if v6 {
		src = packet.IPv6(eth.Payload()).Src()
	} else {
		src = packet.IPv4(eth.Payload()).Src()
	}
	if d.encap == rewriteEncap {
		if s.rewrite(r, p, t, d, frame, src, dstPA, segLen, scratch) {
			return
		}
		enc := *d
		enc.encap = t.Encapsulation(d.dstVSID)
		d = &enc
	}
	srcPA, ok := sourcePA(t, p.VSID, src, dstPA)
	if !ok {
		*r = s.drop(ReasonNoLocalPA)
		return
	}
	over := Overhead(d.encap, dstPA.Is6())
	wire := len(frame)
	if segLen > 0 {
		wire = segLen
	}
	if wire+over-packet.EthernetHeaderLen > s.cfg.UnderlayMTU {
		mtu := s.cfg.UnderlayMTU - over
		if v6 {
			*r = s.icmpError6(p, t, frame, scratch, ReasonTooBig, packet.ICMPv6PacketTooBig, 0, uint32(mtu))
			return
		}
		if packet.IPv4(eth.Payload()).DF() {
			*r = s.icmpError4(p, t, frame, scratch, ReasonTooBig, packet.ICMPv4DestUnreachable, packet.ICMPv4CodeFragNeeded, uint32(mtu))
			return
		}
	}
	toUnderlay(r, f, d, buf, off, len(frame), srcPA, dstPA, flow)
	if s.tr != nil {
		s.tr.encap(r, d.dstVSID)
	}
}

// rewriteEncap marks the decision to send to a remote VM with Rule Nat,
// whose CA is the packet's destination: rewrite decides per packet.
const rewriteEncap policy.Encapsulation = 0xff

// rewrite sends the IP packet in frame, from CA src of port p to a remote
// VM with Rule Nat (d), by IP Rewrite, and returns true; or returns false,
// having changed nothing, for a packet to encapsulate instead. A packet is
// rewritten when its source CA has Rule Nat too, with this host's PA of the
// destination's family: the source CA becomes its PA and the destination
// CA dstPA, with no header added, and the receiver maps the pair back. GRE
// and UDP to port 4789 are encapsulated, since the receiver would take them
// for tunnel packets, and so is IPv6 neighbour discovery (the receiver's
// stack takes it); so is an IPv4 packet that may be fragmented and does
// not fit the underlay (an IPPROTO_RAW send does not fragment, the outer
// header of a tunnel packet does).
func (s *Switch) rewrite(r *Result, p *PortConfig, t *policy.Table, d *decision, frame []byte, src, dstPA netip.Addr, segLen int, scratch []byte) bool {
	rec, ok := t.LookupCA(p.VSID, src)
	if !ok || rec.Rule != policy.TranslationMethodNat || rec.ProviderAddress.Is6() != dstPA.Is6() || !t.IsLocalPA(rec.ProviderAddress) {
		return false
	}
	eth := packet.Ethernet(frame)
	wire := len(frame)
	if segLen > 0 {
		wire = segLen
	}
	tooBig := wire-packet.EthernetHeaderLen > s.cfg.UnderlayMTU
	if dstPA.Is6() {
		ip := packet.IPv6(eth.Payload())
		if tunnelLike(ip.NextHeader(), ip.Payload(), false) || isND(ip.NextHeader(), ip.Payload()) {
			return false
		}
		if tooBig {
			*r = s.icmpError6(p, t, frame, scratch, ReasonTooBig, packet.ICMPv6PacketTooBig, 0, uint32(s.cfg.UnderlayMTU))
			return true
		}
		ip.SetAddrs(rec.ProviderAddress, dstPA, false)
	} else {
		ip := packet.IPv4(eth.Payload())
		if tunnelLike(ip.Protocol(), ip.Payload(), ip.IsFragment()) || tooBig && !ip.DF() {
			return false
		}
		if tooBig {
			*r = s.icmpError4(p, t, frame, scratch, ReasonTooBig, packet.ICMPv4DestUnreachable, packet.ICMPv4CodeFragNeeded, uint32(s.cfg.UnderlayMTU))
			return true
		}
		ip.SetAddrs(rec.ProviderAddress, dstPA, false)
	}
	d.vc.Encapsulated.Add(1) // what leaves for the underlay, rewritten or encapsulated
	r.set(Rewritten, 0, rec.ProviderAddress, dstPA, 0, 0, frame)
	r.clearExtras()
	if s.tr != nil {
		s.tr.rewritten(rec, dstPA, d.dstVSID)
	}
	return true
}

// tunnelLike reports whether an IP payload of protocol proto would be
// taken for an NVGRE or VXLAN packet at its destination PA, which leaves
// every GRE packet and every fragment of GRE or UDP to its tunnel sockets.
func tunnelLike(proto uint8, l4 []byte, fragment bool) bool {
	switch proto {
	case packet.ProtoGRE:
		return true
	case packet.ProtoUDP:
		return fragment || len(l4) >= 4 && binary.BigEndian.Uint16(l4[2:4]) == packet.VXLANPort
	}
	return false
}

// isND reports whether an IPv6 payload is neighbour discovery (ICMPv6
// types 133 to 137), which a host's stack takes for its PAs.
func isND(proto uint8, l4 []byte) bool {
	return proto == packet.ProtoICMPv6 && len(l4) > 0 && l4[0] >= 133 && l4[0] <= 137
}

// sourcePA is the outer source of a packet from CA src of a port in vsid to
// dstPA: the PA of src's own lookup record when it is this host's and of
// dstPA's family, since the receiver checks the inner source CA against the
// outer source PA; else this host's PA of that family.
func sourcePA(t *policy.Table, vsid policy.VSID, src, dstPA netip.Addr) (netip.Addr, bool) {
	if rec, ok := t.LookupCA(vsid, src); ok && rec.ProviderAddress.Is6() == dstPA.Is6() && t.IsLocalPA(rec.ProviderAddress) {
		return rec.ProviderAddress, true
	}
	return t.LocalPA(dstPA.Is6())
}

// toLocal makes the verdict for frame, bound for d's local port.
func (s *Switch) toLocal(r *Result, d *decision, frame []byte) {
	if s.tr != nil {
		p, _ := s.ports.Load().Port(int(d.local))
		s.tr.local(p)
	}
	d.vc.Local.Add(1)
	s.countTx(int(d.local), len(frame))
	r.set(ToPort, int(d.local), netip.Addr{}, netip.Addr{}, 0, 0, frame)
	r.clearExtras()
}

// toUnderlay encapsulates the n-byte frame at buf[off:] as d says and makes
// the verdict for sending it from srcPA to dstPA.
func toUnderlay(r *Result, f *Flows, d *decision, buf []byte, off, n int, srcPA, dstPA netip.Addr, flow uint8) {
	if f != nil {
		f.countEncap(d.vc)
	} else {
		d.vc.Encapsulated.Add(1)
	}
	encapsulate(buf[off-EncapHeaderLen:off], d.encap, d.dstVSID, flow)
	r.set(ToUnderlay, 0, srcPA, dstPA, d.encap, flow, buf[off-EncapHeaderLen:off+n])
	r.clearExtras()
}

// encapsulate writes the header of encapsulation e, NVGRE or VXLAN, for
// vsid into hdr, the EncapHeaderLen bytes in front of the inner frame.
func encapsulate(hdr []byte, e policy.Encapsulation, vsid policy.VSID, flow uint8) {
	if e == policy.EncapVXLAN {
		// The UDP socket adds the UDP header; the caller picks its source
		// port by FlowID.
		packet.PutVXLAN(hdr, uint32(vsid))
	} else {
		packet.PutNVGRE(hdr, uint32(vsid), flow)
	}
}

// EncapHeaderLen is the length of both the NVGRE and the VXLAN header; the
// line after it does not compile if they differ.
const EncapHeaderLen = packet.NVGREHeaderLen

var _ = [1]struct{}{}[packet.VXLANHeaderLen-EncapHeaderLen]

// set writes a verdict without a drop reason into r field by field, all but
// Redirect, Miss, Copies and Learn (see clearExtras): storing all of a Result,
// zeroing it or copying a literal, was a fifth of the cached path.
func (r *Result) set(a Action, port int, src, dst netip.Addr, e policy.Encapsulation, flow uint8, data []byte) {
	r.Action, r.Reason, r.Port, r.Src, r.Dst, r.Encap, r.FlowID, r.Data, r.Validated, r.Reply = a, ReasonNone, port, src, dst, e, flow, data, false, false
}

// clearExtras zeroes Redirect, Miss, Copies and Learn, which only verdicts
// of other actions set, checking first: an invalid netip.Addr is always the
// zero one.
func (r *Result) clearExtras() {
	if r.Learn != nil {
		r.Learn = nil
	}
	if rd := &r.Redirect; rd.VSID != 0 || rd.CA.IsValid() || rd.PA.IsValid() || rd.NewPA.IsValid() {
		r.Redirect = RedirectInfo{}
	}
	if r.Miss.VSID != 0 || r.Miss.CA.IsValid() {
		r.Miss = Miss{}
	}
	if r.Copies.Paths != nil || r.Copies.Ports != nil {
		r.Copies = Copies{}
	}
}

// decide works out from policy where packets from port p to dst go, into d
// and *gw (the source MAC of routed frames) and into f under key, and
// returns d. It returns nil with the verdict (a drop or a hold) in r if they
// go nowhere. In a subnet with L2Only records, a dst policy cannot resolve
// goes by dstMAC (see l2Dest).
func (s *Switch) decide(r *Result, f *Flows, p *PortConfig, pt *PortTable, t *policy.Table, key flowKey, dst netip.Addr, dstMAC packet.MAC, d *decision, gw *packet.MAC) *decision {
	var rec *policy.LookupRecord
	dstVSID, missing, reason := p.VSID, dst, ReasonMulticast
	if dst.IsGlobalUnicast() {
		pfx, onLink := t.OnLinkPrefix(p.VSID, dst)
		if s.tr != nil {
			s.tr.onLink(p.VSID, pfx, onLink, dst)
		}
		switch {
		case onLink && policy.GatewayAddress(pfx) == dst:
			*r = s.drop(ReasonToGateway)
			return nil
		case !onLink && t.Global().UseExternalRouter:
			rec, missing, reason = externalRouter(s.tr, t, p.VSID, p.MAC, dst)
		default:
			rec, dstVSID, *gw, reason = resolveOnLink(s.tr, t, p.VSID, dst, onLink)
		}
	}
	if reason != ReasonNone {
		if rec, ok := l2Dest(t, p.VSID, dstMAC); ok {
			if s.tr != nil {
				s.tr.byMAC(p.VSID, rec)
			}
			// Not cached: this decision follows the MAC, the cache's key is
			// the CA.
			if reason = s.target(d, rec, netip.Addr{}, p.VSID, false, pt, t); reason != ReasonNone {
				*r = s.drop(reason)
				return nil
			}
			return d
		}
	}
	if reason == ReasonNoLookupRecord && s.onMiss(r, p, dstVSID, missing) {
		return nil
	}
	if reason == ReasonNone {
		reason = s.target(d, rec, dst, dstVSID, !gw.IsZero(), pt, t)
	}
	if reason != ReasonNone {
		*r = s.drop(reason)
		return nil
	}
	f.insert(key, d, *gw)
	s.recordDecision(f, p, dst, d, *gw, t)
	if s.tr != nil {
		e, ok := s.export(p, dst, d, *gw, t, s.gen.Load())
		s.tr.decided(e, ok, p)
	}
	return d
}

// target makes in d the decision to send to the VM of rec in dstVSID: to
// its local port if rec's PA is this host's, else to that PA, encapsulated
// or, when rec has Rule Nat and is the record of the packets' destination
// dst (not a next hop's), by IP Rewrite (see rewrite).
// It returns the drop reason if that cannot be done.
func (s *Switch) target(d *decision, rec *policy.LookupRecord, dst netip.Addr, dstVSID policy.VSID, routed bool, pt *PortTable, t *policy.Table) Reason {
	if rec.Rule != policy.TranslationMethodEncap && rec.Rule != policy.TranslationMethodNat {
		return ReasonRuleUnsupported
	}
	if isGatewayRecord(t, rec) {
		return ReasonToGateway
	}
	*d = decision{dstVSID: dstVSID, local: -1, mac: rec.MACAddress, routed: routed, dstPA: rec.ProviderAddress.As16(), vc: s.Counters.VSID(dstVSID)}
	if t.IsLocalPA(rec.ProviderAddress) {
		lp, ok := pt.ByMAC(dstVSID, rec.MACAddress)
		if !ok {
			return ReasonNoLocalPort
		}
		d.local = int32(lp.Index)
	} else {
		d.encap = t.Encapsulation(dstVSID)
		if rec.Rule == policy.TranslationMethodNat && rec.CustomerAddress == dst {
			// The source's own PA may be all this host has of the family.
			d.encap = rewriteEncap
		} else if _, ok := t.LocalPA(rec.ProviderAddress.Is6()); !ok {
			return ReasonNoLocalPA
		}
	}
	return ReasonNone
}

func (s *Switch) countTx(port, n int) {
	pc := s.Counters.Port(port)
	pc.TxFrames.Add(1)
	pc.TxBytes.Add(uint64(n))
}

// reply returns a frame the switch built for port p.
func (s *Switch) reply(p *PortConfig, data []byte) Result {
	s.Counters.VSID(p.VSID).Replies.Add(1)
	s.countTx(p.Index, len(data))
	return Result{Action: ToPort, Port: p.Index, Data: data, Reply: true}
}

// answerFor returns the MAC the switch answers ARP/ND with for target a, seen
// from a VM in vsid: the gateway's (gatewayMAC) for the subnet's gateway
// address, else the MAC of the lookup record, within the VM's routing domain.
func answerFor(tr *tracer, t *policy.Table, vsid policy.VSID, a netip.Addr) (mac packet.MAC, gateway bool, reason Reason) {
	pfx, onLink := t.OnLinkPrefix(vsid, a)
	if onLink && policy.GatewayAddress(pfx) == a {
		return gatewayMAC(t, vsid, pfx), true, ReasonNone
	}
	rec, _, _, reason := resolveOnLink(tr, t, vsid, a, onLink)
	if reason != ReasonNone {
		return mac, false, reason
	}
	return rec.MACAddress, false, ReasonNone
}

// arp answers an ARP request from policy. Only in a subnet with L2Only
// records, a request policy cannot answer is flooded and a reply goes to
// the VM that asked (see l2).
func (s *Switch) arp(r *Result, p *PortConfig, pt *PortTable, t *policy.Table, buf []byte, off int, frame []byte, eth packet.Ethernet, scratch []byte) {
	a, err := packet.ParseARP(eth.Payload())
	if err != nil {
		*r = s.drop(ReasonMalformed)
		return
	}
	if a.SenderMAC() != p.MAC {
		*r = s.drop(ReasonSpoofedMAC)
		return
	}
	spa := a.SenderIP()
	ownsSPA := p.owns(spa) || learnsCAs(t, p)
	if a.Op() != packet.ARPRequest {
		if !ownsSPA || !s.l2(r, p, pt, t, buf, off, frame, false) {
			*r = s.drop(ReasonARPNotRequest)
		}
		return
	}
	if !ownsSPA {
		// ARP probes (sender 0.0.0.0) are how a VM checks its own address: silence means unique.
		if spa.IsUnspecified() {
			*r = s.drop(ReasonARPUnknownTarget)
			return
		}
		*r = s.drop(ReasonSpoofedCA)
		return
	}
	target := a.TargetIP()
	mac, _, reason := answerFor(s.tr, t, p.VSID, target)
	if reason != ReasonNone {
		if s.l2(r, p, pt, t, buf, off, frame, false) {
			return
		}
		if reason == ReasonNoLookupRecord && s.onMiss(r, p, p.VSID, target) {
			return
		}
		*r = s.drop(ReasonARPUnknownTarget)
		return
	}
	if s.tr != nil {
		s.tr.answer("arp", p.VSID, target, mac)
	}
	n := packet.PutEthernet(scratch, p.MAC, mac, packet.EtherTypeARP)
	n += packet.PutARP(scratch[n:], packet.ARPReply, mac, target, p.MAC, spa)
	*r = s.reply(p, scratch[:n])
}

// neighborSolicit answers an IPv6 NS from policy. The VM may solicit from its
// link-local address, which is not one of its CAs, so the source is checked
// against the port's MAC through the source link-layer option instead. In a
// subnet with L2Only records, an NS policy cannot answer, for duplicate
// address detection or a link-local target too, goes on by MAC (see l2).
func (s *Switch) neighborSolicit(r *Result, p *PortConfig, pt *PortTable, t *policy.Table, buf []byte, off int, frame []byte, src netip.Addr, m packet.ICMPv6, scratch []byte) {
	if lla, ok := m.NDSourceLinkAddr(); ok && lla != p.MAC {
		*r = s.drop(ReasonSpoofedMAC)
		return
	}
	if !src.IsLinkLocalUnicast() && !p.owns(src) && !learnsCAs(t, p) {
		if src.IsUnspecified() {
			*r = s.drop(ReasonNDUnknownTarget)
			return
		}
		*r = s.drop(ReasonSpoofedCA)
		return
	}
	target := m.NDTarget()
	if s.tr != nil {
		s.tr.dst = target
	}
	if target.IsLinkLocalUnicast() || src.IsUnspecified() {
		if !s.l2(r, p, pt, t, buf, off, frame, true) {
			*r = s.drop(ReasonNDUnknownTarget)
		}
		return
	}
	mac, gateway, reason := answerFor(s.tr, t, p.VSID, target)
	if reason != ReasonNone {
		if s.l2(r, p, pt, t, buf, off, frame, true) {
			return
		}
		if reason == ReasonNoLookupRecord && s.onMiss(r, p, p.VSID, target) {
			return
		}
		*r = s.drop(ReasonNDUnknownTarget)
		return
	}
	if s.tr != nil {
		s.tr.answer("nd", p.VSID, target, mac)
	}
	flags := uint8(packet.NAFlagSolicited | packet.NAFlagOverride)
	if gateway {
		flags |= packet.NAFlagRouter
	}
	const naLen = 32 // NA header (24) + target link-layer option (8)
	n := packet.PutEthernet(scratch, p.MAC, mac, packet.EtherTypeIPv6)
	n += packet.PutIPv6(scratch[n:], target, src, packet.ProtoICMPv6, 255, naLen)
	n += packet.PutNeighborAdvert(scratch[n:], target, src, target, mac, flags)
	*r = s.reply(p, scratch[:n])
}

// icmpError4 answers the IPv4 packet in frame from port p with an ICMP
// error from the virtual gateway of its subnet, and counts the packet
// dropped for reason: fragmentation needed, so the VM's path MTU discovery
// learns the overlay's MTU, or TTL exceeded where a routed packet's TTL
// runs out, as a router answers it (traceroute relies on it).
func (s *Switch) icmpError4(p *PortConfig, t *policy.Table, frame, scratch []byte, reason Reason, typ, code uint8, param uint32) Result {
	ip := packet.IPv4(packet.Ethernet(frame).Payload())
	gw, mac := gatewayFor(t, p.VSID, ip.Src())
	s.Counters.Drop(reason)
	if s.tr != nil {
		s.tr.drop(reason)
	}
	n := packet.PutEthernet(scratch, p.MAC, mac, packet.EtherTypeIPv4)
	hdr := n
	n += packet.IPv4HeaderLen
	n += packet.PutICMPv4Error(scratch[n:], typ, code, param, ip)
	packet.PutIPv4(scratch[hdr:], gw, ip.Src(), packet.ProtoICMP, 64, n-hdr-packet.IPv4HeaderLen, 0, false)
	return s.reply(p, scratch[:n])
}

// icmpError6 is icmpError4 for IPv6: Packet Too Big, or hop limit exceeded.
func (s *Switch) icmpError6(p *PortConfig, t *policy.Table, frame, scratch []byte, reason Reason, typ, code uint8, param uint32) Result {
	ip := packet.IPv6(packet.Ethernet(frame).Payload())
	gw, mac := gatewayFor(t, p.VSID, ip.Src())
	s.Counters.Drop(reason)
	if s.tr != nil {
		s.tr.drop(reason)
	}
	n := packet.PutEthernet(scratch, p.MAC, mac, packet.EtherTypeIPv6)
	hdr := n
	n += packet.IPv6HeaderLen
	n += packet.PutICMPv6Error(scratch[n:], gw, ip.Src(), typ, code, param, ip)
	packet.PutIPv6(scratch[hdr:], gw, ip.Src(), packet.ProtoICMPv6, 255, n-hdr-packet.IPv6HeaderLen)
	return s.reply(p, scratch[:n])
}

// gatewayFor is the gateway address of the subnet holding a and its MAC.
func gatewayFor(t *policy.Table, vsid policy.VSID, a netip.Addr) (netip.Addr, packet.MAC) {
	if pfx, ok := t.OnLinkPrefix(vsid, a); ok {
		return policy.GatewayAddress(pfx), gatewayMAC(t, vsid, pfx)
	}
	return a, GatewayMAC
}
