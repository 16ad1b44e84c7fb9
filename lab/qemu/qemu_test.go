package qemu

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/packet"
)

func TestConfigCheckAndCmdline(t *testing.T) {
	c := Config{
		Name: "blue3", TAP: "tap0", MTU: 1400,
		Addrs:    []netip.Prefix{netip.MustParsePrefix("10.0.0.12/24"), netip.MustParsePrefix("fd00:0:0:1::12/64")},
		Gateways: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00:0:0:1::1")},
	}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	if c.Memory != 128 || c.MAC.IsZero() || c.MAC.IsMulticast() || c.Image == "" {
		t.Errorf("defaults not applied: %+v", c)
	}
	want := "wnv.name=blue3 wnv.mac=" + c.MAC.String() + " wnv.ip=10.0.0.12/24,fd00:0:0:1::12/64 wnv.gw=10.0.0.1,fd00:0:0:1::1 wnv.mtu=1400"
	if got := c.cmdline(); !strings.HasSuffix(got, want) || !strings.HasPrefix(got, "console=ttyS0 ") {
		t.Errorf("cmdline = %q, want console=ttyS0 ... %q", got, want)
	}
	for _, bad := range []Config{
		{Name: "two words", TAP: "t"},
		{Name: "a", TAP: ""},
		{Name: "a", TAP: "much-too-long-tap-name"},
		{Name: "a", TAP: "t", MTU: 20},
		{Name: "a", TAP: "t", Memory: 16},
		{Name: "a", TAP: "t", MAC: packet.Broadcast},
	} {
		if err := bad.check(); err == nil {
			t.Errorf("check(%+v) = nil, want an error", bad)
		}
	}
}

