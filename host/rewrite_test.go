package host

import (
	"context"
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// TestRewriteBetweenHosts runs IP Rewrite between two hosts: each VM's CA
// (IPv4 and IPv6) has a PA of its own, configured on its host. TCP crosses
// with every byte checked, in both families, and a capture on the
// receiver's underlay sees plain TCP between the two VMs' PAs (outer =
// inner: no encapsulation).
func TestRewriteBetweenHosts(t *testing.T) {
	needRoot(t)
	b := newTwoHosts(t, "rw")
	hostPA := [2]netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")}
	ca4 := [2]netip.Addr{netip.MustParseAddr("10.9.0.10"), netip.MustParseAddr("10.9.0.11")}
	pa4 := [2]netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11")}
	ca6 := [2]netip.Addr{netip.MustParseAddr("fd00:9::10"), netip.MustParseAddr("fd00:9::11")}
	pa6 := [2]netip.Addr{netip.MustParseAddr("fd01:9::10"), netip.MustParseAddr("fd01:9::11")}
	mac := [2]packet.MAC{{2, 0, 0, 0, 0x59, 1}, {2, 0, 0, 0, 0x59, 2}}
	rd := policy.MustParseGUID("{11111111-2222-3333-4444-000000000009}")
	ctx := context.Background()
	var clients [2]*provider.Client
	for i := range 2 {
		c := startHost(t, b.hosts[i], b.under[i])
		clients[i] = c
		check := func(_ any, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		check(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: 9001, DestinationPrefix: netip.MustParsePrefix("10.9.0.0/24")}))
		check(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: 9001, DestinationPrefix: netip.MustParsePrefix("fd00:9::/64")}))
		for j := range 2 {
			for _, r := range [][2]netip.Addr{{ca4[j], pa4[j]}, {ca6[j], pa6[j]}} {
				got, err := c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: r[0], VirtualSubnetID: 9001, MACAddress: mac[j], ProviderAddress: r[1],
					Rule: policy.TranslationMethodNat})
				check(got, err)
				if got.Unusable {
					t.Fatalf("record %s: Unusable: %s", r[0], got.UnusableReason)
				}
			}
		}
		check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: hostPA[i], PrefixLength: 24}))
		check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa4[i], PrefixLength: 24}))
		check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa6[i], PrefixLength: 64}))
		vmNIC(t, b.hosts[i], b.taps[i], b.vms[i], mac[i])
		check(c.AttachPort(ctx, provider.PortSpec{Name: "vm", Interface: b.taps[i], MACAddress: mac[i],
			VirtualSubnetID: 9001, CustomerAddresses: []netip.Addr{ca4[i], ca6[i]}}))
		run(t, "ip", "-n", b.vms[i], "addr", "add", ca4[i].String()+"/24", "dev", "eth0")
		run(t, "ip", "-n", b.vms[i], "addr", "add", ca6[i].String()+"/64", "dev", "eth0", "nodad")
	}
	for i := range 2 {
		for _, p := range []netip.Addr{hostPA[i], pa4[i], pa6[i]} {
			waitPreferred(t, clients[i], p)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, c := range clients {
				if cs, err := c.Counters(ctx); err == nil {
					t.Logf("host %d drops %+v paths %+v", i, cs.Drops, cs.Paths)
				}
			}
		}
	})
	// The underlay capture runs in host B's namespace, on its underlay.
	plain := countFlowOn(t, b.hosts[1], b.under[1], pa4[0], pa4[1], packet.ProtoTCP)
	tcpTransfer(t, b.vms[0], b.vms[1], ca6[1], 1<<20)
	tcpTransfer(t, b.vms[0], b.vms[1], ca4[1], 1<<20)
	if n := plain.stop(); n == 0 {
		t.Errorf("the underlay saw no plain TCP packet from %s to %s: not IP Rewrite", pa4[0], pa4[1])
	}
}
