package vswitch

import (
	"net/netip"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// Decision is a forwarding decision the switch made for the packets of a
// port to one destination CA, exported for a kernel fast path to execute
// until the generation changes (any change of policy or ports). Per-packet
// checks (source MAC and CA, TTL, length) stay the executor's.
type Decision struct {
	Port int        // the source port's index
	Dst  netip.Addr // the destination CA
	Gen  uint64     // the switch's generation the decision was made in
	// Local is the index of the destination's local port, or -1 to
	// encapsulate towards DstPA.
	Local int
	MAC   packet.MAC // the destination VM's MAC
	// Routed: between subnets, the source MAC becomes SrcMAC (the
	// gateway's, see gatewayMAC) and the TTL or hop limit drops by one.
	Routed bool
	SrcMAC packet.MAC
	Encap  policy.Encapsulation
	// Rewrite: IP Rewrite instead of Encap, from the port's one CA (whose
	// PA is SrcPA) to the destination CA (at DstPA): the addresses become
	// the PAs, with no header added. Packets that rewrite would encapsulate
	// (tunnelLike) need the slow path.
	Rewrite bool
	VSID    policy.VSID // the destination's virtual subnet
	SrcPA   netip.Addr  // this host's PA of DstPA's family
	DstPA   netip.Addr
	// MaxLen is the longest frame that fits the underlay once encapsulated
	// (or rewritten); a longer one needs the slow path's ICMP error.
	MaxLen int
}

// IngressDecision is a delivery the switch validated for a packet from the
// underlay: the same outer source PA, VSID and inner addresses go to the
// same local port until the generation changes.
type IngressDecision struct {
	VSID           policy.VSID
	SrcPA          netip.Addr
	SrcCA, DstCA   netip.Addr
	SrcMAC, DstMAC packet.MAC
	Port           int
	Gen            uint64
}

// RewriteIngressDecision is a delivery the switch validated for an IP
// Rewrite packet (FromRewritten): packets from SrcPA to DstPA get the CAs
// and MACs back and go to the local port, until the generation changes.
type RewriteIngressDecision struct {
	SrcPA, DstPA   netip.Addr
	SrcCA, DstCA   netip.Addr
	SrcMAC, DstMAC packet.MAC
	Port           int
	Gen            uint64
}

// RewriteIngress is the RewriteIngressDecision of r, a verdict of
// FromRewritten, made in generation gen (read before the call); ok is false
// for a verdict that delivers nothing.
func RewriteIngress(r *Result, gen uint64) (d RewriteIngressDecision, ok bool) {
	if r.Action != ToPort || !r.Validated || !r.Src.IsValid() {
		return d, false
	}
	eth, err := packet.ParseEthernet(r.Data)
	if err != nil {
		return d, false
	}
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			return d, false
		}
		d.SrcCA, d.DstCA = ip.Src(), ip.Dst()
	case packet.EtherTypeIPv6:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil {
			return d, false
		}
		d.SrcCA, d.DstCA = ip.Src(), ip.Dst()
	default:
		return d, false
	}
	d.SrcPA, d.DstPA, d.SrcMAC, d.DstMAC, d.Port, d.Gen = r.Src, r.Dst, eth.Src(), eth.Dst(), r.Port, gen
	return d, true
}

// ForwardedSource is a source CA outside the subnet of port Port, its
// subnet's gateway, that the port was allowed to send from in generation
// Gen (forwardsFor): a kernel fast path may let the port's packets from it
// through until the generation changes.
type ForwardedSource struct {
	Port int
	Src  netip.Addr
	Gen  uint64
}

// RecordDecisions makes f keep every decision it caches until Decided takes
// them, and every forwarded source until Forwarded does, for a fast path to
// install.
func (f *Flows) RecordDecisions() { f.record = true }

// Decided returns the decisions cached since the last call, in a slice
// reused by the next call.
func (f *Flows) Decided() []Decision {
	d := f.decided
	f.decided = f.decided[:0]
	return d
}