func TestStartWithoutImageSaysRunMakeGuest(t *testing.T) {
	if _, err := exec.LookPath(Binary); err != nil {
		t.Skipf("%s is not installed", Binary)
	}
	_, err := Start(context.Background(), Config{Name: "x", TAP: "wqgnone", Image: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "run make guest") {
		t.Fatalf("Start without an image: %v, want an error saying run make guest", err)
	}
}

// The addresses of the test's link: the guest and the host side of its TAP.
var (
	guest4  = netip.MustParseAddr("10.0.0.12")
	guest6  = netip.MustParseAddr("fd00:0:0:1::12")
	gw4     = netip.MustParseAddr("10.0.0.1")
	gw6     = netip.MustParseAddr("fd00:0:0:1::1")
	gwMAC   = "02:00:00:00:00:01" // the same on both hosts, like the lab's distributed gateway
	guestMC = packet.MAC{0x52, 0x54, 0x00, 0x00, 0x00, 0x12}
)

const (
	testTAP  = "wqgtap0"
	testName = "wqg-blue3" // distinct from the lab's VM names: an answer is this guest's
)

func TestGuestServesProbesAndLiveMigrates(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs QEMU in network namespaces")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tag := strconv.Itoa(os.Getpid() % 100000)
	nsA, nsB := newNamespace(t, "wqgA"+tag), newNamespace(t, "wqgB"+tag)

	cfg := Config{
		Name: testName, Netns: nsA, TAP: testTAP, MAC: guestMC, MTU: 1400,
		Addrs:    []netip.Prefix{netip.PrefixFrom(guest4, 24), netip.PrefixFrom(guest6, 64)},
		Gateways: []netip.Addr{gw4, gw6},
		Dir:      shortDir(t),
	}
	cfg.Detached = true
	start := time.Now()
	first := startVM(t, ctx, cfg)
	hostSide(t, nsA)
	if err := first.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot: %v from Start to %s (TCG: %v)", time.Since(start).Round(time.Millisecond), ReadyLine, !kvm())
	// The rest of the test drives the guest through a second handle, as
	// another process would: a Detached QEMU outlives its starter's handle.
	first.Close()
	src, err := Attach(ctx, cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := src.Stop(); err != nil {
			t.Error(err)
		}
	})
	if src.Pid() != first.Pid() || src.Config().MAC != guestMC || src.Config().TAP != testTAP {
		t.Fatalf("Attach found pid %d config %+v, want pid %d with the started config", src.Pid(), src.Config(), first.Pid())
	}
	if err := src.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// Probes, both families, answered by name.
	for _, a := range []netip.Addr{guest4, guest6} {
		expectProbe(t, ctx, nsA, a, testName)
	}
	// TCP into the guest: the probe's sink confirms every byte.
	for _, a := range []netip.Addr{guest4, guest6} {
		var tr probe.Transfer
		err := inNS(nsA, func() (err error) {
			tr, err = probe.TCP(ctx, netip.AddrPortFrom(a, probe.Port), 4<<20+17, netip.Addr{}, 2*time.Minute)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Responder != testName {
			t.Fatalf("TCP to %v was confirmed by %q, want %s", a, tr.Responder, testName)
		}
		t.Logf("TCP host->guest %v: %d bytes, %.0f Mbit/s", a, tr.Bytes, tr.Mbps())
	}
	// TCP out of the guest: its httpd's random blob, checked against its md5sum.
	sum := strings.Fields(run(t, ctx, src, "md5sum /www/blob"))[0]
	for _, a := range []netip.Addr{guest4, guest6} {
		got := fetchMD5(t, ctx, nsA, netip.AddrPortFrom(a, 80), "/blob")
		if got != sum {
			t.Fatalf("blob over HTTP from %v has md5 %s, the guest says %s", a, got, sum)
		}
	}
	// And the guest's wget from a host server, checked the same way.
	want := hostBlobServer(t, nsA, netip.AddrPortFrom(gw4, 8080))
	for _, a := range []netip.Addr{gw4, gw6} {
		out := run(t, ctx, src, fmt.Sprintf("wget -q -O - http://%s/blob | md5sum", netip.AddrPortFrom(a, 8080)))
		if got := strings.Fields(out)[0]; got != want {
			t.Fatalf("guest's wget from %v: md5 %s, want %s", a, got, want)
		}
	}
	if out := run(t, ctx, src, "ip -6 addr show dev eth0"); !strings.Contains(out, guest6.String()+"/64") {
		t.Fatalf("ip -6 addr in the guest lacks %v/64:\n%s", guest6, out)
	}
	if out := run(t, ctx, src, "cat /sys/class/net/eth0/mtu; hostname"); strings.Fields(out)[0] != "1400" || strings.Fields(out)[1] != testName {
		t.Fatalf("guest MTU and hostname: %q, want 1400 %s", out, testName)
	}
	// Ping both ways, both families.
	for _, a := range []netip.Addr{gw4, gw6} {
		run(t, ctx, src, "ping -c 2 -W 5 "+a.String())
	}
	for _, a := range []netip.Addr{guest4, guest6} {
		if err := inNS(nsA, func() error { return ping(ctx, a) }); err != nil {
			t.Fatal(err)
		}
	}

	// State the migration must carry: a file and the uptime counter.
	before := run(t, ctx, src, "echo state-$$ >/tmp/state; cat /tmp/state; cut -d' ' -f1 /proc/uptime")

	dcfg := cfg
	dcfg.Netns, dcfg.Dir, dcfg.Incoming = nsB, shortDir(t), true
	dst := startVM(t, ctx, dcfg)
	hostSide(t, nsB)
	if _, err := dst.Migrate(ctx, src, nil); err == nil {
		t.Fatal("a migration to a VM that is not waiting for one succeeded")
	}
	switchovers := 0
	st, err := src.Migrate(ctx, dst, func(ctx context.Context) error {
		switchovers++
		// The guest is paused on the source, not yet running on the destination.
		if s, err := src.status(ctx); err != nil || s == "running" {
			return fmt.Errorf("source status %q (%v) at the switchover, want it paused", s, err)
		}
		if s, err := dst.status(ctx); err != nil || s != "inmigrate" {
			return fmt.Errorf("destination status %q (%v) at the switchover, want inmigrate", s, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if switchovers != 1 {
		t.Errorf("the switchover ran %d times, want once", switchovers)
	}
	t.Logf("migration: %v wall clock; QEMU: total %v, setup %v, downtime %v (switchover %v), %d MiB sent",
		st.Elapsed.Round(time.Millisecond), st.Total, st.Setup, st.Downtime, st.Switchover.Round(time.Microsecond), st.Transferred>>20)
	select {
	case <-src.Exited():
	default:
		t.Fatal("the source QEMU still runs after the migration")
	}
	if err := dst.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	after := run(t, ctx, dst, "cat /tmp/state; cut -d' ' -f1 /proc/uptime")
	bf, af := strings.Fields(before), strings.Fields(after)
	if len(bf) != 2 || len(af) != 2 || af[0] != bf[0] {
		t.Fatalf("guest state before migration %q, after %q: want the same /tmp/state", before, after)
	}
	if ub, ua := mustFloat(t, bf[1]), mustFloat(t, af[1]); ua < ub {
		t.Fatalf("guest uptime went from %v to %v: not the same guest", ub, ua)
	}
	for _, a := range []netip.Addr{guest4, guest6} {
		expectProbe(t, ctx, nsB, a, testName)
	}
	err = inNS(nsB, func() error {
		_, err := probe.TCP(ctx, netip.AddrPortFrom(guest4, probe.Port), 1<<20, netip.Addr{}, 2*time.Minute)
		return err
	})
	if err != nil {
		t.Fatalf("after migration: %v", err)
	}
	run(t, ctx, dst, "ping -c 1 -W 5 "+gw6.String())
}

func TestFailedSetUpIsReportedAndTheConsoleStillRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs QEMU in network namespaces")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := newNamespace(t, "wqgF"+strconv.Itoa(os.Getpid()%100000))
	// A gateway outside every subnet of the guest: init cannot add the route.
	v := startVM(t, ctx, Config{Name: testName, Netns: ns, TAP: testTAP, Dir: shortDir(t),
		Gateways: []netip.Addr{netip.MustParseAddr("192.0.2.1")}})
	err := v.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "IPv4 gateway 192.0.2.1") {
		t.Fatalf("WaitReady = %v, want the failed gateway named", err)
	}
	// The console's shell survives failing commands, syntax errors and
	// commands that read stdin.
	for _, c := range []struct {
		cmd, out string
		status   int
	}{
		{"exit 3", "", 3},
		{"if then", "", 2},
		{"cat; echo read-nothing", "read-nothing\n", 0},
		{"printf 'no newline'", "no newline", 0},
		{"echo out; echo err >&2; false", "out\nerr\n", 1},
		{"hostname", testName + "\n", 0},
	} {
		out, err := v.Run(ctx, c.cmd)
		if c.status == 0 && err != nil || c.status != 0 && (err == nil || !strings.Contains(err.Error(), fmt.Sprintf("status %d", c.status))) {
			t.Errorf("Run(%q) error %v, want exit status %d", c.cmd, err, c.status)
		}
		if c.out != "" && out != c.out {
			t.Errorf("Run(%q) = %q, want %q", c.cmd, out, c.out)
		}
	}
	if _, err := v.Run(ctx, strings.Repeat("x", maxCommand+1)); err == nil {
		t.Error("Run accepted a command longer than the console line")
	}
}

func TestIncomingVMWaitsAndStops(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs QEMU in network namespaces")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ns := newNamespace(t, "wqgI"+strconv.Itoa(os.Getpid()%100000))
	dir := shortDir(t)
	v := startVM(t, context.Background(), Config{Name: testName, Netns: ns, TAP: testTAP, Dir: dir, Incoming: true})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := v.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady of an incoming VM without a migration = %v, want the deadline", err)
	}
	if err := v.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := v.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	select {
	case <-v.Exited():
	default:
		t.Fatal("QEMU runs after Stop")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Stop left %d files in %s", len(ents), dir)
	}
	if err := exec.Command("ip", "-n", ns, "link", "show", testTAP).Run(); err == nil {
		t.Fatalf("TAP %s outlived its QEMU", testTAP)
	}
}

func mustFloat(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// startVM starts a VM that is stopped when the test ends; a failing test
// logs its console first.
func startVM(t *testing.T, ctx context.Context, cfg Config) *VM {
	t.Helper()
	v, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("console of %s in %s:\n%s\nQEMU log:\n%s", cfg.Name, cfg.Netns, v.Console(), v.Log())
		}
		if err := v.Stop(); err != nil {
			t.Error(err)
		}
	})
	return v
}

func run(t *testing.T, ctx context.Context, v *VM, cmd string) string {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := v.Run(rctx, cmd)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, out)
	}
	return out
}

