package dataplane

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

// wantCloseUnblocks calls read in another goroutine until it fails, lets it
// block, and checks that closing wakes it with os.ErrClosed.
func wantCloseUnblocks(t *testing.T, read func() error, close func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		for {
			if err := read(); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	close()
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("ReadBatch after Close returned %v, want os.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadBatch still blocked 2s after Close")
	}
}

func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// inNS runs fn on an OS thread that has entered ns. The thread stays locked,
// so it exits with the goroutine instead of returning to the pool in ns.
func inNS(t *testing.T, ns netns.NsHandle, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// newNamedNS creates /var/run/netns/<name> and removes it when the test ends.
func newNamedNS(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	var h netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // NewNamed moves this thread into the new namespace
		var err error
		h, err = netns.NewNamed(name)
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		netns.DeleteNamed(name)
	})
	h2 := nsHandle(t, h)
	lo, err := h2.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return h
}

func nsHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// lab is two namespaces joined by a veth pair: ifA in a, ifB in b.
type lab struct {
	a, b       netns.NsHandle
	ha, hb     *netlink.Handle
	nsA, nsB   string
	ifA, ifB   string
	macA, macB net.HardwareAddr
}

func newLab(t *testing.T) *lab {
	t.Helper()
	needRoot(t)
	s := suffix()
	l := &lab{nsA: "wnvdpa" + s, nsB: "wnvdpb" + s, ifA: "dpa" + s, ifB: "dpb" + s}
	l.a, l.b = newNamedNS(t, l.nsA), newNamedNS(t, l.nsB)
	l.ha, l.hb = nsHandle(t, l.a), nsHandle(t, l.b)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: l.ifA, Namespace: netlink.NsFd(l.a)},
		PeerName:      l.ifB,
		PeerNamespace: netlink.NsFd(l.b),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	for _, x := range []struct {
		h    *netlink.Handle
		name string
		mac  *net.HardwareAddr
	}{{l.ha, l.ifA, &l.macA}, {l.hb, l.ifB, &l.macB}} {
		link, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
		*x.mac = link.Attrs().HardwareAddr
	}
	return l
}

// addNoDAD configures an address that is usable at once, for tests that are
// not about DAD.
func addNoDAD(t *testing.T, h *netlink.Handle, ifname string, p netip.Prefix) {
	t.Helper()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: IPNet(p), Flags: unix.IFA_F_NODAD}); err != nil {
		t.Fatalf("add %s to %s: %v", p, ifname, err)
	}
}
