package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seenSource sends one UDP datagram from namespace from to addr:7010 and
// returns the source address a listener in the external namespace saw.
func seenSource(t *testing.T, l *Lab, from string, to netip.Addr) (netip.Addr, bool) {
	t.Helper()
	var pc net.PacketConn
	err := InNamespace(l.Topology.Namespace(ExternalName), func() (err error) {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(to.String(), "7010"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for range 20 {
		InNamespace(l.Topology.Namespace(from), func() error {
			c, err := net.Dial("udp", net.JoinHostPort(to.String(), "7010"))
			if err == nil {
				c.Write([]byte("x"))
				c.Close()
			}
			return err
		})
		pc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		buf := make([]byte, 16)
		if _, a, err := pc.ReadFrom(buf); err == nil {
			return a.(*net.UDPAddr).AddrPort().Addr().Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// TestEdgeGateways: Blue's forwarding gateway both ways (IPv4 and IPv6),
// Red's NAT gateway with the same CAs on the same gateway host, kept apart,
// and a flow through the gateway that outlives kill -9 of its host's wnvd.
func TestEdgeGateways(t *testing.T) {
	needRoot(t)
	l := newTestLabPrefix(t, Default().WithEdge(), "wgx")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := l.Up(ctx); err != nil {
		t.Fatalf("Up: %v", err)
	}
	ext4, ext6 := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8:e::1")
	blue1, _ := l.Topology.VM("blue1")
	blue3, _ := l.Topology.VM("blue3")

	t.Run("ForwardingBothWays", func(t *testing.T) {
		reachable(t, l, "blue1", ext4, ExternalName, 30*time.Second)
		reachable(t, l, "blue1", ext6, ExternalName, 10*time.Second)
		reachable(t, l, "blue3", ext4, ExternalName, 10*time.Second)
		reachable(t, l, ExternalName, blue1.V4, "blue1", 10*time.Second)
		reachable(t, l, ExternalName, blue1.V6, "blue1", 10*time.Second)
		reachable(t, l, ExternalName, blue3.V4, "blue3", 10*time.Second)
		if src, ok := seenSource(t, l, "blue1", ext4); !ok || src != blue1.V4 {
			t.Errorf("the outside saw blue1 as %v (answered %v), want its CA %v unchanged", src, ok, blue1.V4)
		}
	})

	t.Run("NATForATenantWithTheSameCAs", func(t *testing.T) {
		reachable(t, l, "red1", ext4, ExternalName, 30*time.Second)
		reachable(t, l, "red1", ext6, ExternalName, 10*time.Second)
		reachable(t, l, "red2", ext4, ExternalName, 10*time.Second)
		if src, ok := seenSource(t, l, "red1", ext4); !ok || src != netip.MustParseAddr("203.0.113.3") {
			t.Errorf("the outside saw red1 as %v (answered %v), want Red's gateway 203.0.113.3", src, ok)
		}
		if src, ok := seenSource(t, l, "red1", ext6); !ok || src != netip.MustParseAddr("2001:db8:e::3") {
			t.Errorf("the outside saw red1 over IPv6 as %v (answered %v), want 2001:db8:e::3", src, ok)
		}
		// 10.0.0.10 is blue1's and red1's: from outside only Blue's forwards it.
		rep, ok, err := l.ProbeUDP(ctx, ExternalName, blue1.V4, netip.Addr{}, 3, 500*time.Millisecond)
		if err != nil || !ok || rep.Responder != "blue1" {
			t.Errorf("external -> 10.0.0.10 answered %v by %q (%v), want blue1 only", ok, rep.Responder, err)
		}
		// Nothing outside opens a connection through the NAT gateway.
		if _, ok, _ := l.ProbeUDP(ctx, ExternalName, netip.MustParseAddr("203.0.113.3"), netip.Addr{}, 2, 300*time.Millisecond); ok {
			t.Error("a probe to Red's gateway's external address was answered")
		}
	})

	t.Run("NATForTwoTenantsWithTheSameCAsThroughOneGatewayHost", func(t *testing.T) {
		green1, _ := l.Topology.VM("green1")
		red1, _ := l.Topology.VM("red1")
		if green1.V4 != red1.V4 || green1.V6 != red1.V6 {
			t.Fatalf("green1 %v %v and red1 %v %v should have the same CAs", green1.V4, green1.V6, red1.V4, red1.V6)
		}
		// IPv4 only: Green's IPv6 CAs have IPv6 PAs, and gwhost has only an
		// IPv4 PA to tunnel to them from (see printEdge).
		reachable(t, l, "green1", ext4, ExternalName, 30*time.Second)
		reachable(t, l, "green2", ext4, ExternalName, 10*time.Second)
		// Each tenant leaves through its own gateway, seen outside as it.
		for _, c := range []struct {
			vm   string
			to   netip.Addr
			want string
		}{{"green1", ext4, "203.0.113.4"}, {"red1", ext4, "203.0.113.3"}, {"red1", ext6, "2001:db8:e::3"}} {
			if src, ok := seenSource(t, l, c.vm, c.to); !ok || src != netip.MustParseAddr(c.want) {
				t.Errorf("the outside saw %s as %v (answered %v), want its tenant's gateway %s", c.vm, src, ok, c.want)
			}
		}
		// The same CA in both tenants, at once: every answer goes back to
		// the VM that asked, through its own tenant's gateway.
		errs := make(chan string, 2)
		for _, vm := range []string{"red1", "green1"} {
			go func() {
				r := stream(t, l, vm, ext4, time.Second)
				if len(r.Echoes) == 0 || r.Lost() > len(r.Echoes)/20 || !slices.Equal(r.Responders(), []string{ExternalName}) {
					errs <- fmt.Sprintf("%s -> external while the other tenant's 10.0.0.10 talks too: %d sent, %d lost, answered by %v", vm, len(r.Echoes), r.Lost(), r.Responders())
					return
				}
				errs <- ""
			}()
		}
		for range 2 {
			if e := <-errs; e != "" {
				t.Error(e)
			}
		}
		// Isolation: a tenant's probes to the CAs both have reach its own
		// VMs only; nothing outside opens a connection through either NAT.
		for _, c := range [][2]string{{"green1", "green2"}, {"red1", "red2"}} {
			v, _ := l.Topology.VM(c[1])
			for _, a := range v.CAs() {
				if rep, ok, err := l.ProbeUDP(ctx, c[0], a, netip.Addr{}, 3, 500*time.Millisecond); err != nil || !ok || rep.Responder != c[1] {
					t.Errorf("%s -> %v answered %v by %q (%v), want %s only", c[0], a, ok, rep.Responder, err, c[1])
				}
			}
		}
		for _, a := range []string{"203.0.113.4", "2001:db8:e::4"} {
			if _, ok, _ := l.ProbeUDP(ctx, ExternalName, netip.MustParseAddr(a), netip.Addr{}, 2, 300*time.Millisecond); ok {
				t.Errorf("a probe to Green's gateway's external address %s was answered", a)
			}
		}
	})

	t.Run("DemoLines", func(t *testing.T) {
		var out strings.Builder
		if n := l.printEdge(ctx, &out); n > 0 {
			t.Errorf("%d demo checks failed:\n%s", n, out.String())
		}
		if c := strings.Count(out.String(), " ok\n"); c != 7 {
			t.Errorf("%d demo checks passed, want 7 (blue1 and red1 to both external addresses, green1 to the IPv4 one, external to blue1's two CAs):\n%s", c, out.String())
		}
	})

	t.Run("SurvivesKillDashNineOfTheGatewayHostsWnvd", func(t *testing.T) {
		if os.Getenv("WNV_FAST_PATH") == "off" {
			t.Skip("needs the fast path: without it forwarding stops with wnvd")
		}
		gw := l.Client("gwhost")
		before, err := gw.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var sent, lost int
		var responders, runs []string
		go func() {
			defer close(done)
			r := stream(t, l, "blue1", ext4, 4*time.Second)
			sent, lost, responders, runs = len(r.Echoes), r.Lost(), r.Responders(), r.LostRuns()
		}()
		start := time.Now()
		time.Sleep(500 * time.Millisecond) // into the stream
		if err := l.KillHost("gwhost", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Since(start)
		if err := l.StartHost(ctx, "gwhost"); err != nil {
			t.Fatal(err)
		}
		restarted := time.Since(start)
		<-done
		t.Logf("blue1 -> external across kill -9 (dead at %v) and restart (up at %v) of gwhost's wnvd: %d sent, %d lost %v",
			killed.Round(time.Millisecond), restarted.Round(time.Millisecond), sent, lost, runs)
		// The answers leave the gateway's port in the kernel, which is what
		// carries them while wnvd is away.
		after, err := gw.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if before.Paths == nil || after.Paths == nil {
			t.Fatal("gwhost reports no path counters with the fast path on")
		}
		if k := after.Paths.KernelFromPorts - before.Paths.KernelFromPorts; int(k) < (sent-lost)/2 {
			t.Errorf("the kernel took %d frames from gwhost's ports for %d answers: the gateway's packets take the slow path", k, sent-lost)
		}
		if lost > sent/20 || !slices.Equal(responders, []string{ExternalName}) {
			t.Errorf("lost %d of %d (answered by %v), want under 5%% from external", lost, sent, responders)
		}
		reachable(t, l, "red1", ext4, ExternalName, 10*time.Second)
		reachable(t, l, ExternalName, blue1.V6, "blue1", 10*time.Second)
	})
}
