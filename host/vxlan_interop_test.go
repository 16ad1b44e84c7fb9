package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// The helper process: `go test` re-runs its own binary in a host namespace
// with these variables set, and TestHelperHost runs a host there (sockets
// and TAPs act in the namespace of the thread that opens them, so a host
// cannot share a process with the test's other namespaces).
const (
	envUnderlay = "WNV_TEST_HOST_UNDERLAY" // as --underlay: names separated by commas
	envSocket   = "WNV_TEST_HOST_SOCKET"
	envGSOTAP   = "WNV_TEST_HOST_GSO_TAP"
	// envNotify, if set, is where the helper serves the notification API.
	envNotify = "WNV_TEST_HOST_NOTIFY"
	// envKeep set to 1 leaves what the host put in the kernel when it
	// stops, as a wnvd that is restarted does.
	envKeep = "WNV_TEST_HOST_KEEP"
	// envPinDir is the host's PinDir (empty: the default, under a /sys
	// that ip netns exec makes private to the helper).
	envPinDir = "WNV_TEST_HOST_PIN_DIR"
)

// TestHelperHost runs a host with its provider API until its stdin closes.
func TestHelperHost(t *testing.T) {
	underlay := os.Getenv(envUnderlay)
	if underlay == "" {
		t.Skip("helper process for the namespace tests")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	underlays, err := ParseUnderlays(underlay)
	if err != nil {
		t.Fatal(err)
	}
	hub := notify.NewHub(notify.Config{})
	h, err := New(Config{Name: "helper", Underlays: underlays, PinDir: os.Getenv(envPinDir), GSOTAP: os.Getenv(envGSOTAP), SlowPathOnly: os.Getenv("WNV_FAST_PATH") == "off",
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}, hub)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 3)
	go func() { errc <- h.Run(ctx) }()
	go func() { errc <- provider.Serve(ctx, os.Getenv(envSocket), provider.NewHandler(h)) }()
	serving := 2
	if sock := os.Getenv(envNotify); sock != "" {
		serving++
		go func() { errc <- notify.Serve(ctx, sock, hub) }()
	}
	for range serving {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if os.Getenv(envKeep) == "1" {
		return
	}
	if _, err := Cleanup(Config{Name: "helper", Underlays: underlays, PinDir: os.Getenv(envPinDir)}); err != nil {
		t.Error(err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

// twoHosts is two host namespaces joined by a veth underlay (under[i] in
// hosts[i], up), a VM namespace for each, and taps, a TAP name for each VM.
type twoHosts struct {
	hosts, vms, under, taps [2]string
}

// newTwoHosts creates them, with names starting with tag (two letters),
// removed at cleanup.
func newTwoHosts(t *testing.T, tag string) twoHosts {
	t.Helper()
	s := suffix()
	b := twoHosts{hosts: [2]string{"w" + tag + "a" + s, "w" + tag + "b" + s}, vms: [2]string{"w" + tag + "va" + s, "w" + tag + "vb" + s},
		under: [2]string{"w" + tag + "u0" + s, "w" + tag + "u1" + s}, taps: [2]string{"w" + tag + "ta" + s, "w" + tag + "tb" + s}}
	for _, ns := range append(b.hosts[:], b.vms[:]...) {
		netnsAdd(t, ns)
	}
	run(t, "ip", "link", "add", b.under[0], "netns", b.hosts[0], "type", "veth", "peer", "name", b.under[1], "netns", b.hosts[1])
	for i := range 2 {
		run(t, "ip", "-n", b.hosts[i], "link", "set", b.under[i], "up")
	}
	return b
}

// vmNIC creates a VM's NIC as a container runtime would: a veth pair whose
// end eth0 (with the VM's MAC, up) is in vmNS and whose other end, ifname,
// is in hostNS for wnvd to attach as the port.
func vmNIC(t *testing.T, hostNS, ifname, vmNS string, mac packet.MAC) {
	t.Helper()
	run(t, "ip", "link", "add", ifname, "netns", hostNS, "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", vmNS, "mtu", "1450", "address", mac.String())
	run(t, "ip", "-n", vmNS, "link", "set", "eth0", "up")
}

func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// netnsAdd creates a named namespace with loopback up, removed at cleanup.
func netnsAdd(t *testing.T, name string) {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
}

// inNetns runs fn on a locked OS thread inside the named namespace; the
// thread exits with the goroutine.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// startHost runs the helper host in namespace ns on underlay and returns a
// provider API client for it.
func startHost(t *testing.T, ns, underlay string) *provider.Client {
	t.Helper()
	return startHostGSO(t, ns, underlay, "")
}

// startHostGSO is startHost with NVGRE super-frames sent through the GRE
// GSO TAP gso (none when empty).
func startHostGSO(t *testing.T, ns, underlay, gso string) *provider.Client {
	t.Helper()
	c, _ := startHostEnv(t, ns, underlay, envGSOTAP+"="+gso)
	return c
}

// startHostEnv is startHost with more of the helper's variables; it also
// returns a function that stops the host, which cleanup does otherwise.
func startHostEnv(t *testing.T, ns, underlay string, env ...string) (*provider.Client, func()) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "wnvd.sock")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHelperHost$", "-test.v")
	cmd.Env = append(append(os.Environ(), envUnderlay+"="+underlay, envSocket+"="+sock), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stdin.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("host log:\n%s", log.String())
		}
	})
	c := provider.NewClient(sock)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := c.Global(context.Background()); err == nil {
			return c, stop
		} else if time.Now().After(deadline) {
			t.Fatalf("helper host did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probeBothWays serves probes in each namespace and checks that each side
// gets answers from the other, at each pair of CAs (a's, b's) in turn.
func probeBothWays(t *testing.T, a, b string, cas ...[2]netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// The responders are gone when this returns, so that the next call's
	// can bind their port (and are not mistaken for them while they close).
	served := make(chan error, 2)
	defer func() {
		cancel()
		for range 2 {
			if err := <-served; err != nil {
				t.Errorf("probe responder: %v", err)
			}
		}
	}()
	for _, ns := range []string{a, b} {
		go func() {
			served <- inNetns(ns, func() error {
				return probe.Serve(ctx, ns, probe.Port, slog.New(slog.NewTextHandler(io.Discard, nil)))
			})
		}()
		// The responder is up once it answers on the namespace's loopback.
		for deadline := time.Now().Add(10 * time.Second); ; {
			var replies []probe.Reply
			inNetns(ns, func() error {
				replies, _ = probe.UDP(ctx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), probe.Port), probe.UDPOptions{Count: 1, Timeout: 50 * time.Millisecond})
				return nil
			})
			if len(replies) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the probe responder in %s did not answer within 10 s", ns)
			}
		}
	}
	for _, ca := range cas {
		for _, c := range []struct {
			from, to string
			dst      netip.Addr
		}{{a, b, ca[1]}, {b, a, ca[0]}} {
			var replies []probe.Reply
			err := inNetns(c.from, func() error {
				var err error
				replies, err = probe.UDP(ctx, netip.AddrPortFrom(c.dst, probe.Port), probe.UDPOptions{Count: 5, Timeout: 500 * time.Millisecond})
				return err
			})
			if err != nil {
				t.Fatalf("probe %s -> %s: %v", c.from, c.dst, err)
			}
			if len(replies) < 4 || replies[0].Responder != c.to {
				t.Errorf("probe %s -> %s (%s): %d of 5 answered %+v, want answers from %s", c.from, c.to, c.dst, len(replies), replies, c.to)
			}
		}
	}
}

