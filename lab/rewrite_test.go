package lab

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/wnv/wnv/packet"
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

func TestValidateChecksIPRewritePools(t *testing.T) {
	for _, c := range []struct {
		edit func(*Subnet)
		want string
	}{
		{func(s *Subnet) { s.RewriteV6 = netip.Prefix{} }, "must both be pools"},
		{func(s *Subnet) { s.RewriteV4 = netip.MustParsePrefix("198.18.0.0/24") }, "hold host host1's PA 198.18.0.1"},
		{func(s *Subnet) { s.RewriteV4 = netip.MustParsePrefix("198.18.64.1/24") }, "without host bits"},
	} {
		topo := Default()
		topo.Tenants = slices.Clone(topo.Tenants)
		green := &topo.Tenants[2]
		green.Subnets = slices.Clone(green.Subnets)
		c.edit(&green.Subnets[0])
		if err := topo.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate = %v, want %q", err, c.want)
		}
	}
}

// plainFrame is an underlay frame carrying an IPv4 packet of proto.
func plainFrame(src, dst string, proto uint8, n int) []byte {
	b := make([]byte, 14+20+n)
	off := packet.PutEthernet(b, packet.MAC{2, 0, 0, 0, 0, 2}, packet.MAC{2, 0, 0, 0, 0, 1}, packet.EtherTypeIPv4)
	packet.PutIPv4(b[off:], netip.MustParseAddr(src), netip.MustParseAddr(dst), proto, 64, n, 1, true)
	return b
}

func TestCheckRewriteWantsPlainIPBetweenPAs(t *testing.T) {
	topo := Default()
	pas := topo.staticRewritePAs()
	green2, _ := topo.VM("green2")
	xs := []Transfer{{From: "green1", To: "green2", Addr: green2.V4}}
	pa1, pa2 := pas["green1"][0].Addr().String(), pas["green2"][0].Addr().String()

	f, ok := decodePlain(plainFrame(pa1, pa2, packet.ProtoTCP, 1000))
	if !ok || !f.Plain || f.OuterSrc.String() != pa1 || f.InnerProto != packet.ProtoTCP {
		t.Fatalf("decodePlain = %+v, %v", f, ok)
	}
	if _, ok := decodePlain(nvgreFrame("198.18.0.1", "198.18.0.2", "10.0.0.10", "10.0.0.11", 5001, 7)); ok {
		t.Fatal("an NVGRE frame decoded as plain IP")
	}
	plain := []Frame{f, f}
	if bad := topo.CheckRewrite(nil, plain, pas, xs, 2000); len(bad) != 0 {
		t.Errorf("two 1034-byte frames for 2000 bytes: %v", bad)
	}
	if bad := topo.CheckRewrite(nil, plain[:1], pas, xs, 2000); len(bad) != 1 || !strings.Contains(bad[0], "1034 bytes of plain TCP") {
		t.Errorf("too few bytes: %v", bad)
	}
	host, _ := decodePlain(plainFrame("198.18.0.1", pa2, packet.ProtoTCP, 5000))
	if bad := topo.CheckRewrite(nil, []Frame{host}, pas, xs, 2000); len(bad) != 1 || !strings.Contains(bad[0], "no plain TCP between their PAs") {
		t.Errorf("TCP from a host's PA instead of green1's: %v", bad)
	}
	tunnelled, _, _ := DecodeUnderlay(nvgreFrame("198.18.0.1", "198.18.0.3", "10.0.0.10", "10.0.0.11", 7001, 7))
	tunnelled.InnerProto = packet.ProtoTCP
	if bad := topo.CheckRewrite([]Frame{tunnelled}, plain, pas, xs, 2000); len(bad) != 1 || !strings.Contains(bad[0], "NVGRE frames carried TCP of an IP Rewrite subnet") {
		t.Errorf("Green's TCP in NVGRE: %v", bad)
	}
}
