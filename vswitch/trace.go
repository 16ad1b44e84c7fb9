package vswitch

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// A trace runs a frame through the pipeline itself, not a model of it, so it
// cannot tell another story than the switch: a shadow Switch shares the real
// one's snapshots (policy, ports, moved VMs, keys, limits) but has its own
// throwaway counters, no event sink and no flow cache, and a tracer that the
// egress and ingress code tell each decision they take. The real switch's
// tracer is nil: every hook is one `if s.tr != nil` on the uncached path.
// A dry run raises no event, parks nothing, caches nothing, consumes no rate
// token and records no redirect sequence number; the verdict is returned,
// never executed.

// Step is one decision the switch took for a traced frame: what it checked
// or did (Step, a short kebab-case kind), how (Detail), the policy object
// that decided it, and for a drop the reason and the object to fix.
type Step struct {
	Step   string `json:"Step"`
	Detail string `json:"Detail"`
	Object string `json:"Object,omitempty"`
	Reason string `json:"Reason,omitempty"`
	Fix    string `json:"Fix,omitempty"`
}

// Outer is where an encapsulated or forwarded packet goes and what it
// carries, for the host at Dst to trace its arrival.
type Outer struct {
	Src, Dst netip.Addr
	Encap    policy.Encapsulation
	VSID     policy.VSID
	FlowID   uint8
	// Payload starts at the NVGRE or VXLAN header; for an IP Rewrite
	// packet (Rewritten) it is the Ethernet frame, addresses the PAs.
	Payload   []byte
	Rewritten bool `json:",omitempty"`
}

// TraceResult is what the switch would do with a frame.
type TraceResult struct {
	Steps []Step
	// Verdict is the action: drop, to-port, to-underlay, redirect, hold,
	// forward or flood.
	Verdict string
	Reason  string `json:",omitempty"`
	// Port is the local port of a to-port verdict.
	Port int
	// Outer is set for to-underlay and forward verdicts.
	Outer *Outer `json:",omitempty"`
	// FastPath says whether the kernel fast path could forward the flow's
	// later packets (a decision the slow path installs) or every packet
	// takes the slow path; Decision is the installable decision.
	FastPath       bool
	Decision       *Decision               `json:",omitempty"`
	Ingress        *IngressDecision        `json:",omitempty"`
	RewriteIngress *RewriteIngressDecision `json:",omitempty"`
}