// Forwarded returns the forwarded sources allowed since the last call, in
// a slice reused by the next call; a source comes once per packet the slow
// path switched from it.
func (f *Flows) Forwarded() []ForwardedSource {
	fs := f.forwarded
	f.forwarded = f.forwarded[:0]
	return fs
}

func (f *Flows) recordForwarded(p *PortConfig, src netip.Addr) {
	if f != nil && f.record {
		f.forwarded = append(f.forwarded, ForwardedSource{Port: p.Index, Src: src, Gen: f.gen})
	}
}

// recordDecision notes d, with gw the source MAC of its routed frames, just
// cached for key's port and dst.
func (s *Switch) recordDecision(f *Flows, p *PortConfig, dst netip.Addr, d *decision, gw packet.MAC, t *policy.Table) {
	if f == nil || !f.record {
		return
	}
	if e, ok := s.export(p, dst, d, gw, t, f.gen); ok {
		f.decided = append(f.decided, e)
	}
}

// export is the Decision for d of generation gen; ok is false if a kernel
// cannot execute it (see portSourcePA).
func (s *Switch) export(p *PortConfig, dst netip.Addr, d *decision, gw packet.MAC, t *policy.Table, gen uint64) (e Decision, ok bool) {
	e = Decision{Port: p.Index, Dst: dst, Gen: gen, Local: int(d.local), MAC: d.mac, Routed: d.routed, VSID: d.dstVSID}
	if d.routed {
		e.SrcMAC = gw
	}
	if d.local < 0 {
		e.DstPA = d.pa()
		pa, ok := portSourcePA(t, p, dst, e.DstPA)
		if !ok {
			return e, false
		}
		e.Encap, e.SrcPA = d.encap, pa
		if d.encap == rewriteEncap {
			rewrite, ok := portRewrites(t, p, dst, pa)
			if !ok {
				return e, false
			}
			e.Encap, e.Rewrite = t.Encapsulation(d.dstVSID), rewrite
		}
		e.MaxLen = s.cfg.UnderlayMTU - Overhead(e.Encap, e.DstPA.Is6()) + packet.EthernetHeaderLen
		if e.Rewrite {
			e.MaxLen = s.cfg.UnderlayMTU + packet.EthernetHeaderLen
		}
	}
	return e, true
}

// portSourcePA is the source PA of every packet from port p to CA dst at
// dstPA, for a decision that does not know which of the port's CAs sends
// (one of dst's family: the packet's); ok is false when they leave from
// different PAs (the slow path picks per packet).
func portSourcePA(t *policy.Table, p *PortConfig, dst, dstPA netip.Addr) (pa netip.Addr, ok bool) {
	n := 0
	for _, ca := range p.CAs {
		if ca.Unmap().Is4() != dst.Unmap().Is4() {
			continue
		}
		a, found := sourcePA(t, p.VSID, ca, dstPA)
		if !found || n > 0 && a != pa {
			return netip.Addr{}, false
		}
		pa = a
		n++
	}
	if n == 0 {
		return t.LocalPA(dstPA.Is6())
	}
	return pa, true
}

// portRewrites says how every packet of port p to a VM with Rule Nat at CA
// dst leaves from srcPA (portSourcePA): rewritten if p's CAs of dst's
// family have Rule Nat, encapsulated if they have Rule Encap; ok is false
// for a port with both, or without such CAs, whose packets the slow path
// decides one by one. The CAs' PAs are all srcPA, so a port with Nat CAs
// has one of each family.
func portRewrites(t *policy.Table, p *PortConfig, dst, srcPA netip.Addr) (rewrite, ok bool) {
	n := 0
	for _, ca := range p.CAs {
		if ca.Unmap().Is4() != dst.Unmap().Is4() {
			continue
		}
		rec, found := t.LookupCA(p.VSID, ca)
		nat := found && rec.Rule == policy.TranslationMethodNat && rec.ProviderAddress == srcPA
		if n > 0 && nat != rewrite {
			return false, false
		}
		rewrite = nat
		n++
	}
	return rewrite, n > 0
}

// Generation is the switch's generation: it changes after every change of
// policy or ports, which makes every decision of an older one stale.
func (s *Switch) Generation() uint64 { return s.gen.Load() }
