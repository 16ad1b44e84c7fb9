package lab

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"text/tabwriter"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// IP Rewrite in the lab: a subnet with RewriteV4 and RewriteV6 (Green's)
// gives each CA of its VMs a PA of its own from those pools. With the
// policy server, the server allocates them and each host's agent configures
// its VMs' PAs; a Static lab numbers them itself (the n-th VM of the
// subnet gets the pools' addresses 10+n) and provisions them like the
// hosts' PAs.

// checkRewrite is Validate's rule for the pools of a Nat subnet.
func (t Topology) checkRewrite(sn Subnet) error {
	if !sn.RewriteV4.IsValid() && !sn.RewriteV6.IsValid() {
		return nil
	}
	if !sn.RewriteV4.IsValid() || !sn.RewriteV4.Addr().Is4() || !sn.RewriteV6.IsValid() || !sn.RewriteV6.Addr().Is6() || sn.RewriteV4.Masked() != sn.RewriteV4 || sn.RewriteV6.Masked() != sn.RewriteV6 {
		return fmt.Errorf("subnet %d RewriteV4 %v and RewriteV6 %v must both be pools without host bits, IPv4 and IPv6: IP Rewrite needs a PA of each CA's family", sn.VSID, sn.RewriteV4, sn.RewriteV6)
	}
	for _, h := range t.Hosts {
		if sn.RewriteV4.Contains(h.PA.Addr()) || sn.RewriteV6.Contains(h.PA.Addr()) {
			return fmt.Errorf("subnet %d IP Rewrite pools %v and %v hold host %s's PA %v: give pools no host's PA is in", sn.VSID, sn.RewriteV4, sn.RewriteV6, h.Name, h.PA.Addr())
		}
	}
	return nil
}

// staticRewritePAs numbers the PAs of a Static lab's Nat VMs: VM name to
// its IPv4 and IPv6 PA, with their pools' prefix lengths.
func (t Topology) staticRewritePAs() map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	n := map[policy.VSID]int{}
	for _, v := range t.VMs {
		sn, _ := t.subnet(v.Tenant, v.VSID)
		if !sn.Nat() {
			continue
		}
		out[v.Name] = []netip.Prefix{nthAddr(sn.RewriteV4, 10+n[v.VSID]), nthAddr(sn.RewriteV6, 10+n[v.VSID])}
		n[v.VSID]++
	}
	return out
}

// nthAddr is the address n after p's first, with p's length.
func nthAddr(p netip.Prefix, n int) netip.Prefix {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return netip.PrefixFrom(a, p.Bits())
}

// RewritePAs returns the PAs of every VM of a Nat subnet (IPv4, then IPv6,
// with their pools' lengths): the server's allocation, or a Static lab's.
func (l *Lab) RewritePAs(ctx context.Context) (map[string][]netip.Prefix, error) {
	t := l.Topology
	if t.Static {
		return t.staticRewritePAs(), nil
	}
	out := map[string][]netip.Prefix{}
	for _, v := range t.VMs {
		if sn, _ := t.subnet(v.Tenant, v.VSID); !sn.Nat() {
			continue
		}
		vm, err := l.Server().VM(ctx, v.Name)
		if err != nil {
			return nil, fmt.Errorf("policy server: VM %s: %w", v.Name, err)
		}
		out[v.Name] = vm.RewriteAddresses
	}
	return out, nil
}

// hostPAs is every PA each host must have: its own and its Nat VMs'.
func (l *Lab) hostPAs(ctx context.Context) (map[string][]netip.Prefix, error) {
	rw, err := l.RewritePAs(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]netip.Prefix{}
	for _, h := range l.Topology.Hosts {
		out[h.Name] = []netip.Prefix{h.PA}
	}
	for _, v := range l.Topology.VMs {
		out[v.Host] = append(out[v.Host], rw[v.Name]...)
	}
	return out, nil
}

// RewriteFlow is the plain IP the capture saw from one Nat VM's PA to
// another's.
type RewriteFlow struct {
	From, To      string // VM names
	FromCA, ToCA  netip.Addr
	FromPA, ToPA  netip.Addr
	Proto         uint8
	Frames, Bytes int
}

// RewriteFlows sums the plain frames between the PAs of pas (RewritePAs)
// per VM pair, family and protocol, busiest first.
func (t Topology) RewriteFlows(plain []Frame, pas map[string][]netip.Prefix) []RewriteFlow {
	type owner struct {
		vm string
		ca netip.Addr
	}
	byPA := map[netip.Addr]owner{}
	for _, v := range t.VMs {
		for i, p := range pas[v.Name] {
			byPA[p.Addr()] = owner{v.Name, v.CAs()[i]}
		}
	}
	type key struct {
		src, dst netip.Addr
		proto    uint8
	}
	idx := map[key]*RewriteFlow{}
	var out []*RewriteFlow
	for _, f := range plain {
		s, okS := byPA[f.OuterSrc]
		d, okD := byPA[f.OuterDst]
		if !okS || !okD {
			continue
		}
		k := key{f.OuterSrc, f.OuterDst, f.InnerProto}
		fl := idx[k]
		if fl == nil {
			fl = &RewriteFlow{From: s.vm, To: d.vm, FromCA: s.ca, ToCA: d.ca, FromPA: f.OuterSrc, ToPA: f.OuterDst, Proto: f.InnerProto}
			idx[k] = fl
			out = append(out, fl)
		}
		fl.Frames++
		fl.Bytes += f.Len
	}
	slices.SortStableFunc(out, func(a, b *RewriteFlow) int { return cmp.Compare(b.Bytes, a.Bytes) })
	flows := make([]RewriteFlow, len(out))
	for i, fl := range out {
		flows[i] = *fl
	}
	return flows
}