var actionNames = [...]string{Drop: "drop", ToPort: "to-port", ToUnderlay: "to-underlay", Redirect: "redirect", Hold: "hold", Forward: "forward", Flood: "flood"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// TraceFrame is the frame a VM on a port sends, or an encapsulated packet
// from the underlay, described by its fields; Frame builds it.
type TraceFrame struct {
	SrcMAC, DstMAC   packet.MAC
	Src, Dst         netip.Addr
	Proto            uint8 // packet.ProtoUDP, ProtoTCP, ProtoICMP or ProtoICMPv6
	SrcPort, DstPort uint16
	TTL              uint8
	// Len is the length of the IP packet; 0 for the shortest that holds
	// Mark.
	Len int
	// Mark starts the payload, so a live probe can be told from other
	// traffic in captures.
	Mark []byte
}

// Frame builds the Ethernet frame f describes.
func (f TraceFrame) Frame() ([]byte, error) {
	if !f.Src.IsValid() || !f.Dst.IsValid() || f.Src.Is4() != f.Dst.Is4() {
		return nil, fmt.Errorf("source %s and destination %s must be addresses of one family", f.Src, f.Dst)
	}
	hdr := packet.IPv4HeaderLen
	et := uint16(packet.EtherTypeIPv4)
	if f.Src.Is6() {
		hdr, et = packet.IPv6HeaderLen, packet.EtherTypeIPv6
	}
	l4 := 8 // UDP, ICMP echo header
	if f.Proto == packet.ProtoTCP {
		l4 = 20
	}
	if f.Len == 0 {
		f.Len = hdr + l4 + len(f.Mark)
	}
	if f.Len < hdr+l4+len(f.Mark) || f.Len > 9000 {
		return nil, fmt.Errorf("length %d is invalid: use %d..9000 bytes of IP packet", f.Len, hdr+l4+len(f.Mark))
	}
	if f.TTL == 0 {
		f.TTL = 64
	}
	b := make([]byte, packet.EthernetHeaderLen+f.Len)
	n := packet.PutEthernet(b, f.DstMAC, f.SrcMAC, et)
	if f.Src.Is4() {
		n += packet.PutIPv4(b[n:], f.Src, f.Dst, f.Proto, f.TTL, f.Len-hdr, 0, true)
	} else {
		n += packet.PutIPv6(b[n:], f.Src, f.Dst, f.Proto, f.TTL, f.Len-hdr)
	}
	switch f.Proto {
	case packet.ProtoTCP:
		putPorts(b[n:], f.SrcPort, f.DstPort)
		b[n+12] = 5 << 4 // data offset
		b[n+13] = 0x02   // SYN
	case packet.ProtoUDP:
		packet.PutUDP(b[n:], f.SrcPort, f.DstPort, f.Len-hdr-l4)
	case packet.ProtoICMP:
		b[n] = 8 // echo request
	case packet.ProtoICMPv6:
		b[n] = 128 // echo request
	}
	copy(b[n+l4:], f.Mark)
	return b, nil
}

func putPorts(b []byte, sport, dport uint16) {
	b[0], b[1], b[2], b[3] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
}

// ARPFrame is the ARP request a VM with mac and address src sends for
// target.
func ARPFrame(mac packet.MAC, src, target netip.Addr) []byte {
	b := make([]byte, packet.EthernetHeaderLen+28)
	n := packet.PutEthernet(b, packet.Broadcast, mac, packet.EtherTypeARP)
	packet.PutARP(b[n:], packet.ARPRequest, mac, src, packet.MAC{}, target)
	return b
}

// shadow returns a switch that sees what s sees and changes nothing of s.
func (s *Switch) shadow(tr *tracer) *Switch {
	sh := &Switch{cfg: s.cfg, limits: s.limits, negative: s.negative, Counters: newCounters(), tr: tr}
	sh.cfg.Events = nil
	sh.policy.Store(s.policy.Load())
	sh.ports.Store(s.ports.Load())
	sh.moved.Store(s.moved.Load())
	sh.hold.Store(s.hold.Load())
	sh.now.Store(s.now.Load())
	sh.gen.Store(s.gen.Load())
	sh.rkeys.Store(s.rkeys.Load())
	sh.unauthRedirects.Store(s.unauthRedirects.Load())
	sh.learned.copyFrom(&s.learned)
	tr.live = s.Counters
	tr.t = s.policy.Load()
	tr.mtuVal = s.cfg.UnderlayMTU
	return sh
}

// TraceFromPort is what the switch would do with frame, sent by the VM on
// port, step by step. frame is not modified.
func (s *Switch) TraceFromPort(port int, frame []byte) TraceResult {
	out, _ := s.traceFromPort(port, frame)
	return out
}

func (s *Switch) traceFromPort(port int, frame []byte) (TraceResult, []byte) {
	tr := &tracer{port: port}
	sh := s.shadow(tr)
	tr.describeFrame(frame)
	buf := make([]byte, Headroom+len(frame))
	copy(buf[Headroom:], frame)
	var r Result
	sh.FromPortFlows(&r, nil, port, buf, Headroom, len(frame), 0, make([]byte, len(frame)+2048))
	return tr.result(&r), r.Data
}

// TracePacket traces the packet f that the VM on port sends. With f.DstMAC
// zero, it first traces the ARP request (IPv6: neighbor solicitation) the
// VM sends for its next hop, f.Dst if that is in the VM's own subnet, else
// the subnet's gateway, and addresses the packet to the MAC the switch
// answers; resolve is nil otherwise. The packet is traced only if the
// answer came; frame is the packet's frame.
func (s *Switch) TracePacket(port int, f TraceFrame) (resolve, pkt *TraceResult, frame []byte, err error) {
	p, ok := s.ports.Load().Port(port)
	if ok && f.SrcMAC.IsZero() {
		f.SrcMAC = p.MAC
	}
	if ok && f.DstMAC.IsZero() {
		nh := f.Dst
		if t := s.policy.Load(); t != nil {
			if pfx, ok := t.OnLinkPrefix(p.VSID, f.Src); ok && !pfx.Contains(f.Dst) {
				nh = policy.GatewayAddress(pfx)
			}
		}
		var q []byte
		if f.Src.Is6() {
			q = NSFrame(f.SrcMAC, f.Src, nh)
		} else {
			q = ARPFrame(f.SrcMAC, f.Src, nh)
		}
		res, reply := s.traceFromPort(port, q)
		resolve = &res
		if res.Verdict != ToPort.String() {
			return resolve, nil, nil, nil
		}
		f.DstMAC = packet.Ethernet(reply).Src()
	}
	frame, err = f.Frame()
	if err != nil {
		return nil, nil, nil, err
	}
	res := s.TraceFromPort(port, frame)
	return resolve, &res, frame, nil
}

// NSFrame is the neighbor solicitation a VM with mac and address src sends
// for target, to its solicited-node multicast address.
func NSFrame(mac packet.MAC, src, target netip.Addr) []byte {
	t := target.As16()
	group := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]})
	b := make([]byte, packet.EthernetHeaderLen+packet.IPv6HeaderLen+32)
	n := packet.PutEthernet(b, packet.MAC{0x33, 0x33, 0xff, t[13], t[14], t[15]}, mac, packet.EtherTypeIPv6)
	n += packet.PutIPv6(b[n:], src, group, packet.ProtoICMPv6, 255, 32)
	m := b[n:]
	m[0] = packet.ICMPv6NeighborSolicitation
	copy(m[8:24], t[:])
	m[24], m[25] = 1, 1 // source link-layer address option
	copy(m[26:32], mac[:])
	sum := packet.Checksum(m, packet.PseudoHeaderSum(src, group, packet.ProtoICMPv6, len(m)))
	m[2], m[3] = byte(sum>>8), byte(sum)
	return b
}

