package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/provider"
)

// bins are wnvd and wnvctl, built once by TestMain for the namespace tests.
var bins struct {
	wnvd, wnvctl string
	err          error
}

func TestMain(m *testing.M) {
	var dir string
	if os.Geteuid() == 0 {
		var err error
		dir, err = os.MkdirTemp("", "wnvlab-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bins.wnvd, bins.wnvctl = filepath.Join(dir, "wnvd"), filepath.Join(dir, "wnvctl")
		for _, b := range []struct{ out, pkg string }{{bins.wnvctl, "../cmd/wnvctl"}, {bins.wnvd, "../cmd/wnvd"}} {
			out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput()
			if err != nil {
				bins.err = errors.Join(bins.err, fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out))
			}
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if bins.err != nil {
		t.Fatalf("the lab needs the binaries: %v", bins.err)
	}
}

// newTestLab returns a lab with a unique namespace prefix and state directory,
// removed when the test ends.
func newTestLab(t *testing.T, topo Topology) *Lab {
	t.Helper()
	return newTestLabPrefix(t, topo, "wt")
}

// newTestLabPrefix is newTestLab with namespaces named prefix+id-.
func newTestLabPrefix(t *testing.T, topo Topology, prefix string) *Lab {
	t.Helper()
	suffix := make([]byte, 3)
	rand.Read(suffix)
	id := hex.EncodeToString(suffix)
	topo.Prefix = prefix + id + "-"
	l := &Lab{
		Topology: topo,
		StateDir: filepath.Join(os.TempDir(), "wnvlab-"+id),
		Wnvd:     bins.wnvd,
		Wnvctl:   bins.wnvctl,
		Out:      testWriter{t},
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range topo.Hosts {
				t.Logf("log of %s:\n%s", h.Name, tail(l.logPath(h.Name), 30))
			}
			if !topo.Static {
				t.Logf("log of the policy server:\n%s", tail(l.logPath(serverName), 30))
			}
			dirs, _ := filepath.Glob(filepath.Join(l.StateDir, "qemu-*", "qemu.log"))
			for _, d := range dirs {
				d = filepath.Dir(d)
				t.Logf("QEMU log and console of %s:\n%s\n%s", filepath.Base(d), tail(filepath.Join(d, "qemu.log"), 10), tail(filepath.Join(d, "console.log"), 30))
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
		if left := namespacesWithPrefix(topo.Prefix); len(left) > 0 {
			t.Errorf("namespaces left after Down: %v", left)
		}
	})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func TestUnderlayConnectsHostsAndDownRemovesEverything(t *testing.T) {
	needRoot(t)
	l := newTestLab(t, Default())
	if err := os.MkdirAll(l.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.buildNetwork(); err != nil {
		t.Fatal(err)
	}
	// Stand in for the daemons: put the PAs on ul0 ourselves.
	for _, h := range l.Topology.Hosts {
		nh, err := handleAt(l.Topology.Namespace(h.Name))
		if err != nil {
			t.Fatal(err)
		}
		ul, err := nh.LinkByName("ul0")
		if err != nil {
			t.Fatal(err)
		}
		if ul.Attrs().MTU != 1500 || ul.Attrs().OperState == netlink.OperDown {
			t.Errorf("%s ul0: MTU %d state %v, want 1500 and up", h.Name, ul.Attrs().MTU, ul.Attrs().OperState)
		}
		if err := dataplane.AddAddrNoDAD(nh, ul, h.PA); err != nil {
			t.Fatal(err)
		}
		nh.Close()
	}
	if err := l.spawn("probe-host2", l.Topology.Namespace("host2"), l.Wnvctl, "probe", "serve", "--name", "host2"); err != nil {
		t.Fatal(err)
	}
	var rep probe.Reply
	var ok bool
	for range 20 { // the responder needs a moment to bind
		var err error
		rep, ok, err = l.ProbeUDP(context.Background(), "host1", netip.MustParseAddr("198.18.0.2"), netip.Addr{}, 1, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
	}
	if !ok || rep.Responder != "host2" {
		t.Fatalf("host1 -> 198.18.0.2 over the underlay: answered=%v by %q, want host2", ok, rep.Responder)
	}
	pid := l.pid("probe-host2")
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Errorf("responder %d still runs after Down", pid)
	}
	if left := namespacesWithPrefix(l.Topology.Prefix); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if _, err := os.Stat(l.StateDir); !os.IsNotExist(err) {
		t.Errorf("state directory %s still exists", l.StateDir)
	}
}

// staticDefault is the default topology provisioned per host, for tests that
// edit a host's policy directly.
func staticDefault() Topology {
	t := Default()
	t.Static = true
	return t
}

// upLab brings a lab up or fails the test with the daemons' logs.
func upLab(t *testing.T, topo Topology) *Lab {
	t.Helper()
	l := newTestLab(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := l.Up(ctx); err != nil {
		t.Fatalf("Up: %v", err)
	}
	return l
}

func requireMatrix(t *testing.T, l *Lab) {
	t.Helper()
	checks, err := l.Matrix(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if n := PrintMatrix(&out, checks); n > 0 {
		t.Errorf("%d reachability checks failed:\n%s", n, out.String())
	}
	probed := 0
	for _, c := range checks {
		if !c.Self {
			probed++
		}
	}
	if probed == 0 {
		t.Error("the matrix probed nothing")
	}
}

func TestDefaultLab(t *testing.T) {
	needRoot(t)
	l := upLab(t, staticDefault())
	ctx := context.Background()

	t.Run("UpTwiceSaysAlreadyUp", func(t *testing.T) {
		if err := l.Up(ctx); !errors.Is(err, ErrAlreadyUp) {
			t.Fatalf("second Up = %v, want ErrAlreadyUp", err)
		}
		st := l.Status(ctx)
		if !st.Up || len(st.Hosts) != 3 || len(st.VMs) != 7 {
			t.Fatalf("status = %+v, want up with 3 hosts and 7 VMs", st)
		}
		hostPAs, err := l.hostPAs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range st.Hosts {
			var want []netip.Addr
			for _, p := range hostPAs[h.Name] {
				want = append(want, p.Addr())
			}
			if !h.Alive || !sameAddrs(h.PAs, want) {
				t.Errorf("host %s: alive=%v PAs=%v, want alive with %v (its own and its IP Rewrite VMs')", h.Name, h.Alive, h.PAs, want)
			}
		}
	})

	t.Run("Matrix", func(t *testing.T) { requireMatrix(t, l) })

	t.Run("GreenRewriteOnTheUnderlay", func(t *testing.T) { requireRewrite(t, l, 256<<10) })

	t.Run("DropMonitor", func(t *testing.T) {
		var out strings.Builder
		if failed := l.DemoMonitor(ctx, &out, "blue1", 0); len(failed) > 0 {
			t.Errorf("%v\n%s", failed, out.String())
		}
	})

	t.Run("TCPAcrossHostsAndSubnets", func(t *testing.T) {
		xs := l.Transfers(ctx, 1<<20)
		var out strings.Builder
		if n := PrintTransfers(&out, xs); n > 0 || len(xs) != 8 {
			t.Errorf("%d of %d transfers failed:\n%s", n, len(xs), out.String())
		}
	})

	t.Run("UnderlayCarriesNVGRE", func(t *testing.T) {
		capt, err := StartCapture(l.Topology.Namespace("underlay"), "br0")
		if err != nil {
			t.Fatal(err)
		}
		blue2 := netip.MustParseAddr("10.0.0.11")
		_, ok, perr := l.ProbeUDP(ctx, "blue1", blue2, netip.Addr{}, 3, time.Second)
		_, terr := l.ProbeTCP(ctx, "blue1", blue2, 256<<10)
		frames, malformed := capt.Stop()
		if perr != nil || !ok || terr != nil {
			t.Fatalf("blue1 -> blue2: udp answered=%v err=%v, tcp err=%v", ok, perr, terr)
		}
		if len(malformed) > 0 {
			t.Errorf("malformed GRE on the underlay: %v", malformed)
		}
		var there, back, thereBytes int
		// FlowID is per-flow entropy: every frame of one inner 5-tuple
		// carries the same one, so ECMP keeps a flow on one path.
		type flowKey struct {
			src, dst     netip.Addr
			proto        uint8
			sport, dport uint16
		}
		flowIDs := map[flowKey]map[uint8]bool{}
		for _, f := range frames {
			if f.VSID != 5001 || f.Protocol != packet.EtherTypeTEB {
				continue
			}
			k := flowKey{f.InnerSrc, f.InnerDst, f.InnerProto, f.InnerSrcPort, f.InnerDstPort}
			if flowIDs[k] == nil {
				flowIDs[k] = map[uint8]bool{}
			}
			flowIDs[k][f.FlowID] = true
			switch {
			case f.InnerSrc.String() == "10.0.0.10" && f.InnerDst == blue2:
				there++
				thereBytes += f.Len
				if f.OuterSrc.String() != "198.18.0.1" || f.OuterDst.String() != "198.18.0.2" {
					t.Errorf("blue1 -> blue2 frame between PAs %v and %v, want 198.18.0.1 -> 198.18.0.2", f.OuterSrc, f.OuterDst)
				}
			case f.InnerSrc == blue2 && f.InnerDst.String() == "10.0.0.10":
				back++
				if f.OuterSrc.String() != "198.18.0.2" || f.OuterDst.String() != "198.18.0.1" {
					t.Errorf("blue2 -> blue1 frame between PAs %v and %v, want 198.18.0.2 -> 198.18.0.1", f.OuterSrc, f.OuterDst)
				}
			}
		}
		// The TCP stream alone is 256 KiB one way, as wire-sized packets
		// or, from the GSO TAP, as super-frames the veth carries whole.
		if thereBytes < 256<<10 || back < 2 {
			t.Errorf("captured %d blue1->blue2 NVGRE frames of %d bytes and %d blue2->blue1 frames with VSID 5001 in the key, want >=256 KiB and >=2 frames (of %d frames)", there, thereBytes, back, len(frames))
		}
		for k, ids := range flowIDs {
			if len(ids) != 1 {
				t.Errorf("flow %+v was sent with %d different FlowIDs, want one per flow", k, len(ids))
			}
		}
		if bad := l.Topology.CheckFrames(frames, malformed); len(bad) > 0 {
			t.Errorf("capture problems: %v", bad)
		}
	})

	t.Run("SpoofedSourceAddressGetsNothingThrough", func(t *testing.T) {
		h, eth := vmLink(t, l, "blue1")
		defer h.Close()
		spoof := netip.MustParsePrefix("10.0.0.99/24")
		if err := dataplane.AddAddrNoDAD(h, eth, spoof); err != nil {
			t.Fatal(err)
		}
		defer h.AddrDel(eth, &netlink.Addr{IPNet: dataplane.IPNet(spoof)})
		before := spoofDrops(t, l, "host1")
		for _, dst := range []string{"10.0.0.11", "10.0.1.10"} {
			if rep, ok, err := l.ProbeUDP(ctx, "blue1", netip.MustParseAddr(dst), spoof.Addr(), 3, 300*time.Millisecond); err != nil || ok {
				t.Errorf("blue1 from %v to %s: answered=%v by %q (err %v), want no answer", spoof.Addr(), dst, ok, rep.Responder, err)
			}
		}
		if after := spoofDrops(t, l, "host1"); after < before+3 {
			t.Errorf("spoofed drops on host1 went from %d to %d, want at least 3 more", before, after)
		}
		// The VM's own address still works: only the spoofed frames were dropped.
		if _, ok, _ := l.ProbeUDP(ctx, "blue1", netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("10.0.0.10"), 3, time.Second); !ok {
			t.Error("blue1 from its own CA got no answer after the spoofing attempt")
		}
	})

	t.Run("SpoofedMACGetsNothingThrough", func(t *testing.T) {
		h, eth := vmLink(t, l, "blue1")
		defer h.Close()
		orig := eth.Attrs().HardwareAddr
		if err := h.LinkSetHardwareAddr(eth, []byte{0x02, 0, 0, 0, 0x50, 0x99}); err != nil {
			t.Fatal(err)
		}
		defer h.LinkSetHardwareAddr(eth, orig)
		before := spoofDrops(t, l, "host1")
		for _, dst := range []string{"10.0.0.11", "fd00:0:0:1::11"} {
			if rep, ok, err := l.ProbeUDP(ctx, "blue1", netip.MustParseAddr(dst), netip.Addr{}, 3, 300*time.Millisecond); err != nil || ok {
				t.Errorf("blue1 with a foreign MAC to %s: answered=%v by %q (err %v), want no answer", dst, ok, rep.Responder, err)
			}
		}
		if after := spoofDrops(t, l, "host1"); after < before+3 {
			t.Errorf("spoofed drops on host1 went from %d to %d, want at least 3 more", before, after)
		}
	})

	t.Run("DownAfterCrash", func(t *testing.T) {
		// A daemon killed outright must not stop Down from cleaning up.
		pid := l.pid("host2")
		if err := exec.Command("kill", "-9", fmt.Sprint(pid)).Run(); err != nil {
			t.Fatal(err)
		}
		// kill is asynchronous: wait for the reaper.
		for deadline := time.Now().Add(30 * time.Second); l.IsUp(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("IsUp is still true 30 s after the daemon was killed")
			}
		}
		if err := l.Down(); err != nil {
			t.Fatal(err)
		}
		if left := namespacesWithPrefix(l.Topology.Prefix); len(left) > 0 {
			t.Errorf("namespaces left: %v", left)
		}
		for _, h := range l.Topology.Hosts {
			if p := pidsInNamespace(l.Topology.Namespace(h.Name)); len(p) > 0 {
				t.Errorf("processes left in %s: %v", h.Name, p)
			}
		}
	})
}

func vmLink(t *testing.T, l *Lab, vm string) (*netlink.Handle, netlink.Link) {
	t.Helper()
	h, err := handleAt(l.Topology.Namespace(vm))
	if err != nil {
		t.Fatal(err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	return h, eth
}

// spoofDrops sums a host's drop counters whose reason mentions spoofing.
func spoofDrops(t *testing.T, l *Lab, host string) uint64 {
	t.Helper()
	cs, err := l.Client(host).Counters(context.Background())
	if err != nil {
		t.Fatalf("counters of %s: %v", host, err)
	}
	return spoofed(cs)
}

func spoofed(cs provider.Counters) uint64 {
	var n uint64
	for _, d := range cs.Drops {
		if strings.Contains(strings.ToLower(d.Reason), "spoof") {
			n += d.Count
		}
	}
	return n
}

func TestIPv6ProviderAddresses(t *testing.T) {
	needRoot(t)
	l := upLab(t, ipv6Topology(""))
	requireMatrix(t, l)
	capt, err := StartCapture(l.Topology.Namespace("underlay"), "br0")
	if err != nil {
		t.Fatal(err)
	}
	tr, terr := l.ProbeTCP(context.Background(), "blue1", netip.MustParseAddr("fd00:0:0:2::10"), 512<<10)
	frames, malformed := capt.Stop()
	if terr != nil || tr.Responder != "blue3" {
		t.Fatalf("blue1 -> blue3 over IPv6 PAs: %+v, %v", tr, terr)
	}
	if bad := l.Topology.CheckFrames(frames, malformed); len(bad) > 0 {
		t.Errorf("capture problems: %v", bad)
	}
	for _, f := range frames {
		if !f.OuterSrc.Is6() || !f.OuterDst.Is6() {
			t.Fatalf("frame %v has an IPv4 outer header, want IPv6 PAs", f)
		}
	}
}