// shortDir is a run directory short enough for unix socket paths.
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "wqg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNamespace creates a named network namespace, deleted when the test ends
// (after the VMs in it, which are stopped by cleanups registered later).
func newNamespace(t *testing.T, name string) string {
	t.Helper()
	exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ip(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// hostSide gives the TAP QEMU created in ns the gateway's MAC and addresses.
func hostSide(t *testing.T, ns string) {
	t.Helper()
	ip(t, "-n", ns, "link", "set", testTAP, "address", gwMAC)
	ip(t, "-n", ns, "addr", "add", netip.PrefixFrom(gw4, 24).String(), "dev", testTAP)
	ip(t, "-n", ns, "addr", "add", netip.PrefixFrom(gw6, 64).String(), "dev", testTAP, "nodad")
}

// inNS runs fn on a thread in the named namespace; sockets it opens stay there.
func inNS(name string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // a thread in the wrong namespace must not go back to the pool
		}
	}()
	return fn()
}

// expectProbe waits until the responder at a answers UDP probes as name.
func expectProbe(t *testing.T, ctx context.Context, ns string, a netip.Addr, name string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for pctx.Err() == nil {
		var replies []probe.Reply
		err := inNS(ns, func() (err error) {
			replies, err = probe.UDP(pctx, netip.AddrPortFrom(a, probe.Port), probe.UDPOptions{Count: 1, Timeout: 2 * time.Second})
			return err
		})
		if err == nil && len(replies) == 1 {
			if replies[0].Responder != name {
				t.Fatalf("probe to %v answered by %q, want %q", a, replies[0].Responder, name)
			}
			return
		}
	}
	t.Fatalf("no probe answer from %v in %s", a, ns)
}