// TraceFromUnderlay is what the switch would do with an encapsulated
// packet from src for local PA dst: payload starts at the NVGRE header, or
// for VXLAN at the VXLAN header. payload is not modified.
func (s *Switch) TraceFromUnderlay(src, dst netip.Addr, e policy.Encapsulation, payload []byte) TraceResult {
	tr := &tracer{port: -1, srcPA: src, dstPA: dst}
	sh := s.shadow(tr)
	pkt := append([]byte(nil), payload...)
	if len(pkt) > EncapHeaderLen {
		tr.describeFrame(pkt[EncapHeaderLen:])
	}
	var r Result
	if e == policy.EncapVXLAN {
		r = sh.FromVXLAN(src, dst, pkt)
	} else {
		r = sh.FromUnderlay(src, dst, pkt)
	}
	if r.Action == Forward {
		r.Data = pkt
	}
	return tr.result(&r)
}

// TraceFromRewritten is what the switch would do with an IP Rewrite packet
// (FromRewritten) that arrived from the underlay: frame is the Ethernet
// frame, its addresses the PAs. frame is not modified.
func (s *Switch) TraceFromRewritten(frame []byte) TraceResult {
	tr := &tracer{port: -1}
	sh := s.shadow(tr)
	pkt := append([]byte(nil), frame...)
	tr.describeFrame(pkt)
	gen := sh.gen.Load()
	r := sh.FromRewritten(pkt, false)
	if d, ok := RewriteIngress(&r, gen); ok {
		tr.rewriteIngress = &d
	}
	return tr.result(&r)
}

