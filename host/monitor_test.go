package host

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// TestMonitorShowsBothPaths: a VM sends a frame from a MAC not its own (the
// kernel drops it as spoofed-mac; with the fast path off the switch does)
// and a frame to a CA without a lookup record (the switch drops it as
// no-lookup-record); GET /v1/monitor shows both with their path, reason,
// port, VSID and frame; with the fast path on, a frame to a local VM shows
// the flow the switch decided and installed.
func TestMonitorShowsBothPaths(t *testing.T) {
	needRoot(t)
	b := newTwoHosts(t, "mo")
	ca := netip.MustParseAddr("10.71.0.10")
	mac := packet.MAC{2, 0, 0, 0, 0x71, 1}
	pa := netip.MustParseAddr("198.18.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := startHost(t, b.hosts[0], b.under[0])
	check := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-000000000071}"),
		VirtualSubnetID: 7101, DestinationPrefix: netip.MustParsePrefix("10.71.0.0/24")}))
	check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa, PrefixLength: 24}))
	check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca, VirtualSubnetID: 7101, MACAddress: mac, ProviderAddress: pa,
		Rule: policy.TranslationMethodEncap}))
	vmNIC(t, b.hosts[0], b.taps[0], b.vms[0], mac)
	check(c.AttachPort(ctx, provider.PortSpec{Name: "vm0", Interface: b.taps[0], MACAddress: mac, VirtualSubnetID: 7101,
		CustomerAddresses: []netip.Addr{ca}}))
	ca1, mac1 := netip.MustParseAddr("10.71.0.11"), packet.MAC{2, 0, 0, 0, 0x71, 2}
	check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca1, VirtualSubnetID: 7101, MACAddress: mac1, ProviderAddress: pa,
		Rule: policy.TranslationMethodEncap}))
	vmNIC(t, b.hosts[0], b.taps[1], b.vms[1], mac1)
	check(c.AttachPort(ctx, provider.PortSpec{Name: "vm1", Interface: b.taps[1], MACAddress: mac1, VirtualSubnetID: 7101,
		CustomerAddresses: []netip.Addr{ca1}}))

	events := make(chan monitor.Event, 64)
	go func() {
		for e, err := range c.Monitor(ctx, provider.MonitorQuery{Port: []string{"vm0"}, Flows: true}) {
			if err != nil {
				return
			}
			events <- e
		}
	}()
	select {
	case e := <-events:
		if e.Type != monitor.TypeStart || e.Rate != monitor.DefaultRate || e.Sample != 1 {
			t.Fatalf("first line %+v, want the start with the default rate", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no start line on the monitor stream")
	}

	spoofed := udpFrame(vswitch.GatewayMAC, packet.MAC{2, 0, 0, 0, 0x71, 0x66}, ca, netip.MustParseAddr("10.71.0.11"))
	unknown := udpFrame(vswitch.GatewayMAC, mac, ca, netip.MustParseAddr("10.71.0.99"))
	toVM1 := udpFrame(mac1, mac, ca, ca1)
	spoofPath := "kernel"
	want := map[string]string{"spoofed-mac": spoofPath, "no-lookup-record": "slow", "flow": "slow"}
	if os.Getenv("WNV_FAST_PATH") == "off" {
		want["spoofed-mac"] = "slow"
		delete(want, "flow") // nothing is installed
	}
	frames := map[string][]byte{"spoofed-mac": spoofed, "no-lookup-record": unknown}
	deadline := time.After(15 * time.Second)
	send := time.NewTicker(200 * time.Millisecond)
	defer send.Stop()
	for len(want) > 0 {
		select {
		case <-deadline:
			t.Fatalf("the monitor did not show %v", want)
		case <-send.C:
			for _, f := range [][]byte{spoofed, unknown, toVM1} {
				sendFrame(t, b.vms[0], f)
			}
		case e := <-events:
			if e.Type == monitor.TypeFlow {
				if e.Port != "vm0" || e.Destination != ca1.String() || e.NextHop != "port vm1" || e.VirtualSubnetID != 7101 || e.Path != "slow" {
					t.Errorf("flow %+v, want vm0 to %s through port vm1 in 7101", e, ca1)
				}
				delete(want, "flow")
				continue
			}
			path, ok := want[e.Reason]
			if e.Type != monitor.TypeDrop || !ok {
				continue
			}
			if e.Path != path || e.Port != "vm0" || e.VirtualSubnetID != 7101 || e.Host == "" || e.Length != len(frames[e.Reason]) ||
				string(e.Frame) != string(frames[e.Reason]) || e.Src != ca.String() {
				t.Errorf("%s: %+v, want path %s, port vm0, VSID 7101 and the frame", e.Reason, e, path)
			}
			delete(want, e.Reason)
		}
	}
}

// udpFrame is a small UDP frame.
func udpFrame(dst, src packet.MAC, srcIP, dstIP netip.Addr) []byte {
	f := make([]byte, 14+20+8+4)
	n := packet.PutEthernet(f, dst, src, packet.EtherTypeIPv4)
	n += packet.PutIPv4(f[n:], srcIP, dstIP, packet.ProtoUDP, 64, 12, 1, true)
	packet.PutUDP(f[n:], 40000, 7777, 4)
	return f
}

// sendFrame sends frame out of eth0 in namespace ns.
func sendFrame(t *testing.T, ns string, frame []byte) {
	t.Helper()
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6})
	})
	if err != nil {
		t.Fatal(err)
	}
}
