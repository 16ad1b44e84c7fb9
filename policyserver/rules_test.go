package policyserver

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/vswitch"
)

// TestIssue9Rules: each rule refuses with its one-line error and status and
// writes nothing.
func TestIssue9Rules(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))
	must(t)(c.CreateGateway(ctx, policyapi.Gateway{Name: "gw1", VirtualSubnetID: 5001, MACAddress: mac(99), CustomerAddress: addr("10.0.0.254"), Host: "host1"}))
	// host4 is registered but its liveness key is gone, as when its lease expired.
	must(t)(c.RegisterHost(ctx, policyapi.Host{Name: "host4", ProviderAddresses: []netip.Addr{addr("198.18.0.4")}}))
	if _, err := cli.Delete(ctx, aliveKey("host4")); err != nil {
		t.Fatal(err)
	}

	vm := func(f func(*policyapi.VM)) func() error {
		return func() error {
			v := policyapi.VM{Name: "new", MACAddress: mac(50), VirtualSubnetID: 5001, Host: "host1", CustomerAddresses: []netip.Addr{addr("10.0.0.50")}}
			f(&v)
			_, err := c.CreateVM(ctx, v)
			return err
		}
	}
	host := func(pa string) func() error {
		return func() error {
			_, err := c.RegisterHost(ctx, policyapi.Host{Name: "host5", ProviderAddresses: []netip.Addr{addr(pa)}})
			return err
		}
	}
	gatewayMAC := "MACAddress 02:57:4e:56:00:01 is the virtual gateway's, which hosts answer and route with for a subnet gateway without a lookup record of its own: use another unicast MAC"
	reserved := func(field, name string) string {
		return field + ` "` + name + `" is an interface name the host uses itself (lo, all, default, eth0, ul0, or starting with "wnv"): name the VM's interface otherwise`
	}
	cases := []struct {
		name   string
		call   func() error
		status int
		want   string
	}{
		{"second gateway of a VSID", func() error {
			_, err := c.CreateGateway(ctx, policyapi.Gateway{Name: "gw2", VirtualSubnetID: 5001, MACAddress: mac(98), CustomerAddress: addr("10.0.0.253"), Host: "host2"})
			return err
		}, 409, "VirtualSubnetID 5001 already has gateway gw1: a subnet has one gateway, delete it first"},
		{"VM with the virtual gateway MAC", vm(func(v *policyapi.VM) { v.MACAddress = vswitch.GatewayMAC }), 400, gatewayMAC},
		{"gateway with the virtual gateway MAC", func() error {
			_, err := c.CreateGateway(ctx, policyapi.Gateway{Name: "gw3", VirtualSubnetID: 5002, MACAddress: vswitch.GatewayMAC, CustomerAddress: addr("10.0.1.254"), Host: "host2"})
			return err
		}, 400, gatewayMAC},
		{"PA broadcast", host("255.255.255.255"), 400, "ProviderAddresses 255.255.255.255 is not unicast: use a unicast address"},
		{"PA multicast", host("239.1.2.3"), 400, "ProviderAddresses 239.1.2.3 is not unicast: use a unicast address"},
		{"PA unspecified", host("::"), 400, "ProviderAddresses :: is not unicast: use a unicast address"},
		{"PA loopback", host("127.0.0.1"), 400, "ProviderAddresses 127.0.0.1 is a loopback address: use an address of the host on the underlay"},
		{"PA IPv6 loopback", host("::1"), 400, "ProviderAddresses ::1 is a loopback address: use an address of the host on the underlay"},
		{"PA link-local", host("169.254.1.1"), 400, "ProviderAddresses 169.254.1.1 is link-local: use a routable address of the host on the underlay"},
		{"PA IPv6 link-local", host("fe80::1"), 400, "ProviderAddresses fe80::1 is link-local: use a routable address of the host on the underlay"},
		{"VM named lo", vm(func(v *policyapi.VM) { v.Name = "lo" }), 400, reserved("Name", "lo")},
		{"VM named like the underlay", vm(func(v *policyapi.VM) { v.Name = "eth0" }), 400, reserved("Name", "eth0")},
		{"VM named like a sysctl directory", vm(func(v *policyapi.VM) { v.Name = "default" }), 400, reserved("Name", "default")},
		{"VM named with wnvd's prefix", vm(func(v *policyapi.VM) { v.Name = "wnvgso" }), 400, reserved("Name", "wnvgso")},
		{"VM interface lo", vm(func(v *policyapi.VM) { v.Interface = "lo" }), 400, reserved("Interface", "lo")},
		{"VM interface ul0", vm(func(v *policyapi.VM) { v.Interface = "ul0" }), 400, reserved("Interface", "ul0")},
		{"VM interface with a space", vm(func(v *policyapi.VM) { v.Interface = "tap 1" }), 400,
			`Interface "tap 1" is not an interface name: use 1..15 bytes without '/', ':' or spaces`},
		{"migration to a host not alive", func() error { _, err := c.MigrateVM(ctx, "blue1", "host4"); return err },
			409, "Host host4 is not alive (no heartbeat within its TTL): migrate VM blue1 to a live host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refusedUnchanged(t, cli, tc.call, tc.status, tc.want)
		})
	}
	// Once gw1 is gone, the subnet takes another gateway.
	if err := c.DeleteGateway(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	must(t)(c.CreateGateway(ctx, policyapi.Gateway{Name: "gw2", VirtualSubnetID: 5001, MACAddress: mac(98), CustomerAddress: addr("10.0.0.253"), Host: "host2"}))
}