// tracer collects the steps of one traced frame and what a drop's fix
// needs to know.
type tracer struct {
	steps []Step
	live  *Counters     // the real switch's, for the rate limits' state
	t     *policy.Table // the snapshot traced against
	port  int

	src, dst       netip.Addr
	srcMAC, dstMAC packet.MAC
	l3             bool
	vsid, dstVSID  policy.VSID
	srcPA, dstPA   netip.Addr
	frameLen       int
	mtuVal         int
	p              *PortConfig
	fast           *Decision
	ingress        *IngressDecision
	rewriteIngress *RewriteIngressDecision
}

func (tr *tracer) add(step, object, format string, args ...any) {
	tr.steps = append(tr.steps, Step{Step: step, Object: object, Detail: fmt.Sprintf(format, args...)})
}

// describeFrame notes the addresses of frame, for the steps' texts.
func (tr *tracer) describeFrame(frame []byte) {
	tr.frameLen = len(frame)
	eth, err := packet.ParseEthernet(frame)
	if err != nil {
		return
	}
	tr.srcMAC, tr.dstMAC = eth.Src(), eth.Dst()
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		if ip, err := packet.ParseIPv4(eth.Payload()); err == nil {
			tr.src, tr.dst, tr.l3 = ip.Src(), ip.Dst(), true
		}
	case packet.EtherTypeIPv6:
		if ip, err := packet.ParseIPv6(eth.Payload()); err == nil {
			tr.src, tr.dst, tr.l3 = ip.Src(), ip.Dst(), true
		}
	case packet.EtherTypeARP:
		if a, err := packet.ParseARP(eth.Payload()); err == nil {
			tr.src, tr.dst = a.SenderIP(), a.TargetIP()
		}
	}
}

func (tr *tracer) result(r *Result) TraceResult {
	out := TraceResult{Steps: tr.steps, Verdict: r.Action.String(), Port: -1}
	switch r.Action {
	case Drop, Hold:
		out.Reason = r.Reason.String()
	case ToPort:
		out.Port = r.Port
	case ToUnderlay:
		out.Outer = &Outer{Src: r.Src, Dst: r.Dst, Encap: r.Encap, VSID: tr.dstVSID, FlowID: r.FlowID, Payload: r.Data}
	case Forward:
		out.Outer = &Outer{Src: r.Src, Dst: r.Dst, Encap: tr.forwardEncap(), VSID: r.Redirect.VSID, Payload: r.Data}
	case Rewritten:
		out.Outer = &Outer{Src: r.Src, Dst: r.Dst, VSID: tr.dstVSID, Payload: r.Data, Rewritten: true}
	}
	if r.Action == ToPort && r.Validated {
		out.Ingress = tr.ingress
	}
	if r.Action == ToUnderlay || r.Action == Rewritten || r.Action == ToPort && !r.Reply && tr.port >= 0 {
		out.Decision = tr.fast
	}
	out.RewriteIngress = tr.rewriteIngress
	out.FastPath = out.Decision != nil || out.Ingress != nil || out.RewriteIngress != nil
	switch {
	case out.Decision != nil:
		out.Steps = append(out.Steps, Step{Step: "fast-path", Detail: fmt.Sprintf("the slow path installs this decision (port %d to %s) in the kernel: later packets of the flow take the fast path until policy or ports change", out.Decision.Port, out.Decision.Dst)})
	case out.Ingress != nil:
		out.Steps = append(out.Steps, Step{Step: "fast-path", Detail: fmt.Sprintf("the slow path installs this validated delivery (from PA %s, %s -> %s) in the kernel: later packets take the fast path until policy or ports change", out.Ingress.SrcPA, out.Ingress.SrcCA, out.Ingress.DstCA)})
	case out.RewriteIngress != nil:
		out.Steps = append(out.Steps, Step{Step: "fast-path", Detail: fmt.Sprintf("the slow path installs this validated delivery (PAs %s -> %s to CAs %s -> %s) in the kernel: later packets of the PA pair take the fast path until policy or ports change", out.RewriteIngress.SrcPA, out.RewriteIngress.DstPA, out.RewriteIngress.SrcCA, out.RewriteIngress.DstCA)})
	case r.Action != Drop:
		out.Steps = append(out.Steps, Step{Step: "slow-path", Detail: "no decision is installed for this: every such frame takes the slow path"})
	}
	return out
}

