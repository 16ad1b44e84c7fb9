package host

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// TestRewriteBetweenHosts runs IP Rewrite between two hosts: each VM's CA
// (IPv4 and IPv6) has a PA of its own, configured on its host. TCP crosses
// with every byte checked, in both families (1 MiB: the VMs' veths send
// GSO super-frames), and a capture on the receiver's underlay sees plain
// TCP between the two VMs' PAs (outer = inner: no encapsulation), from the
// sending host's MAC; with the fast path on, the kernel carries most of
// the packets both ways. UDP crosses in both families; a packet to a VM's
// PA from a PA that is no Nat VM's is dropped as rewrite-mismatch.
func TestRewriteBetweenHosts(t *testing.T) { rewriteBetweenHosts(t, false) }

// TestRewriteUseVmMACAddress is TestRewriteBetweenHosts with
// UseVmMACAddress on the records: the rewritten packets leave with the
// sending VM's MAC as source.
func TestRewriteUseVmMACAddress(t *testing.T) { rewriteBetweenHosts(t, true) }

func rewriteBetweenHosts(t *testing.T, vmMAC bool) {
	needRoot(t)
	tag := "rf"
	if vmMAC {
		tag = "rm"
	}
	b := newTwoHosts(t, tag)
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
					Rule: policy.TranslationMethodNat, UseVmMACAddress: vmMAC})
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
	// The sender's MAC on the wire: the VM's, or host A's underlay's.
	wantMAC := mac[0]
	if !vmMAC {
		if err := inNetns(b.hosts[0], func() error {
			ifi, err := net.InterfaceByName(b.under[0])
			if err == nil {
				wantMAC = packet.MAC(ifi.HardwareAddr)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	fast := os.Getenv("WNV_FAST_PATH") != "off"
	for _, c := range []struct{ ca, srcPA, dstPA netip.Addr }{{ca6[1], pa6[0], pa6[1]}, {ca4[1], pa4[0], pa4[1]}} {
		// The underlay capture runs in host B's namespace, on its underlay.
		plain := captureRewritten(t, b.hosts[1], b.under[1], c.srcPA, c.dstPA)
		var before [2]provider.PathCounters
		for i := range 2 {
			before[i] = paths(t, clients[i])
		}
		tcpTransfer(t, b.vms[0], b.vms[1], c.ca, 1<<20)
		n, macs := plain.stop()
		if n == 0 {
			t.Errorf("the underlay saw no plain TCP packet from %s to %s: not IP Rewrite", c.srcPA, c.dstPA)
		}
		if len(macs) != 1 || macs[0] != wantMAC {
			t.Errorf("TCP from %s to %s left with source MACs %v, want only %v", c.srcPA, c.dstPA, macs, wantMAC)
		}
		if !fast {
			continue
		}
		// Data from A to B, ACKs back: each way, the kernel carries most.
		a, bb := delta(before[0], paths(t, clients[0])), delta(before[1], paths(t, clients[1]))
		if a.KernelFromPorts <= a.SlowFromPorts || bb.KernelFromUnderlay <= bb.SlowFromUnderlay ||
			bb.KernelFromPorts <= bb.SlowFromPorts || a.KernelFromUnderlay <= a.SlowFromUnderlay {
			t.Errorf("TCP to %s: host A paths %+v, host B paths %+v: want the kernel to carry most packets from the ports and from the underlay", c.ca, a, bb)
		}
	}
	for _, dst := range []netip.Addr{ca4[1], ca6[1]} {
		udpEcho(t, b.vms[0], b.vms[1], dst)
	}
	// A trace of the flow shows both hosts' kernels hold its decisions.
	src, err := clients[0].Trace(ctx, provider.TraceRequest{Port: "vm", Destination: ca4[1], Protocol: "tcp", DestinationPort: 7009, DestinationMAC: mac[1]}, false)
	if err != nil {
		t.Fatal(err)
	}
	if src.Packet == nil || src.Packet.Outer == nil || !src.Packet.Outer.Rewritten || src.Installed != fast {
		t.Fatalf("trace on host A: %+v installed %v, want rewritten, installed %v", src.Packet, src.Installed, fast)
	}
	dst, err := clients[1].Trace(ctx, provider.TraceRequest{Outer: src.Packet.Outer}, false)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Packet == nil || dst.Packet.RewriteIngress == nil || dst.Installed != fast {
		t.Errorf("trace on host B: %+v installed %v, want a rewrite delivery, installed %v", dst.Packet, dst.Installed, fast)
	}

	// A rewritten packet from a PA that is no Nat VM's (host A's own) is
	// dropped and counted on host B.
	pkt := make([]byte, packet.IPv4HeaderLen+packet.UDPHeaderLen+4)
	n := packet.PutIPv4(pkt, hostPA[0], pa4[1], packet.ProtoUDP, 64, packet.UDPHeaderLen+4, 1, true)
	packet.PutUDP(pkt[n:], 40000, 7010, 4)
	packet.SetUDPChecksum(packet.UDP(pkt[n:]), hostPA[0], pa4[1])
	if err := inNetns(b.hosts[0], func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: pa4[1].As4()})
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs, err := clients[1].Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if dropCount(cs, "rewrite-mismatch") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host B did not count a rewrite-mismatch drop for a packet from %s: %+v", hostPA[0], cs.Drops)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dropCount(cs provider.Counters, reason string) uint64 {
	for _, d := range cs.Drops {
		if d.Reason == reason {
			return d.Count
		}
	}
	return 0
}

// udpEcho sends datagrams from namespace from to addr:7010 in namespace to
// until one arrives intact, or fails after a few seconds.
func udpEcho(t *testing.T, from, to string, addr netip.Addr) {
	t.Helper()
	var ln *net.UDPConn
	if err := inNetns(to, func() (err error) {
		ln, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 7010)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var c *net.UDPConn
	if err := inNetns(from, func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 7010)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte("ip rewrite carries udp")
	buf := make([]byte, 100)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		ln.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := ln.ReadFromUDP(buf); err == nil {
			if string(buf[:n]) != string(msg) {
				t.Fatalf("UDP to %s: got %q, want %q", addr, buf[:n], msg)
			}
			return
		}
	}
	t.Fatalf("UDP to %s: nothing arrived", addr)
}

// paths reads a host's path counters.
func paths(t *testing.T, c *provider.Client) provider.PathCounters {
	t.Helper()
	cs, err := c.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cs.Paths == nil {
		return provider.PathCounters{}
	}
	return *cs.Paths
}

func delta(a, b provider.PathCounters) provider.PathCounters {
	return provider.PathCounters{KernelFromPorts: b.KernelFromPorts - a.KernelFromPorts, KernelFromUnderlay: b.KernelFromUnderlay - a.KernelFromUnderlay,
		SlowFromPorts: b.SlowFromPorts - a.SlowFromPorts, SlowFromUnderlay: b.SlowFromUnderlay - a.SlowFromUnderlay}
}

// rewriteCapture counts the plain TCP packets (IP Rewrite: nothing around
// them) from srcPA to dstPA that arrive on an interface, and the source
// MACs they came from.
type rewriteCapture struct {
	c    *capture
	n    int
	macs []packet.MAC
}

func captureRewritten(t *testing.T, ns, ifname string, srcPA, dstPA netip.Addr) *rewriteCapture {
	t.Helper()
	rc := &rewriteCapture{}
	rc.c = captureOn(t, ns, ifname, func(eth packet.Ethernet) {
		var src, dst netip.Addr
		var proto uint8
		switch eth.Type() {
		case packet.EtherTypeIPv4:
			ip, err := packet.ParseIPv4(eth.Payload())
			if err != nil {
				return
			}
			src, dst, proto = ip.Src(), ip.Dst(), ip.Protocol()
		case packet.EtherTypeIPv6:
			ip, err := packet.ParseIPv6(eth.Payload())
			if err != nil {
				return
			}
			src, dst, proto = ip.Src(), ip.Dst(), ip.NextHeader()
		}
		if src != srcPA || dst != dstPA || proto != packet.ProtoTCP {
			return
		}
		rc.n++
		if m := eth.Src(); !slices.Contains(rc.macs, m) {
			rc.macs = append(rc.macs, m)
		}
	})
	return rc
}

func (rc *rewriteCapture) stop() (int, []packet.MAC) {
	rc.c.stop()
	return rc.n, rc.macs
}
