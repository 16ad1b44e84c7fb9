package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// TestProviderRoutesAcrossRouter: two hosts whose PAs are in different
// subnets, behind a router. Their VMs reach each other, in an NVGRE and in a
// VXLAN subnet, only while each host has a provider route to the other's PA
// subnet via the router; a route added before its host has a PA in the
// next hop's subnet waits and is installed once the PA is up; stopped hosts'
// routes are removed by cleanup.
func TestProviderRoutesAcrossRouter(t *testing.T) {
	needRoot(t)
	prefix := "wpr" + suffix() + "-"
	hosts, router := [2]string{prefix + "a", prefix + "b"}, prefix+"r"
	// vms[e][i] is host i's VM in the NVGRE (e = 0) or VXLAN (e = 1) subnet.
	vms := [2][2]string{{prefix + "ga", prefix + "gb"}, {prefix + "xa", prefix + "xb"}}
	for _, ns := range []string{hosts[0], hosts[1], router, vms[0][0], vms[0][1], vms[1][0], vms[1][1]} {
		netnsAdd(t, ns)
	}
	pa := [2]netip.Prefix{netip.MustParsePrefix("198.18.10.2/24"), netip.MustParsePrefix("198.18.20.2/24")}
	gw := [2]netip.Addr{netip.MustParseAddr("198.18.10.1"), netip.MustParseAddr("198.18.20.1")}
	routedUnderlay(t, router, hosts[:], gw[:])
	var c [2]*provider.Client
	for i := range 2 {
		c[i] = startHost(t, hosts[i], "ul0")
	}
	ctx := context.Background()
	check := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	vsid := [2]policy.VSID{5001, 5002}
	ca := func(e, i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(51 + e), 0, byte(10 + i)}) }
	mac := func(e, i int) packet.MAC { return packet.MAC{2, 0, 0, 0x5e, byte(e), byte(i)} }
	for i := range 2 {
		check(c[i].AddVirtualSubnet(ctx, policy.VirtualSubnet{VirtualSubnetID: vsid[1], Encapsulation: policy.EncapVXLAN}))
		for e := range 2 {
			check(c[i].AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID(fmt.Sprintf("{11111111-2222-3333-4444-00000000005%d}", e)),
				VirtualSubnetID: vsid[e], DestinationPrefix: netip.PrefixFrom(ca(e, 0), 24).Masked()}))
			for j := range 2 {
				check(c[i].AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca(e, j), VirtualSubnetID: vsid[e], MACAddress: mac(e, j),
					ProviderAddress: pa[j].Addr(), Rule: policy.TranslationMethodEncap}))
			}
			port := fmt.Sprintf("vm%d", e)
			vmNIC(t, hosts[i], port, vms[e][i], mac(e, i))
			check(c[i].AttachPort(ctx, provider.PortSpec{Name: port, MACAddress: mac(e, i), VirtualSubnetID: vsid[e], CustomerAddresses: []netip.Addr{ca(e, i)}}))
			run(t, "ip", "-n", vms[e][i], "addr", "add", netip.PrefixFrom(ca(e, i), 24).String(), "dev", "eth0")
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, pair := range vms {
		for _, ns := range pair {
			go inNetns(ns, func() error {
				return probe.Serve(sctx, ns, probe.Port, slog.New(slog.NewTextHandler(io.Discard, nil)))
			})
		}
	}

	// Host a's provider route is refused on an interface not its underlay.
	ul0 := linkIndex(t, hosts[0], "ul0")
	if _, err := c[0].AddProviderRoute(ctx, policy.ProviderRoute{InterfaceIndex: ul0 + 100, DestinationPrefix: pa[1].Masked(), NextHop: gw[0]}); err == nil ||
		!strings.Contains(err.Error(), "is not an underlay interface of this host") {
		t.Errorf("provider route on InterfaceIndex %d: %v, want refused as not the underlay", ul0+100, err)
	}
	// A PA on an interface that is no underlay is refused and not stored.
	bad := policy.ProviderAddress{ProviderAddress: pa[0].Addr(), PrefixLength: 24, InterfaceIndex: ul0 + 100}
	if _, err := c[0].AddProviderAddress(ctx, bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("InterfaceIndex %d is not an underlay interface of this host, which has ul0 (InterfaceIndex %d)", ul0+100, ul0)) {
		t.Errorf("provider address %+v: %v, want refused as on no underlay", bad, err)
	}
	if pas, err := c[0].ProviderAddresses(ctx, policy.ProviderAddressFilter{}); err != nil || len(pas) != 0 {
		t.Errorf("after the refusals a holds PAs %+v (%v), want none", pas, err)
	}

	// Host b's route comes before its PA: it waits for the PA, which puts
	// the router in one of b's subnets, then is installed.
	toA := policy.ProviderRoute{DestinationPrefix: pa[0].Masked(), NextHop: gw[1]}
	check(c[1].AddProviderRoute(ctx, toA))
	eventually(t, "b's route waiting", func() error { return routeCounts(ctx, c[1], 0, 1) })
	for i := range 2 {
		check(c[i].AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa[i].Addr(), PrefixLength: uint8(pa[i].Bits())}))
		waitPreferred(t, c[i], pa[i].Addr())
	}
	eventually(t, "b's route installed", func() error { return routeCounts(ctx, c[1], 1, 0) })
	if out := wnvRoutes(t, hosts[1]); !strings.Contains(out, "198.18.10.0/24 via 198.18.20.1 dev ul0 src 198.18.20.2") {
		t.Errorf("b's kernel routes of proto %d:\n%s\nwant 198.18.10.0/24 via 198.18.20.1 from b's PA", routeProtocol, out)
	}

	// Without a's route, a cannot send to b's PA: no VM reaches the other.
	unreachable := func(what string) {
		t.Helper()
		for e := range 2 {
			for i := range 2 {
				if n := answers(ctx, vms[e][i], ca(e, 1-i), 3); n != 0 {
					t.Errorf("%s: %s reaches %s (%d answers), want no answer", what, vms[e][i], ca(e, 1-i), n)
				}
			}
		}
	}
	unreachable("before a's provider route")

	toB := policy.ProviderRoute{InterfaceIndex: ul0, DestinationPrefix: pa[1].Masked(), NextHop: gw[0], Metric: 5}
	check(c[0].AddProviderRoute(ctx, toB))
	eventually(t, "a's route in the kernel", func() error {
		if out := wnvRoutes(t, hosts[0]); !strings.Contains(out, "198.18.20.0/24 via 198.18.10.1 dev ul0 src 198.18.10.2 metric 5") {
			return fmt.Errorf("a's routes of proto %d: %q", routeProtocol, out)
		}
		return nil
	})
	for e, name := range []string{"NVGRE", "VXLAN"} {
		for i := range 2 {
			eventually(t, fmt.Sprintf("%s: %s reaches %s", name, vms[e][i], ca(e, 1-i)), func() error {
				if n := answers(ctx, vms[e][i], ca(e, 1-i), 1); n != 1 {
					return fmt.Errorf("no answer")
				}
				return nil
			})
		}
		// Once decided, the flow is the kernel fast path's: it sends with
		// the same routes.
		if n := answers(ctx, vms[e][0], ca(e, 1), 10); n < 9 {
			t.Errorf("%s: %d of 10 probes answered once the route is there", name, n)
		}
	}
	cs, err := c[0].Counters(ctx)
	check(cs, err)
	checkPaths(t, cs, "")
	for _, v := range cs.VSIDs {
		if (v.VirtualSubnetID == vsid[0] || v.VirtualSubnetID == vsid[1]) && (v.Encapsulated == 0 || v.Decapsulated == 0) {
			t.Errorf("a's VSID %d counters %+v: want frames encapsulated and decapsulated", v.VirtualSubnetID, v)
		}
	}

	// A Metric change moves the kernel route; removing the provider route
	// removes it, and with it the way to b.
	check(c[0].SetProviderRoutes(ctx, policy.ProviderRouteFilter{DestinationPrefix: []netip.Prefix{toB.DestinationPrefix}}, 9))
	eventually(t, "a's route at metric 9", func() error {
		if out := wnvRoutes(t, hosts[0]); !strings.Contains(out, "198.18.20.0/24 via 198.18.10.1 dev ul0 src 198.18.10.2 metric 9") || strings.Contains(out, "metric 5") {
			return fmt.Errorf("a's routes of proto %d: %q", routeProtocol, out)
		}
		return nil
	})
	check(c[0].RemoveProviderRoutes(ctx, policy.ProviderRouteFilter{DestinationPrefix: []netip.Prefix{toB.DestinationPrefix}}))
	eventually(t, "a's route gone", func() error {
		if out := wnvRoutes(t, hosts[0]); out != "" {
			return fmt.Errorf("a's routes of proto %d: %q", routeProtocol, out)
		}
		return nil
	})
	unreachable("after a's provider route was removed")
}

