package host

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/lab"
	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// capture hands each frame arriving on interface ifname of namespace ns to
// seen, from its own goroutine, until stop.
type capture struct {
	fd   int
	done chan struct{}
}

func captureOn(t *testing.T, ns, ifname string, seen func(eth packet.Ethernet)) *capture {
	t.Helper()
	c := &capture{fd: -1, done: make(chan struct{})}
	err := inNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		idx, err := ifindexOf(ifname)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s of %s: %v", ifname, ns, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, from, err := unix.Recvfrom(c.fd, buf, 0)
			if errors.Is(err, unix.EBADF) {
				return
			}
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if eth, err := packet.ParseEthernet(buf[:n]); err == nil {
				seen(eth)
			}
		}
	}()
	return c
}

// stop ends the capture; seen is not called any more once it returns.
func (c *capture) stop() {
	unix.Close(c.fd)
	<-c.done
}

// flowCounter counts the IPv4 frames from src to dst that arrive on eth0 of
// a VM's namespace, until stop.
type flowCounter struct {
	n atomic.Int64
	c *capture
}

func countFlow(t *testing.T, vmNS string, src, dst netip.Addr) *flowCounter {
	t.Helper()
	return countFlowOn(t, vmNS, "eth0", src, dst, 0)
}

// countFlowOn counts the IPv4 packets from src to dst of protocol proto (0:
// any) that arrive on interface ifname of namespace ns.
func countFlowOn(t *testing.T, ns, ifname string, src, dst netip.Addr, proto uint8) *flowCounter {
	t.Helper()
	fc := &flowCounter{}
	fc.c = captureOn(t, ns, ifname, func(eth packet.Ethernet) {
		if eth.Type() != packet.EtherTypeIPv4 {
			return
		}
		if ip, err := packet.ParseIPv4(eth.Payload()); err == nil && ip.Src() == src && ip.Dst() == dst && (proto == 0 || ip.Protocol() == proto) {
			fc.n.Add(1)
		}
	})
	return fc
}

func (fc *flowCounter) stop() int64 {
	fc.c.stop()
	return fc.n.Load()
}

