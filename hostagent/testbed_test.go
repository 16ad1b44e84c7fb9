package hostagent_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/lab"
	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/provider"
)

var wnvd struct {
	path string
	err  error
}

func TestMain(m *testing.M) {
	var dir string
	if os.Geteuid() == 0 {
		dir, _ = os.MkdirTemp("", "wnvagent-bin-")
		wnvd.path = filepath.Join(dir, "wnvd")
		if out, err := exec.Command("go", "build", "-o", wnvd.path, "../cmd/wnvd").CombinedOutput(); err != nil {
			wnvd.err = fmt.Errorf("go build ../cmd/wnvd: %v\n%s", err, out)
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

const serverAddr = "198.18.0.254"

// testbed is an underlay bridge namespace with the policy server on it, and
// host namespaces plugged into the bridge, all under a unique prefix.
type testbed struct {
	t      *testing.T
	prefix string
	dir    string
	mu     sync.Mutex
	procs  map[string]*exec.Cmd
	hosts  []string
	server *policyclient.Client
}

func newTestbed(t *testing.T) *testbed {
	t.Helper()
	return newTestbedPrefix(t, "wa")
}

// newTestbedPrefix is newTestbed with names starting with prefix.
func newTestbedPrefix(t *testing.T, prefix string) *testbed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if wnvd.err != nil {
		t.Fatal(wnvd.err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	tb := &testbed{t: t, prefix: prefix + hex.EncodeToString(b) + "-", dir: t.TempDir(), procs: map[string]*exec.Cmd{}}
	t.Cleanup(tb.cleanup)
	// The daemons pin their fast paths on a bpf filesystem of this test's
	// own that outlives them (ip netns exec gives each a private /sys).
	must(t, os.Mkdir(tb.bpf(), 0o700))
	must(t, unix.Mount("bpf", tb.bpf(), "bpf", 0, "mode=0700"))
	h := tb.namespace("u")
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must(t, h.LinkAdd(br))
	must(t, h.LinkSetUp(br))
	must(t, h.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(serverAddr), Mask: net.CIDRMask(15, 32)}}))
	tb.startServer()
	tb.server = tb.client()
	return tb
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (tb *testbed) ns(name string) string { return tb.prefix + name }

// namespace creates a named namespace with loopback up.
func (tb *testbed) namespace(name string) *netlink.Handle {
	tb.t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	must(tb.t, err)
	defer orig.Close()
	n, err := netns.NewNamed(tb.ns(name))
	must(tb.t, err)
	defer n.Close()
	must(tb.t, netns.Set(orig))
	h, err := netlink.NewHandleAt(n)
	must(tb.t, err)
	lo, err := h.LinkByName("lo")
	must(tb.t, err)
	must(tb.t, h.LinkSetUp(lo))
	return h
}

// addHost creates the namespace of a host plugged into the bridge as ul0.
func (tb *testbed) addHost(name string) {
	tb.t.Helper()
	tb.hosts = append(tb.hosts, name)
	h := tb.namespace(name)
	defer h.Close()
	uh, err := netlink.NewHandleAt(tb.nsHandle("u"))
	must(tb.t, err)
	defer uh.Close()
	br, err := uh.LinkByName("br0")
	must(tb.t, err)
	hn := tb.nsHandle(name)
	defer hn.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index}, PeerName: "ul0", PeerNamespace: netlink.NsFd(int(hn))}
	must(tb.t, uh.LinkAdd(veth))
	v, err := uh.LinkByName(name)
	must(tb.t, err)
	must(tb.t, uh.LinkSetUp(v))
	ul, err := h.LinkByName("ul0")
	must(tb.t, err)
	must(tb.t, h.LinkSetUp(ul))
}

func (tb *testbed) nsHandle(name string) netns.NsHandle {
	tb.t.Helper()
	n, err := netns.GetFromName(tb.ns(name))
	must(tb.t, err)
	return n
}