// fetchMD5 downloads http://to/path from inside ns and returns its md5. The
// connection is dialed on the namespace's thread: http.Transport would dial
// on another goroutine, in whatever namespace its thread is in.
func fetchMD5(t *testing.T, ctx context.Context, ns string, to netip.AddrPort, path string) string {
	t.Helper()
	var c net.Conn
	err := inNS(ns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", to.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	req, _ := http.NewRequest("GET", "http://"+to.String()+path, nil)
	req.Close = true
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatalf("GET %s from %v: %v", path, to, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s from %v: %s", path, to, resp.Status)
	}
	h := md5.New()
	if n, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("GET %s from %v after %d bytes: %v", path, to, n, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hostBlobServer serves 1 MiB of random bytes at /blob on every address of
// ns at port (the given address' port) and returns its md5.
func hostBlobServer(t *testing.T, ns string, at netip.AddrPort) string {
	t.Helper()
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	var ln net.Listener
	err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", at.Port()))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(blob) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s := md5.Sum(blob)
	return hex.EncodeToString(s[:])
}

// ping sends ICMP echo requests to a until one is answered (the host has no
// ping binary necessarily; a raw socket is enough as root).
func ping(ctx context.Context, a netip.Addr) error {
	network, typ, reply := "ip4:icmp", byte(8), byte(0)
	if a.Is6() {
		network, typ, reply = "ip6:ipv6-icmp", 128, 129 // the kernel fills in the ICMPv6 checksum
	}
	c, err := net.ListenPacket(network, "")
	if err != nil {
		return err
	}
	defer c.Close()
	id := uint16(os.Getpid())
	for seq := uint16(1); seq <= 30; seq++ {
		msg := []byte{typ, 0, 0, 0, 0, 0, 0, 0, 'w', 'q', 'g'}
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], seq)
		if !a.Is6() {
			binary.BigEndian.PutUint16(msg[2:], checksum(msg))
		}
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: a.AsSlice()}); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return err
			}
			if n >= 8 && buf[0] == reply && binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("ping %v: no echo reply", a)
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
