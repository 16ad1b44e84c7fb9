package dataplane

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A VM's NIC outlives the daemon's queue: CloseQueue leaves the interface and
// its address, a second OpenTAP attaches to it (as the destination of a
// migration or a restarted wnvd does) and carries frames, and Close deletes it.
func TestTAPQueueCloseKeepsTheInterfaceAndReattaches(t *testing.T) {
	needRoot(t)
	s := suffix()
	vmNS := "wnvvm" + s
	ns := newNamedNS(t, vmNS)
	cfg := TAPConfig{Name: "wt" + s, Netns: vmNS, IfName: "eth0", MAC: vmMAC, MTU: 1400}
	first, err := OpenTAP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.Reattached() {
		t.Error("a freshly created TAP reports Reattached")
	}
	h := nsHandle(t, ns)
	addNoDAD(t, h, "eth0", netip.MustParsePrefix("10.0.0.2/24"))
	if err := first.CloseQueue(); err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 is gone after CloseQueue: %v", err)
	}
	addrs, _ := h.AddrList(link, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IP.String() != "10.0.0.2" {
		t.Errorf("eth0 addresses after CloseQueue = %v, want 10.0.0.2", addrs)
	}

	bad := cfg
	bad.MAC = peerMAC
	if tap, err := OpenTAP(bad); err == nil || !strings.Contains(err.Error(), "already exists with MAC") {
		if tap != nil {
			tap.CloseQueue()
		}
		t.Fatalf("OpenTAP with another MAC over the existing eth0 = %v, want a MAC error", err)
	}

	cfg.MTU = 1300 // ignored: a re-attached NIC keeps its state
	second, err := OpenTAP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Reattached() || second.Name() != "eth0" || second.Netns() != vmNS {
		t.Errorf("Reattached, Name, Netns = %v, %q, %q; want true, eth0, %q", second.Reattached(), second.Name(), second.Netns(), vmNS)
	}
	if l, _ := h.LinkByName("eth0"); l == nil || l.Attrs().MTU != 1400 || l.Attrs().Index != link.Attrs().Index {
		t.Errorf("re-attaching changed eth0: %+v", l)
	}
	var sock int
	inNS(t, ns, func() (err error) { sock, err = packetSocket("eth0"); return })
	frame := arpRequest(peerMAC, netip.MustParseAddr("10.0.0.2"))
	if n, err := second.WriteBatch([][]byte{frame}); n != 1 || err != nil {
		t.Fatalf("WriteBatch on the re-attached queue = %d, %v", n, err)
	}
	buf := make([]byte, 2048)
	for {
		n, err := readFd(sock, buf)
		if err != nil {
			t.Fatalf("eth0 never received the frame written to the re-attached queue: %v", err)
		}
		if bytes.Equal(buf[:n], frame) {
			break
		}
	}
	closeFd(sock)

	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := h.LinkByName("eth0"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("eth0 still exists 2s after Close of the re-attached queue")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readFd(fd int, buf []byte) (int, error) { return unix.Read(fd, buf) }
func closeFd(fd int)                         { unix.Close(fd) }