// TestProviderRoutesSurviveRestart: a stopped host leaves its provider
// routes in the kernel (fail static); restarted without a checkpoint, it
// keeps them while its policy is provisioned again, and manages them again
// once policy has them. A route that is not wnvd's is never touched.
func TestProviderRoutesSurviveRestart(t *testing.T) {
	needRoot(t)
	prefix := "wpr" + suffix() + "-"
	host, router := prefix+"h", prefix+"r"
	netnsAdd(t, host)
	netnsAdd(t, router)
	routedUnderlay(t, router, []string{host}, []netip.Addr{netip.MustParseAddr("198.18.10.1")})
	ctx := context.Background()
	check := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	pa := policy.ProviderAddress{ProviderAddress: netip.MustParseAddr("198.18.10.2"), PrefixLength: 24}
	far := policy.ProviderRoute{DestinationPrefix: netip.MustParsePrefix("198.18.30.0/24"), NextHop: netip.MustParseAddr("198.18.10.1"), Metric: 3}
	const farRoute = "198.18.30.0/24 via 198.18.10.1 dev ul0 src 198.18.10.2 metric 3"
	hasRoutes := func(want ...string) func() error {
		return func() error {
			out := wnvRoutes(t, host)
			for _, w := range want {
				if !strings.Contains(out, w) {
					return fmt.Errorf("routes of proto %d: %q, want %q", routeProtocol, out, w)
				}
			}
			return nil
		}
	}

	// The fast path is pinned where both wnvd see it, so the second takes
	// over the first's PA as a restarted wnvd does.
	bpf := filepath.Join(t.TempDir(), "bpf")
	if err := os.Mkdir(bpf, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", bpf, "bpf", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(bpf, unix.MNT_DETACH) })
	pins := envPinDir + "=" + filepath.Join(bpf, "h")

	c, stop := startHostEnv(t, host, "ul0", envKeep+"=1", pins)
	check(c.AddProviderAddress(ctx, pa))
	check(c.AddProviderRoute(ctx, far))
	eventually(t, "route installed", hasRoutes(farRoute))
	// A route someone else made is left alone, even where a provider
	// route wants its place.
	const theirs = "198.18.50.0/24 via 198.18.10.1 dev ul0 proto static"
	run(t, append([]string{"ip", "-n", host, "route", "add"}, strings.Fields(theirs)...)...)
	check(c.AddProviderRoute(ctx, policy.ProviderRoute{DestinationPrefix: netip.MustParsePrefix("198.18.50.0/24"), NextHop: netip.MustParseAddr("198.18.10.1")}))
	eventually(t, "a provider route in the way of another's", func() error {
		cs, err := c.Counters(ctx)
		if err != nil {
			return err
		}
		if r := cs.ProviderRoutes; r == nil || r.Installed != 1 || r.Failed != 1 {
			return fmt.Errorf("provider route counters %+v, want 1 installed and 1 failed", r)
		}
		return nil
	})
	stop()
	if err := hasRoutes(farRoute)(); err != nil {
		t.Fatalf("after the host stopped: %v", err)
	}

	// Restarted without a checkpoint: the PA is taken over, and a pass that
	// installs another route leaves the earlier wnvd's route alone.
	c, _ = startHostEnv(t, host, "ul0", pins)
	check(c.AddProviderAddress(ctx, pa))
	waitPreferred(t, c, pa.ProviderAddress)
	near := policy.ProviderRoute{DestinationPrefix: netip.MustParsePrefix("198.18.40.0/24"), NextHop: netip.MustParseAddr("198.18.10.1")}
	check(c.AddProviderRoute(ctx, near))
	eventually(t, "another route installed beside it", hasRoutes("198.18.40.0/24 via 198.18.10.1 dev ul0 src 198.18.10.2", farRoute))
	// Provisioned again, it is the host's: removing it removes it.
	check(c.AddProviderRoute(ctx, far))
	eventually(t, "both routes counted", func() error { return routeCounts(ctx, c, 2, 0) })
	check(c.RemoveProviderRoutes(ctx, policy.ProviderRouteFilter{DestinationPrefix: []netip.Prefix{far.DestinationPrefix}}))
	eventually(t, "route removed", func() error {
		if out := wnvRoutes(t, host); strings.Contains(out, "198.18.30.0/24") {
			return fmt.Errorf("routes of proto %d: %q", routeProtocol, out)
		}
		return nil
	})
	if out, err := exec.Command("ip", "-n", host, "route", "show", "proto", "static").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "198.18.50.0/24 via 198.18.10.1 dev ul0") {
		t.Errorf("the route that is not wnvd's: %q (%v), want it still there", out, err)
	}
}

