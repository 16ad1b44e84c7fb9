package host

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// TestRewriteBetweenHosts runs IP Rewrite between two hosts: each VM's CA
// (IPv4 and IPv6) has a PA of its own, configured on its host. TCP crosses
// with every byte checked, in both families, and a capture on the
// receiver's underlay sees plain TCP between the two VMs' PAs (outer =
// inner: no encapsulation); UDP crosses in both families; a packet to a
// VM's PA from a PA that is no Nat VM's is dropped as rewrite-mismatch.
func TestRewriteBetweenHosts(t *testing.T) {
	needRoot(t)
	b := newTwoHosts(t, "rf")
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
	for _, dst := range []netip.Addr{ca4[1], ca6[1]} {
		udpEcho(t, b.vms[0], b.vms[1], dst)
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