// forwardEncap is the encapsulation of the packet a forward passes on: the
// one it came in.
func (tr *tracer) forwardEncap() policy.Encapsulation {
	if tr.t != nil {
		return tr.t.Encapsulation(tr.vsid)
	}
	return policy.EncapNVGRE
}

func (tr *tracer) fromPort(p *PortConfig) {
	tr.p, tr.vsid = p, p.VSID
	tr.add("port", "port "+p.Name, "from port %s (index %d) in VSID %d, MAC %s, CAs %s", p.Name, p.Index, p.VSID, p.MAC, addrList(p.CAs))
}

func (tr *tracer) sourceMAC(p *PortConfig) {
	tr.add("source-mac", "port "+p.Name, "source MAC %s is the port's", p.MAC)
}

// sourceCA notes why the port may send from src.
func (tr *tracer) sourceCA(t *policy.Table, p *PortConfig, src netip.Addr) {
	switch {
	case p.owns(src):
		tr.add("source-ca", "port "+p.Name, "source CA %s is one of the port's addresses", src)
	case learnsCAs(t, p):
		tr.add("source-ca", "L2Only record of MAC "+p.MAC.String(), "source CA %s not checked: the VM has an L2Only record and learns its addresses", src)
	default:
		tr.add("source-ca", "GatewayWildcard record of VSID "+fmt.Sprint(p.VSID), "source CA %s is outside the subnet: the port is its gateway", src)
	}
}

func (tr *tracer) onLink(vsid policy.VSID, pfx netip.Prefix, onLink bool, dst netip.Addr) {
	if onLink {
		tr.add("on-link", fmt.Sprintf("customer route %s of VSID %d", pfx, vsid), "%s is on-link in VSID %d (prefix %s)", dst, vsid, pfx)
		return
	}
	tr.add("on-link", "", "%s is in none of VSID %d's on-link prefixes: routed", dst, vsid)
}

func (tr *tracer) route(rd policy.GUID, rt *policy.CustomerRoute, dst netip.Addr) {
	via := "on-link"
	if !rt.OnLink() {
		via = "next hop " + rt.NextHop.String()
	}
	tr.add("route", routeName(rt), "%s matches customer route %s (%s, metric %d) of routing domain %s into VSID %d", dst, rt.DestinationPrefix, via, rt.Metric, rd, rt.VirtualSubnetID)
}

func (tr *tracer) lookup(rec *policy.LookupRecord, ca netip.Addr, vsid policy.VSID) {
	tr.dstVSID = vsid
	what := "lookup record"
	if rec.Type == policy.GatewayWildcard && rec.CustomerAddress != ca {
		what = "GatewayWildcard record"
	}
	tr.add("lookup", recordName(rec), "%s for %s in VSID %d: MAC %s at PA %s (rule %s%s)", what, ca, vsid, rec.MACAddress, rec.ProviderAddress, rec.Rule, vmName(rec))
}

func (tr *tracer) miss(vsid policy.VSID, ca netip.Addr, held bool) {
	tr.dstVSID = vsid
	if held {
		tr.add("on-demand", fmt.Sprintf("lookup record for %s in VSID %d", ca, vsid),
			"no lookup record for %s in VSID %d: the frame is held and a policy-mismatch notification asks the host agent to fetch it", ca, vsid)
		return
	}
	tr.add("on-demand", fmt.Sprintf("lookup record for %s in VSID %d", ca, vsid), "no lookup record for %s in VSID %d and the host does not hold misses: a policy-mismatch notification is raised", ca, vsid)
}

