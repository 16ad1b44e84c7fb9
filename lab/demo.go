package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/packet"
)

// Check is one cell of the reachability matrix: a UDP probe from one VM to a
// CA of another, and which VM answered.
type Check struct {
	From, To string
	Addr     netip.Addr // To's CA
	Kind     string     // same subnet, routed, isolated or self
	Expect   string     // the VM that must answer; "" when nothing may
	Got      string     // the VM that answered; "" when nothing did
	Self     bool       // Addr is From's own CA too: not probed
	RTT      time.Duration
}

// OK reports whether the observed responder is the expected one.
func (c Check) OK() bool { return c.Self || c.Got == c.Expect }

// ProbeUDP sends one UDP probe at a time from VM from to addr, up to attempts
// times, and returns the first reply.
func (l *Lab) ProbeUDP(ctx context.Context, from string, addr netip.Addr, source netip.Addr, attempts int, timeout time.Duration) (probe.Reply, bool, error) {
	as, err := l.probeAll(ctx, from, []netip.Addr{addr}, source, attempts, timeout)
	if err != nil || as[0].Reply == nil {
		return probe.Reply{}, false, err
	}
	return *as[0].Reply, true, nil
}

// probeAll probes every address from VM from at once, each with up to
// attempts probes until one is answered. A QEMU VM probes with its guest's
// wnv-probe, one console command for all.
func (l *Lab) probeAll(ctx context.Context, from string, addrs []netip.Addr, source netip.Addr, attempts int, timeout time.Duration) ([]probe.Answer, error) {
	if v, ok := l.Topology.VM(from); ok && v.QEMU {
		return l.guestProbeUDP(ctx, from, addrs, source, attempts, timeout)
	}
	answers := make([]probe.Answer, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		answers[i].Addr = a
		wg.Go(func() {
			errs[i] = InNamespace(l.Topology.Namespace(from), func() error {
				for range attempts {
					rs, err := probe.UDP(ctx, netip.AddrPortFrom(a, probe.Port), probe.UDPOptions{Count: 1, Timeout: timeout, Source: source})
					if err != nil {
						return err
					}
					if len(rs) > 0 {
						answers[i].Reply = &rs[0]
						return nil
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	return answers, errors.Join(errs...)
}

// ProbeTCP streams n checked bytes from VM from to the responder at addr.
func (l *Lab) ProbeTCP(ctx context.Context, from string, addr netip.Addr, n int64) (probe.Transfer, error) {
	if v, ok := l.Topology.VM(from); ok && v.QEMU {
		return l.guestProbeTCP(ctx, from, addr, n)
	}
	var tr probe.Transfer
	err := InNamespace(l.Topology.Namespace(from), func() error {
		var err error
		tr, err = probe.TCP(ctx, netip.AddrPortFrom(addr, probe.Port), n, netip.Addr{}, 60*time.Second)
		return err
	})
	return tr, err
}

// Matrix probes every CA of every other VM from every VM, in parallel.
func (l *Lab) Matrix(ctx context.Context) ([]Check, error) {
	t := l.Topology
	var checks []Check
	bySource := map[string][]int{}
	for _, src := range t.VMs {
		for _, dst := range t.VMs {
			if src.Name == dst.Name {
				continue
			}
			for _, a := range dst.CAs() {
				exp, self := t.Expect(src, a)
				if !self {
					bySource[src.Name] = append(bySource[src.Name], len(checks))
				}
				checks = append(checks, Check{From: src.Name, To: dst.Name, Addr: a, Kind: t.kind(src, dst, self), Expect: exp, Self: self})
			}
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for src, idx := range bySource {
		wg.Go(func() {
			addrs := make([]netip.Addr, len(idx))
			for j, i := range idx {
				addrs[j] = checks[i].Addr
			}
			answers, err := l.probeAll(ctx, src, addrs, netip.Addr{}, 3, 700*time.Millisecond)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			for j, i := range idx {
				if r := answers[j].Reply; r != nil {
					checks[i].Got, checks[i].RTT = r.Responder, r.RTT
				}
			}
		})
	}
	wg.Wait()
	return checks, errors.Join(errs...)
}

func (t Topology) kind(src, dst VM, self bool) string {
	where := "across hosts"
	if src.Host == dst.Host {
		where = "same host"
	}
	switch {
	case self:
		return "self (own CA)"
	case src.Tenant != dst.Tenant && t.owns(src.Tenant, dst):
		return "isolated: " + src.Tenant + "'s own VM has this CA"
	case src.Tenant != dst.Tenant:
		return "isolated: no such CA in " + src.Tenant
	case src.VSID == dst.VSID:
		return "same subnet, " + where
	default:
		return "routed, " + where
	}
}

// owns reports whether a VM of tenant has one of dst's CAs.
func (t Topology) owns(tenant string, dst VM) bool {
	for _, v := range t.VMs {
		if v.Tenant == tenant && (v.V4 == dst.V4 || v.V6 == dst.V6) {
			return true
		}
	}
	return false
}

// PrintMatrix writes the matrix as a table and returns how many checks failed.
func PrintMatrix(w io.Writer, checks []Check) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tADDRESS\tKIND\tEXPECT\tANSWERED BY\tRTT\tRESULT")
	failed := 0
	for _, c := range checks {
		res, got, rtt := "ok", orNone(c.Got), "-"
		switch {
		case c.Self:
			res, got = "skipped", "-"
		case !c.OK():
			res = "FAIL"
			failed++
		}
		if c.Got != "" {
			rtt = c.RTT.Round(10 * time.Microsecond).String()
		}
		exp := orNone(c.Expect)
		if c.Self {
			exp = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\n", c.From, c.To, c.Addr, c.Kind, exp, got, rtt, res)
	}
	tw.Flush()
	return failed
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Transfer is one TCP stream of the demo.
type Transfer struct {
	From, To string
	Addr     netip.Addr
	Kind     string
	Result   probe.Transfer
	Err      error
}

// OK reports whether the stream arrived in full at the intended VM.
func (x Transfer) OK() bool { return x.Err == nil && x.Result.Responder == x.To }

// transferPairs picks, per tenant, a same-subnet pair and a routed pair on
// different hosts, so bulk data crosses the underlay both ways of forwarding,
// and for a QEMU VM a pair to it and one from it with every VM of its tenant
// on another host.
func (t Topology) transferPairs() [][2]VM {
	var pairs [][2]VM
	has := func(a, b VM) bool {
		return slices.ContainsFunc(pairs, func(p [2]VM) bool { return p[0].Name == a.Name && p[1].Name == b.Name })
	}
	for _, tn := range t.Tenants {
		var same, routed bool
		for _, a := range t.VMs {
			for _, b := range t.VMs {
				if a.Tenant != tn.Name || b.Tenant != tn.Name || a.Host == b.Host {
					continue
				}
				if a.VSID == b.VSID && !same {
					same = true
					pairs = append(pairs, [2]VM{a, b})
				}
				if a.VSID != b.VSID && !routed {
					routed = true
					pairs = append(pairs, [2]VM{a, b})
				}
			}
		}
	}
	for _, q := range t.QEMUVMs() {
		for _, v := range t.VMs {
			if v.Tenant != q.Tenant || v.Host == q.Host {
				continue
			}
			if !has(v, q) {
				pairs = append(pairs, [2]VM{v, q})
			}
			if !has(q, v) {
				pairs = append(pairs, [2]VM{q, v})
			}
		}
	}
	return pairs
}

// Transfers moves n checked bytes over TCP for every transfer pair, IPv4 and
// IPv6.
func (l *Lab) Transfers(ctx context.Context, n int64) []Transfer {
	var xs []Transfer
	for _, p := range l.Topology.transferPairs() {
		for _, a := range p[1].CAs() {
			x := Transfer{From: p[0].Name, To: p[1].Name, Addr: a, Kind: l.Topology.kind(p[0], p[1], false)}
			x.Result, x.Err = l.ProbeTCP(ctx, x.From, a, n)
			xs = append(xs, x)
		}
	}
	return xs
}

// PrintTransfers writes the transfers as a table and returns how many failed.
func PrintTransfers(w io.Writer, xs []Transfer) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tADDRESS\tKIND\tBYTES\tRECEIVED BY\tTIME\tMBIT/S\tRESULT")
	failed := 0
	for _, x := range xs {
		if !x.OK() {
			failed++
			reason := fmt.Sprintf("FAIL: received by %s", orNone(x.Result.Responder))
			if x.Err != nil {
				reason = "FAIL: " + x.Err.Error()
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t-\t-\t-\t-\t%s\n", x.From, x.To, x.Addr, x.Kind, reason)
			continue
		}
		r := x.Result
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%s\t%v\t%.0f\tok\n", x.From, x.To, x.Addr, x.Kind, r.Bytes, r.Responder,
			r.Elapsed.Round(time.Millisecond), r.Mbps())
	}
	tw.Flush()
	return failed
}

// CheckFrames verifies captured underlay traffic against the topology: some
// NVGRE was seen, none was malformed, and every frame runs between two PAs
// of the lab with protocol 0x6558 and a VSID of the lab. It returns one line
// per problem.
func (t Topology) CheckFrames(frames []Frame, malformed []error) []string {
	var bad []string
	if len(frames) == 0 {
		bad = append(bad, "no NVGRE frames seen on the underlay")
	}
	for _, err := range malformed {
		bad = append(bad, err.Error())
	}
	pas := map[netip.Addr]bool{}
	for _, h := range t.Hosts {
		pas[h.PA.Addr()] = true
	}
	var pools []netip.Prefix
	for _, tn := range t.Tenants {
		for _, sn := range tn.Subnets {
			if sn.Nat() {
				pools = append(pools, sn.RewriteV4, sn.RewriteV6)
			}
		}
	}
	// What IP Rewrite VMs exchange with others is encapsulated to and from
	// their own PAs.
	isPA := func(a netip.Addr) bool {
		return pas[a] || slices.ContainsFunc(pools, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	vsids := map[uint32]bool{}
	for _, tn := range t.Tenants {
		for _, sn := range tn.Subnets {
			vsids[uint32(sn.VSID)] = true
		}
	}
	for _, f := range frames {
		switch {
		case !isPA(f.OuterSrc) || !isPA(f.OuterDst):
			bad = append(bad, fmt.Sprintf("frame between %v and %v: outer addresses must be lab PAs", f.OuterSrc, f.OuterDst))
		case f.Protocol != packet.EtherTypeTEB:
			bad = append(bad, fmt.Sprintf("frame %v: GRE protocol %#04x, want 0x6558", f, f.Protocol))
		case !vsids[f.VSID]:
			bad = append(bad, fmt.Sprintf("frame %v: the key's VSID is not a lab VSID", f))
		}
		if len(bad) > 10 {
			break
		}
	}
	return bad
}

// PrintFrames writes up to max distinct flows of the capture with their frame
// counts, busiest first.
func PrintFrames(w io.Writer, frames []Frame, max int) {
	type flow struct {
		f Frame
		n int
	}
	idx := map[[5]string]*flow{}
	var flows []*flow
	for _, f := range frames {
		k := [5]string{f.OuterSrc.String(), f.OuterDst.String(), fmt.Sprint(f.Key), f.InnerSrc.String(), f.InnerDst.String()}
		if fl, ok := idx[k]; ok {
			fl.n++
			continue
		}
		fl := &flow{f: f, n: 1}
		idx[k] = fl
		flows = append(flows, fl)
	}
	slices.SortStableFunc(flows, func(a, b *flow) int { return cmp.Compare(b.n, a.n) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTER SRC PA\tOUTER DST PA\tGRE PROTO\tKEY\tVSID\tFLOWID\tINNER SRC CA\tINNER DST CA\tFRAMES")
	for i, fl := range flows {
		if i == max {
			break
		}
		f := fl.f
		src, dst := f.InnerSrc.String(), f.InnerDst.String()
		if !f.InnerSrc.IsValid() {
			src, dst = f.InnerSrcMAC.String(), f.InnerDstMAC.String()
		}
		fmt.Fprintf(tw, "%v\t%v\t%#04x\t%#08x\t%d\t%d\t%s\t%s\t%d\n", f.OuterSrc, f.OuterDst, f.Protocol, f.Key, f.VSID, f.FlowID, src, dst, fl.n)
	}
	tw.Flush()
}

// DemoBytes is how much each demo TCP transfer moves.
const DemoBytes = 4 << 20

// Demo brings the lab up if needed, then checks the reachability matrix,
// moves data over TCP, prints a sample of the NVGRE frames captured on the
// underlay bridge, live-migrates blue2 and the first QEMU VM under a 1 kHz
// probe stream (unless Static), and prints each host's counters. It fails if
// any expectation fails; unless keep, it tears the lab down at the end.
func (l *Lab) Demo(ctx context.Context, w io.Writer, keep bool) (err error) {
	if l.IsUp() {
		fmt.Fprintf(w, "lab already up in %s: reusing it\n", l.StateDir)
	} else if err := l.Up(ctx); err != nil {
		if !keep {
			l.Down()
		}
		return err
	}
	if !keep {
		defer func() {
			derr := l.Down()
			if derr == nil {
				fmt.Fprintln(w, "\nlab torn down (use --keep to leave it running)")
			} else if err == nil {
				err = derr
			}
		}()
	}
	t := l.Topology
	capt, err := StartCapture(t.Namespace("underlay"), "br0")
	if err != nil {
		return err
	}
	var failures []string
	if !t.Static {
		d, err := l.StartDashboard(ctx, DashboardAddr, "demo")
		if err != nil {
			failures = append(failures, fmt.Sprintf("dashboard: %v", err))
		} else {
			defer d.Close()
			fmt.Fprintf(w, "\ndashboard, while the demo runs: %s\n  log in with the observer token %s\n  (the lab's CA, for the browser to trust: %s)\n", d.URL, d.Token, d.CA)
		}
	}

	if !t.Static {
		fmt.Fprintf(w, "\n== Who is allowed what at the policy server %s (mutual TLS; a credential's role is its certificate's OU) ==\n", t.ServerURL())
		PrintGrants(w, l.Grants())
		fmt.Fprintf(w, "\n== Refusals: each identity tries what its role does not allow ==\n")
		checks, err := l.AccessChecks(ctx)
		if err != nil {
			failures = append(failures, fmt.Sprintf("access checks: %v", err))
		} else if n := PrintAccessChecks(w, checks); n > 0 {
			failures = append(failures, fmt.Sprintf("%d of %d access checks failed", n, len(checks)))
		}
	}

	fmt.Fprintf(w, "\n== Reachability: UDP probes to port %d from every VM to every other VM's CAs ==\n", probe.Port)
	checks, err := l.Matrix(ctx)
	if err != nil {
		capt.Stop()
		return err
	}
	if n := PrintMatrix(w, checks); n > 0 {
		failures = append(failures, fmt.Sprintf("%d of %d reachability checks failed", n, len(checks)))
	}
	for _, line := range t.RewriteSummary(checks) {
		fmt.Fprintln(w, line)
	}

	if t.Edge != nil {
		fmt.Fprintf(w, "\n== Edge gateways on %s to the %s network (a server at %v) ==\n", t.Edge.Host, ExternalName, t.Edge.Addresses[0].Addr())
		if n := l.printEdge(ctx, w); n > 0 {
			failures = append(failures, fmt.Sprintf("%d edge gateway checks failed", n))
		}
	}

	fmt.Fprintf(w, "\n== TCP transfers of %d bytes across hosts and subnets ==\n", DemoBytes)
	xs := l.Transfers(ctx, DemoBytes)
	if n := PrintTransfers(w, xs); n > 0 {
		failures = append(failures, fmt.Sprintf("%d TCP transfers failed", n))
	}

	frames, malformed := capt.Stop()
	fmt.Fprintf(w, "\n== NVGRE on the underlay (%sunderlay br0): %d frames captured, busiest flows ==\n", t.Prefix, len(frames))
	fmt.Fprintln(w, "(TCP super-frames cross the veth underlay whole, up to 64 KiB a frame; a NIC would cut them into wire packets)")
	PrintFrames(w, frames, 12)
	if bad := t.CheckFrames(frames, malformed); len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintln(w, "FAIL:", b)
		}
		failures = append(failures, fmt.Sprintf("%d problems in the underlay capture", len(bad)))
	}
	if t.hasRewrite() {
		failures = append(failures, l.demoRewrite(ctx, w, frames, capt.Plain(), xs)...)
	}

	if !t.Static {
		migrate := []string{"blue2"}
		if q := t.QEMUVMs(); len(q) > 0 && q[0].Name != "blue2" {
			migrate = append(migrate, q[0].Name)
		}
		for _, vm := range migrate {
			failures = append(failures, l.demoMigration(ctx, w, vm)...)
		}
	}

	if _, ok := t.VM("blue1"); ok {
		fmt.Fprintf(w, "\n== Drop monitor (wnvctl monitor --vm blue1): blue1 sends a frame from another MAC and one from another CA ==\n")
		failures = append(failures, l.DemoMonitor(ctx, w, "blue1", MonitorWithin)...)
	}

	if !t.Static {
		if _, ok := t.VM("blue1"); ok {
			failures = append(failures, l.demoLearning(ctx, w)...)
		}
	}

	for _, h := range t.Hosts {
		fmt.Fprintf(w, "\n== Counters of %s (PA %v) ==\n", h.Name, h.PA.Addr())
		cs, err := l.Client(h.Name).Counters(ctx)
		if err != nil {
			failures = append(failures, fmt.Sprintf("counters of %s: %v", h.Name, err))
			continue
		}
		PrintCounters(w, cs)
	}

	fmt.Fprintln(w)
	if len(failures) > 0 {
		for _, f := range failures {
			fmt.Fprintln(w, "FAIL:", f)
		}
		return fmt.Errorf("demo failed: %s", failures[0])
	}
	pass := "PASS: every expectation met (same subnet across hosts, routed across subnets, tenants isolated, IPv4 and IPv6"
	if t.hasRewrite() {
		pass += ", IP Rewrite"
	}
	if !t.Static {
		pass += ", live migration, L2Only learning"
	}
	fmt.Fprintln(w, pass+")")
	return nil
}

// DemoMaxBlackout is the blackout above which the demo's migration of a
// namespace VM fails: a generous bound (the target is 50 ms) for a loaded
// machine.
const DemoMaxBlackout = time.Second

// GuestMaxBlackout is the bound for a QEMU guest: QEMU's pause, the
// destination QEMU taking over and an emulated CPU's warm-up all stretch
// with the machine's load (a few hundred ms on an idle machine).
const GuestMaxBlackout = 3 * time.Second

// MaxBlackout is the bound the demo holds a migration of v to.
func MaxBlackout(v VM) time.Duration {
	if v.QEMU {
		return GuestMaxBlackout
	}
	return DemoMaxBlackout
}

// MigrationPlan is the demo's and the bench's migration of vm: to the first
// host that is neither its own nor the sender's, under a stream from the
// first namespace VM of its tenant on another host, so that the answers
// cross the underlay before and after.
func (t Topology) MigrationPlan(vm string) (StreamMigration, error) {
	v, ok := t.VM(vm)
	if !ok {
		return StreamMigration{}, fmt.Errorf("VM %q is not in the topology", vm)
	}
	i := slices.IndexFunc(t.VMs, func(s VM) bool { return s.Tenant == v.Tenant && s.Host != v.Host && !s.QEMU })
	if i < 0 {
		return StreamMigration{}, fmt.Errorf("no namespace VM of tenant %s on another host than %s can stream to %s", v.Tenant, v.Host, vm)
	}
	s := t.VMs[i]
	j := slices.IndexFunc(t.Hosts, func(h Host) bool { return h.Name != v.Host && h.Name != s.Host })
	if j < 0 {
		return StreamMigration{}, fmt.Errorf("no host to migrate %s to: it needs one besides %s and %s", vm, v.Host, s.Host)
	}
	return StreamMigration{VM: vm, To: t.Hosts[j].Name, Sender: s.Name}, nil
}

// demoMigration live-migrates vm as MigrationPlan says under a 1 kHz probe
// stream, prints what it measured, checks the matrix again and returns the
// failed expectations.
func (l *Lab) demoMigration(ctx context.Context, w io.Writer, vm string) []string {
	m, err := l.Topology.MigrationPlan(vm)
	if err != nil {
		return []string{fmt.Sprintf("live migration of %s: %v", vm, err)}
	}
	v, _ := l.Topology.VM(vm)
	what := m.VM
	if v.QEMU {
		what = "QEMU guest " + m.VM + " with QEMU's migration"
	}
	fmt.Fprintf(w, "\n== Live migration of %s to %s under a 1 kHz UDP probe stream from %s ==\n", what, m.To, m.Sender)
	r, err := l.MigrateUnderStream(ctx, m)
	if err != nil {
		return []string{fmt.Sprintf("live migration of %s: %v", m.VM, err)}
	}
	PrintMigration(w, r)
	var failures []string
	for _, p := range r.Problems(MaxBlackout(v)) {
		fmt.Fprintln(w, "FAIL:", p)
		failures = append(failures, "live migration: "+p)
	}
	checks, err := l.Matrix(ctx)
	if err != nil {
		return append(failures, fmt.Sprintf("matrix after the migration: %v", err))
	}
	var out strings.Builder
	n := PrintMatrix(&out, checks)
	fmt.Fprintf(w, "\nreachability matrix after the migration: %d of %d checks failed\n", n, len(checks))
	if n > 0 {
		fmt.Fprint(w, out.String())
		failures = append(failures, fmt.Sprintf("%d reachability checks failed after the migration", n))
	}
	return failures
}
