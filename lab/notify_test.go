package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// watcher runs an event consumer and keeps the lines it prints.
type watcher struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func startWatcher(t *testing.T, env []string, argv ...string) *watcher {
	t.Helper()
	w := &watcher{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	w.cmd.Env = append(os.Environ(), env...)
	w.cmd.Stderr = testWriter{t}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *watcher) stop() []string {
	if w.cmd.Process != nil {
		w.cmd.Process.Kill()
	}
	<-w.done
	w.cmd.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

// snapshot is what the consumer printed so far.
func (w *watcher) snapshot() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

// waitUntil polls cond until it holds, failing after a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
	}
}

func count(lines []string, want string) int {
	n := 0
	for _, l := range lines {
		if l == want {
			n++
		}
	}
	return n
}

// buildWnvwatch compiles the C sample consumer against the C library.
func buildWnvwatch(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("needs gcc: builds the C sample consumer")
	}
	dir := t.TempDir()
	out, err := exec.Command("make", "-C", "../capi", "BUILD="+dir, filepath.Join(dir, "wnvwatch")).CombinedOutput()
	if err != nil {
		t.Fatalf("building wnvwatch: %v\n%s", err, out)
	}
	return filepath.Join(dir, "wnvwatch")
}

// TestNotificationsInTheLab checks the notification API against a running
// lab host: policy mismatches seen by the C sample and by wnvctl, provider
// address DAD states, and customer addresses of attached and detached ports.
func TestNotificationsInTheLab(t *testing.T) {
	needRoot(t)
	wnvwatch := buildWnvwatch(t)
	l := upLab(t, staticDefault())
	ctx := context.Background()
	sock := l.notifySocket("host1")
	host1 := l.Client("host1")

	t.Run("PolicyMismatchOncePerDedupWindow", func(t *testing.T) {
		before, err := host1.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := startWatcher(t, []string{"WNV_NOTIFY_SOCKET=" + sock}, wnvwatch)
		g := startWatcher(t, nil, bins.wnvctl, "notify", "watch", "--notify-socket", sock, "--type", "policy-mismatch")
		// Both consumers hold a handle before the first event: the hub
		// queues what is raised after a handle opens.
		waitUntil(t, "both consumers to open a notification handle", func() bool {
			cs, err := host1.Counters(ctx)
			return err == nil && cs.NotificationHandles >= before.NotificationHandles+2
		})
		blue2, _ := l.Topology.VM("blue2")
		for _, ca := range blue2.CAs() {
			if _, err := host1.RemoveLookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca}, VirtualSubnetID: []policy.VSID{5001}}); err != nil {
				t.Fatal(err)
			}
		}
		blue1, _ := l.Topology.VM("blue1")
		for _, dst := range blue1.CAs() {
			// Four packets within one dedup window (1 s): one event each way.
			if _, got, err := l.ProbeUDP(ctx, "blue2", dst, netip.Addr{}, 4, 100*time.Millisecond); err != nil || got {
				t.Fatalf("probe blue2 -> %s: answered %v, err %v; want no answer without the record", dst, got, err)
			}
		}
		wants := []string{
			"policy-mismatch vsid=5001 ca=10.0.0.11 pa=198.18.0.2 families=2/2",
			"policy-mismatch vsid=5001 ca=fd00:0:0:1::11 pa=198.18.0.2 families=23/2",
		}
		// The C sample prints no families: it reports them as the
		// platform's AF_INET/AF_INET6, not the wire's 2/23.
		cWant := func(want string) string { return want[:strings.Index(want, " families=")] }
		waitUntil(t, "both consumers to print both events", func() bool {
			for _, want := range wants {
				if count(c.snapshot(), cWant(want)) == 0 || count(g.snapshot(), want) == 0 {
					return false
				}
			}
			return true
		})
		cLines, gLines := c.stop(), g.stop()
		for _, want := range wants {
			if n := count(cLines, cWant(want)); n != 1 {
				t.Errorf("C sample printed %q %d times, want once; it printed:\n%s", want, n, strings.Join(cLines, "\n"))
			}
			if n := count(gLines, want); n != 1 {
				t.Errorf("wnvctl notify watch printed %q %d times, want once; it printed:\n%s", want, n, strings.Join(gLines, "\n"))
			}
		}
	})

	h, err := notify.Open(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	evctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan notify.ObjectChange, 64)
	redirects := make(chan notify.Redirect, 8)
	go func() {
		for ev, err := range h.Events(evctx, notify.ObjectChangeType, notify.RedirectType) {
			switch {
			case err != nil:
			case ev.ObjectChange != nil:
				events <- *ev.ObjectChange
			case ev.Redirect != nil:
				redirects <- *ev.Redirect
			}
		}
	}()
	next := func(what string) notify.ObjectChange {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no object-change event for %s within 10 s", what)
			return notify.ObjectChange{}
		}
	}

	t.Run("ProviderAddressDAD", func(t *testing.T) {
		for _, c := range []struct {
			pa    string
			final notify.DADState
		}{
			{"198.18.0.101", notify.DADState(policy.AddressPreferred)},
			{"198.18.0.2", notify.DADState(policy.AddressDuplicate)}, // host2's PA
		} {
			pa := netip.MustParseAddr(c.pa)
			if _, err := host1.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa, PrefixLength: 15}); err != nil {
				t.Fatal(err)
			}
			var states []string
			for _, st := range []notify.DADState{notify.DADState(policy.AddressTentative), c.final} {
				ev := next("PA " + c.pa)
				if ev.ProviderAddress == nil || ev.ProviderAddress.PA != pa || ev.ProviderAddress.AddressState != st {
					t.Fatalf("PA %s: got %+v (%v), want state %v", c.pa, ev.ProviderAddress, states, st)
				}
				states = append(states, fmt.Sprint(ev.ProviderAddress.AddressState))
			}
			if _, err := host1.RemoveProviderAddresses(ctx, policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{pa}}); err != nil {
				t.Fatal(err)
			}
		}
		// blue1 still reaches blue2 at 198.18.0.2: the duplicate never became local.
		if _, got, err := l.ProbeUDP(ctx, "blue1", netip.MustParseAddr("10.0.1.10"), netip.Addr{}, 5, 500*time.Millisecond); err != nil || !got {
			t.Fatalf("blue1 -> blue3 after the DAD checks: answered %v, err %v", got, err)
		}
	})

	t.Run("CustomerAddressAddedAndDeleted", func(t *testing.T) {
		mac := packet.MAC{2, 0, 0, 0, 0x50, 9}
		ca := netip.MustParseAddr("10.0.0.99")
		h, err := handleAt(l.Topology.Namespace("host1"))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "extra9"}, PeerName: "extra9p"}); err != nil {
			t.Fatal(err)
		}
		if _, err := host1.AttachPort(ctx, provider.PortSpec{Name: "extra9", MACAddress: mac, VirtualSubnetID: 5001, CustomerAddresses: []netip.Addr{ca}}); err != nil {
			t.Fatal(err)
		}
		if err := host1.DetachPort(ctx, "extra9"); err != nil {
			t.Fatal(err)
		}
		for _, reason := range []notify.CAReason{notify.CustomerAddressAdded, notify.CustomerAddressDeleted} {
			ev := next(reason.String())
			c := ev.CustomerAddress
			if c == nil || c.NotificationReason != reason || c.CA != ca || c.MACAddress != mac || c.VirtualSubnetID != 5001 || c.PA != netip.MustParseAddr("198.18.0.1") {
				t.Fatalf("got %+v, want %v of 10.0.0.99 (VSID 5001, PA 198.18.0.1)", c, reason)
			}
		}
	})

	t.Run("RedirectFromTheOldHost", func(t *testing.T) {
		blue2, _ := l.Topology.VM("blue2")
		pa2, pa3 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
		rec := policy.LookupRecord{CustomerAddress: blue2.V4, VirtualSubnetID: 5001, MACAddress: blue2.MAC, ProviderAddress: pa2, Rule: policy.TranslationMethodEncap}
		if _, err := host1.AddLookupRecord(ctx, rec); err != nil {
			t.Fatal(err)
		}
		// host1 and host2 share a redirect key, as their agents would have
		// it from the policy server.
		key := [32]byte{7, 7, 7}
		if _, err := host1.SetRedirectKeys(ctx, []provider.RedirectKey{{LocalPA: netip.MustParseAddr("198.18.0.1"), PeerPA: pa2, Key: key}}); err != nil {
			t.Fatal(err)
		}
		// host2 says blue2's CA moved to host3: sent from host2's PA, as the old host would.
		err := InNamespace(l.Topology.Namespace("host2"), func() error {
			s, err := dataplane.ListenGRE(pa2, 0)
			if err != nil {
				return err
			}
			defer s.Close()
			msg := vswitch.BuildSignedRedirect(make([]byte, 128), 5001, blue2.V4, pa2, pa3, 1, &key)
			_, err = s.WriteBatch([]dataplane.Packet{{Buf: msg, N: len(msg), Src: pa2, Dst: netip.MustParseAddr("198.18.0.1")}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-redirects:
			if r.VirtualSubnetID != 5001 || r.CA != blue2.V4 || r.PA != pa2 || r.NewPA != pa3 {
				t.Fatalf("redirect event %+v, want 10.0.0.11 of VSID 5001 moved 198.18.0.2 -> 198.18.0.3", r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no redirect event within 5 s")
		}
		ev := next("the CA moved by the redirect")
		if c := ev.CustomerAddress; c == nil || c.NotificationReason != notify.CustomerAddressMoved || c.CA != blue2.V4 || c.PA != pa3 {
			t.Fatalf("got %+v, want customer address 10.0.0.11 moved to 198.18.0.3", c)
		}
		recs, err := host1.LookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{blue2.V4}, VirtualSubnetID: []policy.VSID{5001}})
		if err != nil || len(recs) != 1 || recs[0].ProviderAddress != pa3 {
			t.Fatalf("host1's record of 10.0.0.11 after the redirect: %+v, %v; want PA 198.18.0.3", recs, err)
		}
		cs, err := host1.Counters(ctx)
		if err != nil || cs.Migration.RedirectsApplied != 1 {
			t.Errorf("host1's migration counters %+v, %v; want 1 redirect applied", cs.Migration, err)
		}
	})
}

// TestSIGTERMLeavesForwardingAndCleanupRemovesIt stops host1's wnvd cleanly:
// its sockets and GSO TAP go, its PA and kernel fast path stay (fail static),
// the VMs' interfaces are untouched, and `wnvd host cleanup` then removes
// the PA and the pins.
func TestSIGTERMLeavesForwardingAndCleanupRemovesIt(t *testing.T) {
	needRoot(t)
	l := upLab(t, staticDefault())
	pid := l.pid("host1")
	if pid == 0 {
		t.Fatal("no pid for host1's wnvd")
	}
	before, err := handleAt(l.Topology.Namespace("host1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = before.LinkByName("wnvgso")
	before.Close()
	if err != nil {
		t.Fatalf("host1's wnvd runs without its GSO TAP wnvgso: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatal("wnvd did not exit within 10 s of SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// wnvd never owned the VMs' interfaces: both ends stay.
	for _, vm := range []string{"blue1", "red1"} {
		h, err := handleAt(l.Topology.Namespace(vm))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.LinkByName("eth0"); err != nil {
			t.Errorf("%s lost eth0 when its host's wnvd stopped: %v", vm, err)
		}
		h.Close()
	}
	h, err := handleAt(l.Topology.Namespace("host1"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, vm := range []string{"blue1", "red1"} {
		if _, err := h.LinkByName(vm); err != nil {
			t.Errorf("the host end of %s's interface is gone after wnvd stopped: %v", vm, err)
		}
	}
	if _, err := h.LinkByName("wnvgso"); err == nil {
		t.Error("the GSO TAP wnvgso is still in host1's namespace after wnvd stopped")
	}
	pa := func() bool {
		ul, err := h.LinkByName("ul0")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := h.AddrList(ul, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.IP.String() == "198.18.0.1" {
				return true
			}
		}
		return false
	}
	if !pa() {
		t.Error("PA 198.18.0.1 is gone from ul0 after wnvd stopped: forwarding did not stay in place")
	}
	if _, err := os.Stat(l.pinDir("host1")); err != nil {
		t.Errorf("host1's fast path is not pinned after wnvd stopped: %v", err)
	}
	var out bytes.Buffer
	if code, err := l.Exec("host1", []string{l.Wnvd, "host", "cleanup", "--name", "host1", "--underlay", "ul0", "--pin-dir", l.pinDir("host1")}, nil, &out, &out); err != nil || code != 0 {
		t.Fatalf("wnvd host cleanup: exit %d, %v: %s", code, err, out.String())
	}
	if pa() {
		t.Error("PA 198.18.0.1 still on ul0 after wnvd host cleanup")
	}
	if _, err := os.Stat(l.pinDir("host1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host1's fast path is still pinned after wnvd host cleanup (%v)", err)
	}
	for _, s := range []string{l.socket("host1"), l.notifySocket("host1")} {
		if _, err := os.Stat(s); err == nil {
			t.Errorf("socket %s left behind", s)
		}
	}
}