// CheckRewrite verifies that every TCP transfer of xs to a Nat VM crossed
// the underlay as plain IP between the two VMs' PAs (at least minBytes of
// frames one way), and that no NVGRE frame of a Nat subnet carried TCP
// between its CAs. It returns one line per problem.
func (t Topology) CheckRewrite(frames, plain []Frame, pas map[string][]netip.Prefix, xs []Transfer, minBytes int) []string {
	var bad []string
	flows := t.RewriteFlows(plain, pas)
	checked := 0
	for _, x := range xs {
		if pas[x.From] == nil || pas[x.To] == nil {
			continue
		}
		checked++
		i := slices.IndexFunc(flows, func(f RewriteFlow) bool {
			return f.From == x.From && f.ToCA == x.Addr && f.Proto == packet.ProtoTCP
		})
		switch {
		case i < 0:
			bad = append(bad, fmt.Sprintf("%s -> %s (%v): no plain TCP between their PAs on the underlay", x.From, x.To, x.Addr))
		case flows[i].Bytes < minBytes:
			bad = append(bad, fmt.Sprintf("%s -> %s (%v): %d bytes of plain TCP between PAs %v and %v, want at least %d", x.From, x.To, x.Addr, flows[i].Bytes, flows[i].FromPA, flows[i].ToPA, minBytes))
		}
	}
	if checked == 0 {
		bad = append(bad, "no TCP transfer between two IP Rewrite VMs to check")
	}
	nat := map[uint32]bool{}
	for _, tn := range t.Tenants {
		for _, sn := range tn.Subnets {
			if sn.Nat() {
				nat[uint32(sn.VSID)] = true
			}
		}
	}
	tunnelled := 0
	for _, f := range frames {
		if nat[f.VSID] && f.InnerProto == packet.ProtoTCP {
			tunnelled++
		}
	}
	if tunnelled > 0 {
		bad = append(bad, fmt.Sprintf("%d NVGRE frames carried TCP of an IP Rewrite subnet: want it rewritten, not encapsulated", tunnelled))
	}
	return bad
}

// PrintRewriteFlows writes the flows as a table.
func PrintRewriteFlows(w io.Writer, flows []RewriteFlow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SRC PA (ON THE WIRE)\tDST PA (ON THE WIRE)\tPROTO\tSRC VM/CA\tDST VM/CA\tFRAMES\tBYTES")
	for _, f := range flows {
		fmt.Fprintf(tw, "%v\t%v\t%d\t%s %v\t%s %v\t%d\t%d\n", f.FromPA, f.ToPA, f.Proto, f.From, f.FromCA, f.To, f.ToCA, f.Frames, f.Bytes)
	}
	tw.Flush()
}

func (t Topology) hasRewrite() bool {
	for _, tn := range t.Tenants {
		for _, sn := range tn.Subnets {
			if sn.Nat() {
				return true
			}
		}
	}
	return false
}

// RewriteSummary is one line per tenant with an IP Rewrite subnet: how its
// VMs fared in the matrix: a probe to a CA the tenant has must be answered
// by the tenant's own VM (never by another tenant's with the same CA), one
// to a CA it lacks by nobody.
func (t Topology) RewriteSummary(checks []Check) []string {
	var lines []string
	for _, tn := range t.Tenants {
		if !slices.ContainsFunc(tn.Subnets, Subnet.Nat) {
			continue
		}
		var reach, reachOK, iso, isoOK int
		for _, c := range checks {
			src, _ := t.VM(c.From)
			if c.Self || src.Tenant != tn.Name {
				continue
			}
			if c.Expect != "" {
				reach++
				if c.OK() {
					reachOK++
				}
			} else {
				iso++
				if c.OK() {
					isoOK++
				}
			}
		}
		res := "ok"
		if reachOK != reach || isoOK != iso {
			res = "FAIL"
		}
		lines = append(lines, fmt.Sprintf("%s (IP Rewrite): %d/%d probes answered by its own VM (also to CAs other tenants' VMs have too), %d/%d probes to CAs it lacks unanswered: %s",
			tn.Name, reachOK, reach, isoOK, iso, res))
	}
	return lines
}

// demoRewrite prints the plain IP between the PAs of IP Rewrite VMs seen
// during the demo and checks that their transfers crossed that way.
func (l *Lab) demoRewrite(ctx context.Context, w io.Writer, frames, plain []Frame, xs []Transfer) []string {
	pas, err := l.RewritePAs(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	flows := l.Topology.RewriteFlows(plain, pas)
	fmt.Fprintf(w, "\n== IP Rewrite on the underlay: %d plain IP frames between the PAs of IP Rewrite VMs (no GRE, no VXLAN; a PA per CA) ==\n", sumFrames(flows))
	PrintRewriteFlows(w, flows)
	bad := l.Topology.CheckRewrite(frames, plain, pas, xs, DemoBytes)
	for _, b := range bad {
		fmt.Fprintln(w, "FAIL:", b)
	}
	if len(bad) == 0 {
		fmt.Fprintln(w, "IP Rewrite capture: every transfer between IP Rewrite VMs crossed as plain IP between their PAs, none in NVGRE: ok")
		return nil
	}
	return []string{fmt.Sprintf("%d problems in the IP Rewrite capture", len(bad))}
}

func sumFrames(flows []RewriteFlow) int {
	n := 0
	for _, f := range flows {
		n += f.Frames
	}
	return n
}