// addVM creates VM vm's namespace and its NIC, as a container runtime would:
// a veth pair with eth0 in the VM's namespace and the host end, named vm, in
// host's namespace, for the agent to attach when the VM is placed there.
func (tb *testbed) addVM(vm, host string, mac byte) {
	tb.t.Helper()
	vh := tb.namespace("v-" + vm)
	defer vh.Close()
	hn, vn := tb.nsHandle(host), tb.nsHandle("v-"+vm)
	defer hn.Close()
	defer vn.Close()
	h, err := netlink.NewHandleAt(hn)
	must(tb.t, err)
	defer h.Close()
	must(tb.t, h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vm, MTU: 1400}, PeerName: "eth0", PeerMTU: 1400,
		PeerHardwareAddr: net.HardwareAddr{0x02, 0x15, 0x5d, 0, 0, mac}, PeerNamespace: netlink.NsFd(int(vn))}))
	eth, err := vh.LinkByName("eth0")
	must(tb.t, err)
	must(tb.t, vh.LinkSetUp(eth))
}

// moveVM moves the host end of vm's NIC from host from to host to, as the
// destination hypervisor of a live migration creates the VM's interface.
func (tb *testbed) moveVM(vm, from, to string) {
	tb.t.Helper()
	fn, tn := tb.nsHandle(from), tb.nsHandle(to)
	defer fn.Close()
	defer tn.Close()
	h, err := netlink.NewHandleAt(fn)
	must(tb.t, err)
	defer h.Close()
	l, err := h.LinkByName(vm)
	must(tb.t, err)
	must(tb.t, h.LinkSetNsFd(l, int(tn)))
}

func (tb *testbed) spawn(name, ns string, args ...string) {
	tb.t.Helper()
	logf, err := os.OpenFile(filepath.Join(tb.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(tb.t, err)
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", tb.ns(ns), wnvd.path}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	must(tb.t, cmd.Start())
	tb.mu.Lock()
	tb.procs[name] = cmd
	tb.mu.Unlock()
	go cmd.Wait()
}

// kill stops a process: SIGKILL (a crash) or SIGTERM (a clean stop).
func (tb *testbed) kill(name string, sig syscall.Signal) {
	tb.mu.Lock()
	cmd := tb.procs[name]
	delete(tb.procs, name)
	tb.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	for i := 0; i < 100 && cmd.ProcessState == nil; i++ {
		if cmd.Process.Signal(syscall.Signal(0)) != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tb *testbed) startServer() {
	tb.spawn("policy", "u", "policy", "--insecure-plain-http", "--data-dir", filepath.Join(tb.dir, "etcd"), "--listen", serverAddr+":8440")
}

func (tb *testbed) hostArgs(name string, pa string) []string {
	return []string{"host", "--name", name, "--underlay", "ul0", "--socket", tb.socket(name), "--notify-socket", filepath.Join(tb.dir, name+".notify"),
		"--policy-server", "http://" + serverAddr + ":8440", "--pa", pa, "--checkpoint", filepath.Join(tb.dir, name+".db"),
		"--log-level", "debug", "--pin-dir", tb.pinDir(name)}
}

func (tb *testbed) bpf() string { return filepath.Join(tb.dir, "bpf") }

func (tb *testbed) pinDir(host string) string { return filepath.Join(tb.bpf(), host) }

// startHost runs wnvd host with the agent in the host's namespace.
func (tb *testbed) startHost(name, pa string) {
	tb.spawn(name, name, tb.hostArgs(name, pa)...)
}

func (tb *testbed) socket(host string) string { return filepath.Join(tb.dir, host+".sock") }

func (tb *testbed) provider(host string) *provider.Client { return provider.NewClient(tb.socket(host)) }

// client returns a policy server client whose connections are made inside
// the underlay namespace (the server is not reachable from the test's own).
func (tb *testbed) client() *policyclient.Client {
	return policyclient.NewDialer("http://"+serverAddr+":8440", nil, lab.NamespaceDialer(tb.ns("u")))
}

func (tb *testbed) cleanup() {
	tb.mu.Lock()
	names := make([]string, 0, len(tb.procs))
	for n := range tb.procs {
		names = append(names, n)
	}
	tb.mu.Unlock()
	for _, n := range names {
		tb.kill(n, syscall.SIGTERM)
	}
	if tb.t.Failed() {
		for _, n := range names {
			if b, err := os.ReadFile(filepath.Join(tb.dir, n+".log")); err == nil {
				tb.t.Logf("--- %s.log (last 4000 bytes)\n%s", n, tail(b, 4000))
			}
		}
	}
	// A stopped wnvd leaves its fast path pinned (fail static): remove it.
	for _, h := range tb.hosts {
		out, err := exec.Command("ip", "netns", "exec", tb.ns(h), wnvd.path, "host", "cleanup", "--name", h, "--underlay", "ul0", "--pin-dir", tb.pinDir(h)).CombinedOutput()
		if err != nil {
			tb.t.Errorf("wnvd host cleanup on %s: %v\n%s", h, err, out)
		}
	}
	if err := unix.Unmount(tb.bpf(), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		tb.t.Errorf("unmount %s: %v", tb.bpf(), err)
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tb.prefix) {
			netns.DeleteNamed(e.Name())
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// eventually retries fn until it succeeds or the timeout passes.
func (tb *testbed) eventually(what string, timeout time.Duration, fn func() error) {
	tb.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEcho waits until a probe from p is echoed.
func (tb *testbed) waitEcho(what string, p *prober) {
	tb.t.Helper()
	tb.eventually(what, 15*time.Second, func() error {
		if !p.roundTrip(200 * time.Millisecond) {
			return errors.New("no echo within 200ms")
		}
		return nil
	})
}

// configureVM gives the VM's eth0 its CA.
func (tb *testbed) configureVM(vm string, ca netip.Prefix) {
	tb.t.Helper()
	n := tb.nsHandle("v-" + vm)
	defer n.Close()
	h, err := netlink.NewHandleAt(n)
	must(tb.t, err)
	defer h.Close()
	tb.eventually("eth0 of "+vm, 10*time.Second, func() error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			return errors.New("eth0 is down")
		}
		return h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ca.Addr().AsSlice(), Mask: net.CIDRMask(ca.Bits(), 32)}})
	})
}

// echo answers UDP datagrams on port 7 inside the VM's namespace until the
// test ends.
func (tb *testbed) echo(vm string) {
	tb.t.Helper()
	var c *net.UDPConn
	must(tb.t, lab.InNamespace(tb.ns("v-"+vm), func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 7})
		return err
	}))
	tb.t.Cleanup(func() { c.Close() })
	probe.Deepen(c)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			c.WriteToUDP(buf[:n], from)
		}
	}()
}

