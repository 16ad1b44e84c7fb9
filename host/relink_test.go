package host

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// TestPortFollowsItsInterfaceCreatedAgain: a VM restarted by its hypervisor
// (or a container by its runtime) gets a new interface under the same name;
// the port moves to it, and the VMs reach each other again.
func TestPortFollowsItsInterfaceCreatedAgain(t *testing.T) {
	needRoot(t)
	b := newTwoHosts(t, "rl")
	ca := [2]netip.Addr{netip.MustParseAddr("10.7.0.10"), netip.MustParseAddr("10.7.0.11")}
	mac := [2]packet.MAC{{2, 0, 0, 0, 0x57, 1}, {2, 0, 0, 0, 0x57, 2}}
	pa := netip.MustParseAddr("198.18.0.1")
	ctx := context.Background()
	c := startHost(t, b.hosts[0], b.under[0])
	check := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-000000000007}"),
		VirtualSubnetID: 7001, DestinationPrefix: netip.MustParsePrefix("10.7.0.0/24")}))
	check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa, PrefixLength: 24}))
	for i := range 2 {
		check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca[i], VirtualSubnetID: 7001, MACAddress: mac[i],
			ProviderAddress: pa, Rule: policy.TranslationMethodEncap}))
		vmNIC(t, b.hosts[0], b.taps[i], b.vms[i], mac[i])
		check(c.AttachPort(ctx, provider.PortSpec{Name: b.taps[i], MACAddress: mac[i], VirtualSubnetID: 7001, CustomerAddresses: []netip.Addr{ca[i]}}))
		run(t, "ip", "-n", b.vms[i], "addr", "add", ca[i].String()+"/24", "dev", "eth0")
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inNetns(b.vms[1], func() error {
		return probe.Serve(sctx, "b", probe.Port, slog.New(slog.NewTextHandler(io.Discard, nil)))
	})
	reach := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var replies []probe.Reply
			err := inNetns(b.vms[0], func() (err error) {
				replies, err = probe.UDP(ctx, netip.AddrPortFrom(ca[1], probe.Port), probe.UDPOptions{Count: 1, Timeout: 200 * time.Millisecond})
				return err
			})
			if err == nil && len(replies) == 1 && replies[0].Responder == "b" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: a does not reach b (%v)", what, err)
			}
		}
	}
	reach("before")
	before, err := c.Ports(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// b's runtime deletes its interface and creates a new one by that name.
	run(t, "ip", "-n", b.hosts[0], "link", "del", b.taps[1])
	vmNIC(t, b.hosts[0], b.taps[1], b.vms[1], mac[1])
	run(t, "ip", "-n", b.vms[1], "addr", "add", ca[1].String()+"/24", "dev", "eth0")
	reach("after b's interface was created again")
	after, err := c.Ports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ifindex := func(ps []provider.Port) int {
		for _, p := range ps {
			if p.Name == b.taps[1] {
				return p.Ifindex
			}
		}
		return 0
	}
	if ifindex(after) == 0 || ifindex(after) == ifindex(before) {
		t.Errorf("port %s on ifindex %d before and %d after its interface was created again, want a new one", b.taps[1], ifindex(before), ifindex(after))
	}
}
