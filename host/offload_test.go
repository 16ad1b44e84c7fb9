package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// TestTCPBetweenHosts streams TCP between VMs on two hosts, over VXLAN and
// over NVGRE. The VMs' TAPs have TSO on, so the bytes cross as super-frames
// that the sender cuts into segments (or, through the GSO TAP, hands to
// the kernel whole) and the receiver coalesces again; the
// receiver checks every byte.
func TestTCPBetweenHosts(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name  string
		encap policy.Encapsulation
		gso   string
	}{
		{"VXLAN", policy.EncapVXLAN, ""},
		{"NVGRE", policy.EncapNVGRE, ""},
		{"VXLAN GSO", policy.EncapVXLAN, "wnvgso"},
		{"NVGRE GSO", policy.EncapNVGRE, "wnvgso"},
	} {
		t.Run(tc.name, func(t *testing.T) { tcpBetweenHosts(t, tc.encap, tc.gso) })
	}
}

func tcpBetweenHosts(t *testing.T, encap policy.Encapsulation, gso string) {
	b := newTwoHosts(t, "to")
	hosts, vms, under := b.hosts, b.vms, b.under
	pa := [2]netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")}
	ca := [2]netip.Addr{netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11")}
	mac := [2]packet.MAC{{2, 0, 0, 0, 0x52, 1}, {2, 0, 0, 0, 0x52, 2}}
	rd := policy.MustParseGUID("{11111111-2222-3333-4444-000000000006}")
	ctx := context.Background()
	var clients [2]*provider.Client
	for i := range 2 {
		c := startHostGSO(t, hosts[i], under[i], gso)
		clients[i] = c
		check := func(_ any, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		if encap == policy.EncapVXLAN {
			check(c.AddVirtualSubnet(ctx, policy.VirtualSubnet{VirtualSubnetID: 5001, Encapsulation: encap}))
		}
		check(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}))
		for j := range 2 {
			check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca[j], VirtualSubnetID: 5001, MACAddress: mac[j], ProviderAddress: pa[j], Rule: policy.TranslationMethodEncap}))
		}
		check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa[i], PrefixLength: 24}))
		vmNIC(t, b.hosts[i], b.taps[i], vms[i], mac[i])
		check(c.AttachPort(ctx, provider.PortSpec{Name: "vm", Interface: b.taps[i], MACAddress: mac[i],
			VirtualSubnetID: 5001, CustomerAddresses: []netip.Addr{ca[i]}}))
		run(t, "ip", "-n", vms[i], "addr", "add", ca[i].String()+"/24", "dev", "eth0")
	}
	for i := range 2 {
		waitPreferred(t, clients[i], pa[i])
	}

	data := tcpTransfer(t, vms[0], vms[1], ca[1], 16<<20)
	// The sender's port saw super-frames: fewer frames than 16 MiB of
	// 1400-byte segments.
	p, err := clients[0].Port(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	if p.Counters.RxFrames > uint64(len(data)/1400/2) {
		t.Errorf("sender port read %d frames for %d bytes: no TSO super-frames", p.Counters.RxFrames, len(data))
	}
	cs, err := clients[0].Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkPaths(t, cs, gso)
}

// checkPaths checks which path carried a flow's super-frames: the kernel
// fast path, or (with WNV_FAST_PATH=off) the slow path, through the GSO TAP
// gso where there is one.
func checkPaths(t *testing.T, cs provider.Counters, gso string) {
	t.Helper()
	if os.Getenv("WNV_FAST_PATH") != "off" {
		if cs.Paths == nil || cs.Paths.KernelFromPorts == 0 || cs.Paths.KernelFromUnderlay == 0 {
			t.Errorf("path counters %+v: the kernel fast path carried nothing", cs.Paths)
		}
		return
	}
	switch g := cs.GSO; {
	case gso == "" && g != nil:
		t.Errorf("counters show tunnel GSO %+v on a host without it", *g)
	case gso != "" && (g == nil || g.Redirected == 0 || g.Dropped != 0 || g.Refused != 0):
		t.Errorf("tunnel GSO counters = %+v: want super-frames redirected, none dropped or refused", g)
	}
}

// tcpTransfer streams size bytes of a pattern over TCP from namespace from
// to addr in namespace to, checks that every byte arrived, and returns the
// data.
func tcpTransfer(t *testing.T, from, to string, addr netip.Addr, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*131 + i>>12)
	}
	want := sha256.Sum256(data)
	var ln net.Listener
	if err := inNetns(to, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(addr.String(), "7009"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	if err := inNetns(from, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr.String(), "7009"), 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = io.Copy(c, bytes.NewReader(data))
		return err
	}); err != nil {
		t.Fatalf("TCP %s -> %s: %v", from, addr, err)
	}
	select {
	case h := <-got:
		if h != want {
			t.Fatalf("TCP %s -> %s: the receiver got different bytes", from, addr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("TCP %s -> %s: the receiver did not finish", from, addr)
	}
	return data
}