// prober sends numbered UDP datagrams from a VM and collects the echoes.
type prober struct {
	c    *net.UDPConn
	mu   sync.Mutex
	seen map[uint64]time.Time
	last uint64 // the last sequence number roundTrip used
}

func (tb *testbed) prober(vm string, to netip.Addr) *prober {
	tb.t.Helper()
	var c *net.UDPConn
	must(tb.t, lab.InNamespace(tb.ns("v-"+vm), func() (err error) {
		c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: to.AsSlice(), Port: 7})
		return err
	}))
	tb.t.Cleanup(func() { c.Close() })
	probe.Deepen(c)
	p := &prober{c: c, seen: map[uint64]time.Time{}}
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if n >= 8 {
				p.mu.Lock()
				p.seen[binary.BigEndian.Uint64(buf)] = time.Now()
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func (p *prober) send(seq uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	p.c.Write(b[:])
}

func (p *prober) got(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.seen[seq]
	return ok
}

// roundTrip sends one datagram with a sequence number not used before, so
// that an old echo cannot answer it, and waits up to timeout for its echo.
func (p *prober) roundTrip(timeout time.Duration) bool {
	p.mu.Lock()
	p.last++
	seq := p.last
	p.mu.Unlock()
	p.send(seq)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.got(seq) {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// blueNetwork creates a tenant, routing domain and subnet 10.0.0.0/24 (VSID 5001).
func (tb *testbed) blueNetwork(ctx context.Context) {
	tb.t.Helper()
	cid := policy.MustParseGUID("{aaaaaaaa-0000-0000-0000-000000000001}")
	rd := policy.MustParseGUID("{11111111-2222-3333-4444-000000000001}")
	tb.eventually("policy server up", 20*time.Second, func() error {
		_, err := tb.server.CreateTenant(ctx, policyapi.Tenant{CustomerID: cid, Name: "blue"})
		if errors.Is(err, policy.ErrExists) {
			return nil
		}
		return err
	})
	_, err := tb.server.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rd, CustomerID: cid, Name: "blue"})
	must(tb.t, err)
	_, err = tb.server.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5001, RoutingDomainID: rd, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}})
	must(tb.t, err)
}

// waitHosts waits until the hosts are registered.
func (tb *testbed) waitHosts(ctx context.Context, names ...string) {
	tb.t.Helper()
	for _, n := range names {
		tb.eventually("host "+n+" registered", 15*time.Second, func() error {
			_, err := tb.server.Host(ctx, n)
			return err
		})
	}
}