// routedUnderlay connects each host namespace's ul0 to a router namespace
// that forwards between them, as gw[i] on host i's link, and checks at
// cleanup, after the hosts (started later) stopped and cleaned up, that no
// route of wnvd's protocol is left.
func routedUnderlay(t *testing.T, router string, hosts []string, gw []netip.Addr) {
	t.Helper()
	for i, h := range hosts {
		r := fmt.Sprintf("r%d", i)
		run(t, "ip", "link", "add", "ul0", "netns", h, "type", "veth", "peer", "name", r, "netns", router)
		run(t, "ip", "-n", router, "addr", "add", netip.PrefixFrom(gw[i], 24).String(), "dev", r)
		run(t, "ip", "-n", router, "link", "set", r, "up")
		run(t, "ip", "-n", h, "link", "set", "ul0", "up")
	}
	run(t, "ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	t.Cleanup(func() {
		for _, h := range hosts {
			if out := wnvRoutes(t, h); out != "" {
				t.Errorf("routes of proto %d left in %s after cleanup:\n%s", routeProtocol, h, out)
			}
		}
	})
}

// wnvRoutes is `ip route` of wnvd's protocol in namespace ns, both families.
func wnvRoutes(t *testing.T, ns string) string {
	t.Helper()
	var out []string
	for _, family := range []string{"-4", "-6"} {
		b, err := exec.Command("ip", "-n", ns, family, "route", "show", "proto", fmt.Sprint(routeProtocol)).CombinedOutput()
		if err != nil {
			t.Fatalf("ip route in %s: %v\n%s", ns, err, b)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, "\n")
}

func linkIndex(t *testing.T, ns, name string) int {
	t.Helper()
	var idx int
	if err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(name)
		if err == nil {
			idx = ifi.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return idx
}

// routeCounts checks the host's provider route counters.
func routeCounts(ctx context.Context, c *provider.Client, installed, waiting int) error {
	cs, err := c.Counters(ctx)
	if err != nil {
		return err
	}
	if r := cs.ProviderRoutes; r == nil || r.Installed != installed || r.Waiting != waiting {
		return fmt.Errorf("provider route counters %+v, want %d installed and %d waiting", r, installed, waiting)
	}
	return nil
}

// answers sends n probes from namespace ns to the responder at ca and
// counts the answers.
func answers(ctx context.Context, ns string, ca netip.Addr, n int) int {
	var replies []probe.Reply
	inNetns(ns, func() (err error) {
		replies, err = probe.UDP(ctx, netip.AddrPortFrom(ca, probe.Port), probe.UDPOptions{Count: n, Timeout: 300 * time.Millisecond})
		return err
	})
	return len(replies)
}

// eventually retries fn until it succeeds or 15 s pass.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 15s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