func (tr *tracer) byMAC(vsid policy.VSID, rec *policy.LookupRecord) {
	tr.add("l2", recordName(rec), "policy does not resolve the address: switched by destination MAC %s in VSID %d (L2Only records)", rec.MACAddress, vsid)
}

// decided notes the egress decision the switch exports for a kernel fast
// path to execute, or that it cannot.
func (tr *tracer) decided(e Decision, ok bool, p *PortConfig) {
	if !ok {
		tr.add("slow-path", "port "+p.Name, "the port's CAs leave from different PAs: every packet of the flow takes the slow path")
		return
	}
	tr.fast = &e
}

func (tr *tracer) routed(gw packet.MAC, ttl uint8) {
	tr.add("routed", "", "routed between subnets: TTL %d -> %d, source MAC becomes the gateway's %s", ttl, ttl-1, gw)
}

func (tr *tracer) local(p *PortConfig) {
	tr.add("deliver", "port "+p.Name, "delivered locally to port %s (index %d), no encapsulation", p.Name, p.Index)
}

func (tr *tracer) encap(r *Result, vsid policy.VSID) {
	key := "GRE key"
	if r.Encap == policy.EncapVXLAN {
		key = "VNI"
	}
	tr.dstVSID, tr.srcPA, tr.dstPA = vsid, r.Src, r.Dst
	tr.add("encapsulate", fmt.Sprintf("virtual subnet %d", vsid), "%s, %s %d, FlowID %d", strings.ToUpper(r.Encap.String()), key, vsid, r.FlowID)
	tr.add("outer", "provider address "+r.Src.String(), "outer source PA %s -> destination PA %s", r.Src, r.Dst)
}

func (tr *tracer) decap(e string, vsid policy.VSID) {
	tr.vsid = vsid
	tr.add("decapsulate", "", "%s from PA %s to PA %s, VSID %d", e, tr.srcPA, tr.dstPA, vsid)
}

func (tr *tracer) validated(how string, vsid policy.VSID, srcCA netip.Addr, rec *policy.LookupRecord) {
	obj := ""
	if rec != nil {
		obj = recordName(rec)
	}
	tr.add("validate", obj, "inner source %s in VSID %d from PA %s: %s", srcCA, vsid, tr.srcPA, how)
}

// learnt notes a CA learned from the VM of port p: anew, or known.
func (tr *tracer) learnt(p *PortConfig, ca netip.Addr, anew bool) {
	obj := "L2Only record of MAC " + p.MAC.String()
	if anew {
		tr.add("learn", obj, "%s is new from the VM with an L2Only record: the host adds a Dynamic lookup record for it in VSID %d and raises the customer-address-added notification", ca, p.VSID)
		return
	}
	tr.add("learn", obj, "%s was learned from this VM before", ca)
}

// rewritten notes the IP Rewrite of a packet from the Nat VM of src.
func (tr *tracer) rewritten(src *policy.LookupRecord, dstPA netip.Addr, vsid policy.VSID) {
	tr.dstVSID, tr.srcPA, tr.dstPA = vsid, src.ProviderAddress, dstPA
	tr.add("rewrite", recordName(src), "IP Rewrite (both records have Rule Nat): source CA %s -> PA %s, destination CA %s -> PA %s, checksums fixed, nothing added",
		tr.src, src.ProviderAddress, tr.dst, dstPA)
	tr.add("outer", "provider address "+src.ProviderAddress.String(), "on the wire as plain IP from PA %s to PA %s", src.ProviderAddress, dstPA)
}

// rewriteArrival notes an IP Rewrite packet from srcPA to dstPA.
func (tr *tracer) rewriteArrival(srcPA, dstPA netip.Addr) {
	tr.srcPA, tr.dstPA = srcPA, dstPA
	tr.add("rewrite-arrival", "provider address "+dstPA.String(), "plain IP from PA %s to PA %s, a PA of a Nat record: an IP Rewrite packet", srcPA, dstPA)
}

