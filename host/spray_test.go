package host

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// TestSprayOfVSIDsBetweenHosts has host b's namespace send 20,000 VXLAN
// and NVGRE packets with random VNIs and GRE keys to host a, in bursts
// after each of which the VMs of VSID 5001 on both hosts probe each other:
// the probes are answered, and host a's counters (what /metrics shows) keep
// one series for 5001 and one "unknown" bucket, not one per key.
func TestSprayOfVSIDsBetweenHosts(t *testing.T) {
	needRoot(t)
	b := newTwoHosts(t, "dp")
	pa := [2]netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")}
	ca := [2]netip.Addr{netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11")}
	mac := [2]packet.MAC{{2, 0, 0, 0, 0x53, 1}, {2, 0, 0, 0, 0x53, 2}}
	rd := policy.MustParseGUID("{11111111-2222-3333-4444-000000000053}")
	ctx := context.Background()
	var clients [2]*provider.Client
	check := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		c := startHost(t, b.hosts[i], b.under[i])
		clients[i] = c
		check(c.AddVirtualSubnet(ctx, policy.VirtualSubnet{VirtualSubnetID: 5001, Encapsulation: policy.EncapVXLAN}))
		check(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}))
		for j := range 2 {
			check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca[j], VirtualSubnetID: 5001, MACAddress: mac[j], ProviderAddress: pa[j], Rule: policy.TranslationMethodEncap}))
		}
		check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa[i], PrefixLength: 24}))
		vmNIC(t, b.hosts[i], b.taps[i], b.vms[i], mac[i])
		check(c.AttachPort(ctx, provider.PortSpec{Name: "vm", Interface: b.taps[i], MACAddress: mac[i],
			VirtualSubnetID: 5001, CustomerAddresses: []netip.Addr{ca[i]}}))
		run(t, "ip", "-n", b.vms[i], "addr", "add", ca[i].String()+"/24", "dev", "eth0")
	}
	for i := range 2 {
		waitPreferred(t, clients[i], pa[i])
	}
	probeBothWays(t, b.vms[0], b.vms[1], ca)

	// The spray goes in four bursts, each followed at once by probes both
	// ways, which host a answers while it still works through the burst.
	const spray, bursts = 20_000, 4
	rng := rand.New(rand.NewPCG(5, 3))
	for range bursts {
		if err := inNetns(b.hosts[1], func() error { return sprayVSIDs(rng, spray/bursts, pa[1], pa[0], mac, ca) }); err != nil {
			t.Fatal(err)
		}
		probeBothWays(t, b.vms[0], b.vms[1], ca)
	}

	// Wait until host a has counted sprayed packets, then check its series.
	deadline := time.Now().Add(20 * time.Second)
	var cs provider.Counters
	for {
		var err error
		if cs, err = clients[0].Counters(ctx); err != nil {
			t.Fatal(err)
		}
		var unknown uint64
		for _, v := range cs.VSIDs {
			if v.VirtualSubnetID == vswitch.UnknownVSID {
				unknown = v.Drops
			}
		}
		if unknown >= spray/10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host a counted %d sprayed packets in the unknown-VSID bucket, want at least %d: %+v", unknown, spray/10, cs.VSIDs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, v := range cs.VSIDs {
		if v.VirtualSubnetID != 5001 && v.VirtualSubnetID != vswitch.UnknownVSID {
			t.Errorf("host a keeps counters for VSID %d, which has no port there", v.VirtualSubnetID)
		}
	}
	if len(cs.VSIDs) > 2 {
		t.Errorf("host a has %d VSID counter series after the spray, want 5001 and the unknown bucket", len(cs.VSIDs))
	}
	probeBothWays(t, b.vms[0], b.vms[1], ca)
}

// sprayVSIDs sends n VXLAN and NVGRE packets from src to dst, half each,
// with random VNIs and GRE keys above 5001 and a valid inner frame of the
// VMs with mac and ca.
func sprayVSIDs(rng *rand.Rand, n int, src, dst netip.Addr, mac [2]packet.MAC, ca [2]netip.Addr) error {
	vx, err := dataplane.SendVXLAN(src, 0)
	if err != nil {
		return err
	}
	defer vx.Close()
	gre, err := dataplane.ListenGRE(src, 0)
	if err != nil {
		return err
	}
	defer gre.Close()
	batch := make([]dataplane.Packet, 64)
	for sent := 0; sent < n; sent += 2 * len(batch) {
		for _, nvgre := range []bool{false, true} {
			for k := range batch {
				buf := make([]byte, 128)
				vsid := 5002 + rng.Uint32N(1<<24-5002)
				if nvgre {
					packet.PutNVGRE(buf, vsid, 1)
				} else {
					packet.PutVXLAN(buf, vsid)
				}
				m := 8 + packet.PutEthernet(buf[8:], mac[0], mac[1], packet.EtherTypeIPv4)
				m += packet.PutIPv4(buf[m:], ca[1], ca[0], packet.ProtoUDP, 64, packet.UDPHeaderLen, 0, false)
				m += packet.PutUDP(buf[m:], 1, 2, 0)
				batch[k] = dataplane.Packet{Buf: buf, N: m, Src: src, Dst: dst}
			}
			var err error
			if nvgre {
				_, err = gre.WriteBatch(batch)
			} else {
				_, err = vx.WriteBatch(batch)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