// TestVXLANInteropWithKernel: a VM behind our host and a namespace behind a
// Linux vxlan device with a static FDB entry reach each other both ways.
func TestVXLANInteropWithKernel(t *testing.T) {
	needRoot(t)
	// Super-frames leave cut into segments, or whole through the GSO TAP
	// for the kernel to cut (or, over the veth, for vx0 to take whole).
	for _, gso := range []string{"", "wnvgso"} {
		t.Run("GSO TAP "+strconv.Quote(gso), func(t *testing.T) { vxlanInterop(t, gso) })
	}
}

func vxlanInterop(t *testing.T, gso string) {
	s := suffix()
	hostNS, vmNS, kernNS := "wvxh"+s, "wvxv"+s, "wvxk"+s
	for _, ns := range []string{hostNS, vmNS, kernNS} {
		netnsAdd(t, ns)
	}
	u1, u2 := "wvu1"+s, "wvu2"+s
	run(t, "ip", "link", "add", u1, "netns", hostNS, "type", "veth", "peer", "name", u2, "netns", kernNS)
	run(t, "ip", "-n", hostNS, "link", "set", u1, "up")
	pa1, pa2 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	ca1, ca2 := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11")
	vmMAC := packet.MAC{0x02, 0, 0, 0, 0x51, 0x01}
	kernMAC := packet.MAC{0x02, 0, 0, 0, 0x51, 0x02}

	// The kernel side: PA2 on the underlay, vx0 (VNI 5001) holding CA2, a
	// static FDB entry and neighbour for the VM (no flooding, no learning).
	k := func(args ...string) { run(t, append([]string{"ip", "-n", kernNS}, args...)...) }
	k("addr", "add", pa2.String()+"/24", "dev", u2)
	k("link", "set", u2, "up")
	k("link", "add", "vx0", "type", "vxlan", "id", "5001", "dstport", "4789", "local", pa2.String(), "nolearning", "dev", u2)
	k("link", "set", "vx0", "address", kernMAC.String(), "mtu", "1450", "up")
	k("addr", "add", ca2.String()+"/24", "dev", "vx0")
	// A veth hands the inner checksum over unfinished (CHECKSUM_PARTIAL)
	// where a real NIC would fill it in; have vx0 finish it in software.
	if err := inNetns(kernNS, func() error { return txChecksumOff("vx0") }); err != nil {
		t.Fatal(err)
	}
	k("neigh", "add", ca1.String(), "lladdr", vmMAC.String(), "dev", "vx0", "nud", "permanent")
	run(t, "bridge", "-n", kernNS, "fdb", "append", vmMAC.String(), "dev", "vx0", "dst", pa1.String())

	// Our side: policy through the provider API, the VM's port in vmNS.
	c := startHostGSO(t, hostNS, u1, gso)
	ctx := context.Background()
	rd := policy.MustParseGUID("{11111111-2222-3333-4444-000000000005}")
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.AddVirtualSubnet(ctx, policy.VirtualSubnet{VirtualSubnetID: 5001, Encapsulation: policy.EncapVXLAN}))
	must(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}))
	for _, r := range []struct {
		ca, pa netip.Addr
		mac    packet.MAC
	}{{ca1, pa1, vmMAC}, {ca2, pa2, kernMAC}} {
		must(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: r.ca, VirtualSubnetID: 5001, MACAddress: r.mac, ProviderAddress: r.pa, Rule: policy.TranslationMethodEncap}))
	}
	must(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa1, PrefixLength: 24}))
	vmNIC(t, hostNS, "wvt"+s, vmNS, vmMAC)
	must(c.AttachPort(ctx, provider.PortSpec{Name: "vm1", Interface: "wvt" + s, MACAddress: vmMAC,
		VirtualSubnetID: 5001, CustomerAddresses: []netip.Addr{ca1}}))
	run(t, "ip", "-n", vmNS, "addr", "add", ca1.String()+"/24", "dev", "eth0")
	waitPreferred(t, c, pa1)

	probeBothWays(t, vmNS, kernNS, [2]netip.Addr{ca1, ca2})
	// TCP both ways: our TSO segments must pass the kernel's checksum
	// checks, and the kernel's segments our coalescing.
	tcpTransfer(t, vmNS, kernNS, ca2, 4<<20)
	tcpTransfer(t, kernNS, vmNS, ca1, 4<<20)

	cs, err := c.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkPaths(t, cs, gso)
	if t.Failed() {
		t.Logf("host counters: %+v", cs)
	}
	for _, v := range cs.VSIDs {
		if v.VirtualSubnetID == 5001 && (v.Encapsulated == 0 || v.Decapsulated == 0) {
			t.Errorf("VSID 5001 counters %+v: want frames both encapsulated and decapsulated", v)
		}
	}
	if p, err := c.Port(ctx, "vm1"); err != nil || p.MTU != 1450 {
		t.Errorf("vm1 MTU %d (%v), want 1450: the default leaves room for VXLAN", p.MTU, err)
	}
}

// txChecksumOff is `ethtool -K ifname tx off`.
func txChecksumOff(ifname string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	val := struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_STXCSUM}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&val)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return fmt.Errorf("turn off tx checksumming on %s: %w", ifname, e)
	}
	return nil
}

// waitPreferred waits for the PA to pass DAD, after which its sockets open.
func waitPreferred(t *testing.T, c *provider.Client, pa netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pas, err := c.ProviderAddresses(context.Background(), policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{pa}})
		if err == nil && len(pas) == 1 && pas[0].AddressState == policy.AddressPreferred {
			time.Sleep(100 * time.Millisecond) // sockets open right after the state is recorded
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("provider address %s did not become Preferred", pa)
}