func (tb *testbed) createVM(ctx context.Context, name, host string, mac byte, ca string) {
	tb.t.Helper()
	_, err := tb.server.CreateVM(ctx, policyapi.VM{Name: name, MACAddress: [6]byte{0x02, 0x15, 0x5d, 0, 0, mac}, CustomerAddresses: []netip.Addr{netip.MustParseAddr(ca)}, VirtualSubnetID: 5001, Host: host})
	must(tb.t, err)
}

// hostsAB starts hosts h1..hN with agents (PA 198.18.0.i), VM a on h1 and b
// on h2 (b echoes), and returns a prober from a to b once traffic flows.
// With staticSender, h1 runs without an agent and is provisioned by hand, so
// it learns nothing by watch: only the old host's forwarding and redirect
// can move its traffic.
func hostsAB(t *testing.T, ctx context.Context, n int, staticSender bool) (*testbed, *prober) {
	tb := newTestbed(t)
	var hosts []string
	for i := 1; i <= n; i++ {
		hosts = append(hosts, fmt.Sprintf("h%d", i))
		tb.addHost(hosts[i-1])
	}
	tb.addVM("a", "h1", 0x0a)
	tb.addVM("b", "h2", 0x0b)
	if staticSender {
		tb.spawn("h1", "h1", "host", "--name", "h1", "--underlay", "ul0", "--socket", tb.socket("h1"), "--notify-socket", filepath.Join(tb.dir, "h1.notify"),
			"--pin-dir", tb.pinDir("h1"))
	} else {
		tb.startHost("h1", "198.18.0.1/15")
	}
	for i := 2; i <= n; i++ {
		tb.startHost(hosts[i-1], fmt.Sprintf("198.18.0.%d/15", i))
	}
	tb.blueNetwork(ctx)
	if staticSender {
		_, err := tb.server.RegisterHost(ctx, policyapi.Host{Name: "h1", ProviderAddresses: []netip.Addr{pa1}, TTLSeconds: 3600})
		must(t, err)
	}
	tb.waitHosts(ctx, hosts...)
	tb.createVM(ctx, "a", "h1", 0x0a, "10.0.0.10")
	tb.createVM(ctx, "b", "h2", 0x0b, "10.0.0.11")
	if staticSender {
		h1 := tb.provider("h1")
		tb.eventually("h1 answers", 10*time.Second, func() error {
			_, err := h1.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa1, PrefixLength: 15})
			return err
		})
		_, err := h1.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-000000000001}"),
			VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")})
		must(t, err)
		for _, r := range []struct {
			ca  string
			mac byte
			pa  netip.Addr
		}{{"10.0.0.10", 0x0a, pa1}, {"10.0.0.11", 0x0b, pa2}} {
			_, err := h1.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: netip.MustParseAddr(r.ca), VirtualSubnetID: 5001,
				MACAddress: [6]byte{0x02, 0x15, 0x5d, 0, 0, r.mac}, ProviderAddress: r.pa, Rule: policy.TranslationMethodEncap})
			must(t, err)
		}
		_, err = h1.AttachPort(ctx, provider.PortSpec{Name: "a", Interface: "a", MACAddress: [6]byte{0x02, 0x15, 0x5d, 0, 0, 0x0a},
			VirtualSubnetID: 5001, CustomerAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.10")}})
		must(t, err)
		// The redirect keys its agent would hand it, so that the old
		// host's signed redirects are accepted.
		keys, err := tb.server.RedirectKeys(ctx, "h1")
		must(t, err)
		wnvdKeys := make([]provider.RedirectKey, len(keys))
		for i, k := range keys {
			wnvdKeys[i].LocalPA, wnvdKeys[i].PeerPA = k.LocalPA, k.PeerPA
			copy(wnvdKeys[i].Key[:], k.Key)
		}
		_, err = h1.SetRedirectKeys(ctx, wnvdKeys)
		must(t, err)
	}
	tb.configureVM("a", netip.MustParsePrefix("10.0.0.10/24"))
	tb.configureVM("b", netip.MustParsePrefix("10.0.0.11/24"))
	tb.echo("b")
	p := tb.prober("a", netip.MustParseAddr("10.0.0.11"))
	tb.waitEcho("a reaches b", p)
	return tb, p
}