// rewritePeers notes the Nat records of an IP Rewrite packet's PAs: dst's,
// and src's if found.
func (tr *tracer) rewritePeers(dst, src *policy.LookupRecord, found bool) {
	tr.vsid, tr.dst, tr.dstMAC = dst.VirtualSubnetID, dst.CustomerAddress, dst.MACAddress
	tr.add("lookup", recordName(dst), "destination PA %s is the Nat record of %s in VSID %d (MAC %s%s)", tr.dstPA, dst.CustomerAddress, dst.VirtualSubnetID, dst.MACAddress, vmName(dst))
	if found {
		tr.src, tr.srcMAC = src.CustomerAddress, src.MACAddress
		tr.add("validate", recordName(src), "source PA %s is the Nat record of %s in VSID %d", tr.srcPA, src.CustomerAddress, src.VirtualSubnetID)
	}
}

// rewrittenBack notes the delivery of an IP Rewrite packet, its PAs mapped
// back to the CAs of src and dst.
func (tr *tracer) rewrittenBack(p *PortConfig, src, dst *policy.LookupRecord) {
	tr.add("rewrite", "", "PAs %s -> %s mapped back to CAs %s -> %s", tr.srcPA, tr.dstPA, src.CustomerAddress, dst.CustomerAddress)
	tr.add("deliver", "port "+p.Name, "delivered to port %s (index %d), MAC %s owns %s", p.Name, p.Index, p.MAC, dst.CustomerAddress)
}

func (tr *tracer) delivered(p *PortConfig, e IngressDecision) {
	tr.ingress = &e
	tr.add("deliver", "port "+p.Name, "delivered to port %s (index %d), MAC %s owns %s", p.Name, p.Index, p.MAC, tr.dst)
}

func (tr *tracer) forward(newPA netip.Addr, mac packet.MAC, vsid policy.VSID) {
	tr.add("migrated", fmt.Sprintf("moved VM %s in VSID %d", mac, vsid),
		"the VM with MAC %s migrated away: forwarded unchanged to its new PA %s, and the sender %s is redirected", mac, newPA, tr.srcPA)
}

func (tr *tracer) answer(proto string, vsid policy.VSID, target netip.Addr, mac packet.MAC) {
	tr.add(proto, "", "%s for %s answered by the switch from policy in VSID %d: %s", strings.ToUpper(proto), target, vsid, mac)
}

func (tr *tracer) note(step, format string, args ...any) { tr.add(step, "", format, args...) }

// drop notes the drop for r with the object to fix.
func (tr *tracer) drop(r Reason) {
	obj, fix := tr.fix(r)
	tr.steps = append(tr.steps, Step{Step: "drop", Reason: r.String(), Object: obj, Fix: fix, Detail: "dropped: " + r.String()})
}

func addrList(as []netip.Addr) string {
	ss := make([]string, len(as))
	for i, a := range as {
		ss[i] = a.String()
	}
	return "[" + strings.Join(ss, " ") + "]"
}

func recordName(rec *policy.LookupRecord) string {
	return fmt.Sprintf("lookup record %s in VSID %d", rec.CustomerAddress, rec.VirtualSubnetID)
}

func routeName(rt *policy.CustomerRoute) string {
	return fmt.Sprintf("customer route %s in routing domain %s", rt.DestinationPrefix, rt.RoutingDomainID)
}

func vmName(rec *policy.LookupRecord) string {
	if rec.VMName != "" {
		return ", VM " + rec.VMName
	}
	return ""
}

// rates is a copy of the rate buckets of the real switch's port i.
func (tr *tracer) rates(i int) *PortCounters {
	pc := &PortCounters{}
	if ps := *tr.live.ports.Load(); i >= 0 && i < len(ps) && ps[i] != nil {
		pc.misses.tat.Store(ps[i].misses.tat.Load())
		pc.floods.tat.Store(ps[i].floods.tat.Load())
	}
	return pc
}