func ifindexOf(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestRecordSetMovesARunningFlowAndDetachStopsIt runs a 1 kHz stream from VM
// a on host A to VM b on host B, which has two PAs. After `lookup-record
// set` on A moves b's CA from the first PA to the second, no packet of the
// stream goes to the first (underlay capture), in the kernel's fast path as
// in the switch; after b's port is detached on B, no frame of the stream
// reaches b.
func TestRecordSetMovesARunningFlowAndDetachStopsIt(t *testing.T) {
	needRoot(t)
	b := newTwoHosts(t, "mv")
	pa := [3]netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")}
	ca := [2]netip.Addr{netip.MustParseAddr("10.8.0.10"), netip.MustParseAddr("10.8.0.11")}
	mac := [2]packet.MAC{{2, 0, 0, 0, 0x58, 1}, {2, 0, 0, 0, 0x58, 2}}
	hostPAs := [2][]netip.Addr{{pa[0]}, {pa[1], pa[2]}}
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
		check(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-000000000008}"),
			VirtualSubnetID: 8001, DestinationPrefix: netip.MustParsePrefix("10.8.0.0/24")}))
		for j, rpa := range []netip.Addr{pa[0], pa[1]} {
			check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca[j], VirtualSubnetID: 8001, MACAddress: mac[j],
				ProviderAddress: rpa, Rule: policy.TranslationMethodEncap}))
		}
		for _, p := range hostPAs[i] {
			check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: p, PrefixLength: 24}))
		}
		vmNIC(t, b.hosts[i], b.taps[i], b.vms[i], mac[i])
		check(c.AttachPort(ctx, provider.PortSpec{Name: "vm", Interface: b.taps[i], MACAddress: mac[i], VirtualSubnetID: 8001, CustomerAddresses: []netip.Addr{ca[i]}}))
		run(t, "ip", "-n", b.vms[i], "addr", "add", ca[i].String()+"/24", "dev", "eth0")
	}
	for i := range 2 {
		for _, p := range hostPAs[i] {
			waitPreferred(t, clients[i], p)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inNetns(b.vms[1], func() error {
		return probe.Serve(sctx, "b", probe.Port, slog.New(slog.NewTextHandler(io.Discard, nil)))
	})
	dst := netip.AddrPortFrom(ca[1], probe.Port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var replies []probe.Reply
		err := inNetns(b.vms[0], func() (err error) {
			replies, err = probe.UDP(ctx, dst, probe.UDPOptions{Count: 1, Timeout: 200 * time.Millisecond})
			return err
		})
		if err == nil && len(replies) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a does not reach b: %v", err)
		}
	}

	encapsulated := func() uint64 {
		cs, err := clients[0].Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range cs.VSIDs {
			if v.VirtualSubnetID == 8001 {
				return v.Encapsulated
			}
		}
		return 0
	}
	waitEncap := func(what string, n uint64) {
		t.Helper()
		want := encapsulated() + n
		deadline := time.Now().Add(20 * time.Second)
		for encapsulated() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: host A did not encapsulate %d more packets", what, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	stop := make(chan struct{})
	streamed := make(chan probe.StreamResult, 1)
	go inNetns(b.vms[0], func() error {
		r, err := probe.Stream(ctx, dst, probe.StreamOptions{Duration: time.Minute, Stop: stop})
		if err != nil {
			t.Error(err)
		}
		streamed <- r
		return err
	})
	waitEncap("the stream before the move", 200)

	moved := time.Now()
	// Both hosts learn the move: A sends to the new PA, B accepts b's
	// traffic there.
	for _, c := range clients {
		if _, err := c.SetLookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca[1]}, VirtualSubnetID: []policy.VSID{8001}},
			policy.LookupRecordChange{ProviderAddress: &pa[2]}); err != nil {
			t.Fatal(err)
		}
	}
	capt, err := lab.StartCapture(b.hosts[0], b.under[0])
	if err != nil {
		t.Fatal(err)
	}
	waitEncap("the stream after the move", 300)
	frames, _ := capt.Stop()
	var toOld, toNew int
	for _, f := range frames {
		if f.InnerSrc != ca[0] || f.InnerDst != ca[1] {
			continue
		}
		switch f.OuterDst {
		case pa[1]:
			toOld++
		case pa[2]:
			toNew++
		}
	}
	t.Logf("after lookup-record set: %d packets of the stream to the new PA %v, %d to the old PA %v", toNew, pa[2], toOld, pa[1])
	if toOld != 0 || toNew == 0 {
		t.Errorf("after lookup-record set, %d packets of the stream went to the old PA %v and %d to the new one %v: want none and some", toOld, pa[1], toNew, pa[2])
	}

	// The port's counters (port get) count both paths, as counters does.
	enc := encapsulated()
	ports, err := clients[0].Ports(ctx)
	if err != nil || len(ports) != 1 || ports[0].Counters.RxFrames < enc {
		t.Errorf("port a: %+v, %v; want RxFrames at least the %d packets host A encapsulated", ports, err, enc)
	}
	detached := time.Now()
	if err := clients[1].DetachPort(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	fc := countFlow(t, b.vms[1], ca[0], ca[1])
	waitEncap("the stream after the detach", 300)
	reached := fc.stop()
	close(stop)
	r := <-streamed
	var sent, answered int
	for _, e := range r.Echoes {
		if e.Sent.After(moved) && e.Sent.Before(detached) {
			sent++
			if e.Answered() {
				answered++
			}
		}
	}
	t.Logf("stream: %d of %d probes answered between the move and the detach; %d of its frames reached b after its port was detached", answered, sent, reached)
	if sent == 0 || answered < sent*9/10 {
		t.Errorf("b answered %d of %d probes sent between the move and the detach: the flow did not follow its CA to the new PA", answered, sent)
	}
	if reached != 0 {
		t.Errorf("%d frames of the stream reached b after its port was detached, want none", reached)
	}
}