// TestReregisterMovesAtOneRevision: a host's new PA and the records of all
// its VMs and gateways change in one transaction, so a watcher sees every
// move at the revision of the host's put, and the policy read after it
// points only at the new PA.
func TestReregisterMovesAtOneRevision(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.0.5"), addr("fd00:0:0:1::5")}}))
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue2", MACAddress: mac(2), VirtualSubnetID: 5002, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.1.5")}}))
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue3", MACAddress: mac(3), VirtualSubnetID: 5001, Host: "host2",
		CustomerAddresses: []netip.Addr{addr("10.0.0.6")}}))
	must(t)(c.CreateGateway(ctx, policyapi.Gateway{Name: "gw1", VirtualSubnetID: 5002, MACAddress: mac(99), CustomerAddress: addr("10.0.1.254"), Host: "host1"}))
	p := must2(c.Policy(ctx, rdBlue))(t)
	ch := watch(t, c, p.Revision)

	must(t)(c.RegisterHost(ctx, policyapi.Host{Name: "host1", ProviderAddresses: []netip.Addr{addr("198.18.0.11")}, TTLSeconds: 30}))
	moved := map[string]int64{}
	var hostRev int64
	for len(moved) < 3 || hostRev == 0 {
		ev := next(t, ch)
		switch {
		case ev.Kind == policyapi.KindHost:
			hostRev = ev.Revision
		case ev.Kind == policyapi.KindVM && ev.VM != nil:
			moved[ev.VM.Name] = ev.Revision
		case ev.Kind == policyapi.KindGateway && ev.Gateway != nil:
			moved[ev.Gateway.Name] = ev.Revision
		}
	}
	for name, rev := range moved {
		if rev != hostRev {
			t.Fatalf("%s moved at revision %d, the host at %d: %v", name, rev, hostRev, moved)
		}
	}
	if _, ok := moved["blue3"]; ok {
		t.Fatal("blue3 on host2 moved with host1")
	}
	p = must2(c.Policy(ctx, rdBlue))(t)
	for _, r := range p.Records {
		want := addr("198.18.0.11")
		if r.VMName == "blue3" {
			want = addr("198.18.0.2")
		}
		if r.ProviderAddress != want {
			t.Fatalf("record %s of %s points at %s, want %s", r.CustomerAddress, r.VMName, r.ProviderAddress, want)
		}
	}
}
