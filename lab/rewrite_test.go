package lab

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/wnv/wnv/policy"
)

func pafilter(ps []netip.Prefix) policy.ProviderAddressFilter {
	var f policy.ProviderAddressFilter
	for _, p := range ps {
		f.ProviderAddress = append(f.ProviderAddress, p.Addr())
	}
	return f
}

func sameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

// requireRewrite checks Green, the IP Rewrite tenant: its VMs reach each
// other and nothing of Red's or Blue's (the same CAs), and n bytes of TCP
// from green1 to green2, IPv4 and IPv6, cross the underlay as plain IP
// between the two VMs' own PAs (each on its VM's host), none in NVGRE.
func requireRewrite(t *testing.T, l *Lab, n int64) {
	t.Helper()
	ctx := context.Background()
	pas, err := l.RewritePAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pas["green1"]) != 2 || len(pas["green2"]) != 2 {
		t.Fatalf("IP Rewrite PAs %v, want an IPv4 and an IPv6 PA for green1 and green2", pas)
	}
	for _, name := range []string{"green1", "green2"} {
		v, _ := l.Topology.VM(name)
		have, err := l.Client(v.Host).ProviderAddresses(ctx, pafilter(pas[name]))
		if err != nil || len(have) != 2 {
			t.Fatalf("%s's PAs %v on %s: %v, %v", name, pas[name], v.Host, have, err)
		}
	}
	checks, err := l.Matrix(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := l.Topology.RewriteSummary(checks)
	if len(sum) != 1 || !strings.HasSuffix(sum[0], ": ok") || !strings.HasPrefix(sum[0], "Green (IP Rewrite): 12/12 probes answered by its own VM") {
		t.Errorf("Green's matrix: %v", sum)
	}
	capt, err := StartCapture(l.Topology.Namespace("underlay"), "br0")
	if err != nil {
		t.Fatal(err)
	}
	var xs []Transfer
	green2, _ := l.Topology.VM("green2")
	for _, a := range green2.CAs() {
		x := Transfer{From: "green1", To: "green2", Addr: a}
		x.Result, x.Err = l.ProbeTCP(ctx, "green1", a, n)
		xs = append(xs, x)
	}
	frames, malformed := capt.Stop()
	for _, x := range xs {
		if !x.OK() {
			t.Fatalf("green1 -> green2 %v: %+v, %v", x.Addr, x.Result, x.Err)
		}
	}
	if bad := l.Topology.CheckRewrite(frames, capt.Plain(), pas, xs, int(n)); len(bad) > 0 {
		var out strings.Builder
		PrintRewriteFlows(&out, l.Topology.RewriteFlows(capt.Plain(), pas))
		t.Errorf("IP Rewrite capture: %v\n%s", bad, out.String())
	}
	if bad := l.Topology.CheckFrames(frames, malformed); len(bad) > 0 && !(len(bad) == 1 && bad[0] == "no NVGRE frames seen on the underlay") {
		t.Errorf("capture problems: %v", bad)
	}
}

// requireRewriteMigration migrates an IP Rewrite VM and checks that its
// PAs move with it: the policy server keeps them, the new host's agent
// configures them, the old host's removes them, and Green's traffic still
// crosses as plain IP between the PAs.
func requireRewriteMigration(t *testing.T, l *Lab, name, to string) {
	t.Helper()
	ctx := context.Background()
	before, err := l.RewritePAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := l.Topology.VM(name)
	from := v.Host
	if err := l.Migrate(ctx, name, to); err != nil {
		t.Fatal(err)
	}
	after, err := l.RewritePAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before[name], after[name]) {
		t.Fatalf("%s's PAs changed in its migration: %v, then %v", name, before[name], after[name])
	}
	f := pafilter(after[name])
	waitUntil(t, name+"'s PAs to move from "+from+" to "+to, func() bool {
		there, err1 := l.Client(to).ProviderAddresses(ctx, f)
		left, err2 := l.Client(from).ProviderAddresses(ctx, f)
		return err1 == nil && err2 == nil && len(there) == 2 && len(left) == 0
	})
	// to's duplicate address detection may first find a PA still on from:
	// its agent adds it again until it is usable.
	waitUntil(t, name+"'s PAs to be usable on "+to, func() bool {
		there, err := l.Client(to).ProviderAddresses(ctx, f)
		return err == nil && len(there) == 2 && there[0].AddressState == policy.AddressPreferred && there[1].AddressState == policy.AddressPreferred
	})
	requireRewrite(t, l, 256<<10)
}
