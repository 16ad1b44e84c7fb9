package host

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// TestL2OnlySubnetBetweenHosts: two VMs on two hosts in a subnet with only
// L2Only records (one port with no CAs, one with its CAs) reach each other
// over IPv4 and IPv6, over NVGRE and VXLAN. No policy knows their CAs, so
// their ARP and neighbor solicitations are resolved by flooding: each VM ends
// up with the other's MAC in its neighbor table.
func TestL2OnlySubnetBetweenHosts(t *testing.T) {
	needRoot(t)
	for _, e := range []policy.Encapsulation{policy.EncapNVGRE, policy.EncapVXLAN} {
		t.Run(e.String(), func(t *testing.T) { l2OnlyBetweenHosts(t, e) })
	}
}

func l2OnlyBetweenHosts(t *testing.T, encap policy.Encapsulation) {
	b := newTwoHosts(t, "lo")
	hosts, vms, under := b.hosts, b.vms, b.under
	pa := [2]netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")}
	ca4 := [2]netip.Addr{netip.MustParseAddr("10.9.0.10"), netip.MustParseAddr("10.9.0.11")}
	ca6 := [2]netip.Addr{netip.MustParseAddr("fd00:9::10"), netip.MustParseAddr("fd00:9::11")}
	mac := [2]packet.MAC{{2, 0, 0, 0, 0x59, 1}, {2, 0, 0, 0, 0x59, 2}}
	portCAs := [2][]netip.Addr{nil, {ca4[1], ca6[1]}}
	ctx := context.Background()
	var clients [2]*provider.Client
	for i := range 2 {
		c := startHost(t, hosts[i], under[i])
		clients[i] = c
		check := func(_ any, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		if encap == policy.EncapVXLAN {
			check(c.AddVirtualSubnet(ctx, policy.VirtualSubnet{VirtualSubnetID: 9001, Encapsulation: encap}))
		}
		for j := range 2 {
			for _, zero := range []string{"0.0.0.0", "::"} {
				check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: netip.MustParseAddr(zero), VirtualSubnetID: 9001, MACAddress: mac[j],
					ProviderAddress: pa[j], Rule: policy.TranslationMethodEncap, Type: policy.L2Only}))
			}
		}
		check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa[i], PrefixLength: 24}))
		vmNIC(t, b.hosts[i], b.taps[i], vms[i], mac[i])
		check(c.AttachPort(ctx, provider.PortSpec{Name: "vm", Interface: b.taps[i], MACAddress: mac[i],
			VirtualSubnetID: 9001, CustomerAddresses: portCAs[i]}))
		run(t, "ip", "-n", vms[i], "addr", "add", ca4[i].String()+"/24", "dev", "eth0")
		run(t, "ip", "-n", vms[i], "addr", "add", ca6[i].String()+"/64", "dev", "eth0", "nodad")
	}
	for i := range 2 {
		waitPreferred(t, clients[i], pa[i])
	}

	probeBothWays(t, vms[0], vms[1], ca4, ca6)
	for i, j := range []int{1, 0} {
		for _, ca := range []netip.Addr{ca4[j], ca6[j]} {
			out, err := exec.Command("ip", "-n", vms[i], "neigh", "show", ca.String()).CombinedOutput()
			if err != nil || !strings.Contains(string(out), mac[j].String()) {
				t.Errorf("VM %d's neighbor entry for %s: %q (%v), want MAC %s", i, ca, out, err, mac[j])
			}
		}
	}
	for i, c := range clients {
		cs, err := c.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var flooded uint64
		for _, v := range cs.VSIDs {
			if v.VirtualSubnetID == 9001 {
				flooded = v.Flooded
			}
		}
		if flooded == 0 {
			t.Errorf("host %d counted no flooded copies for VSID 9001: %+v", i, cs.VSIDs)
		}
	}
}
