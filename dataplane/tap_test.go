package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
)

var (
	vmMAC   = packet.MAC{0x02, 0x15, 0x5d, 0x00, 0x00, 0x01}
	peerMAC = packet.MAC{0x02, 0x15, 0x5d, 0x00, 0x00, 0x09}
)

// packetSocket opens an AF_PACKET socket for all protocols on ifname inside
// the current namespace of the calling thread.
func packetSocket(ifname string) (int, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	tv := unix.NsecToTimeval(int64(3 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func arpRequest(src packet.MAC, target netip.Addr) []byte {
	f := arpProbe(src, target)
	copy(f[ethHeaderLen+14:ethHeaderLen+18], []byte{10, 0, 0, 1}) // sender IP: a plain request, not a probe
	return f
}

func TestTAPInNamespaceCarriesFramesBothWays(t *testing.T) {
	needRoot(t)
	s := suffix()
	vmNS := "wnvvm" + s
	ns := newNamedNS(t, vmNS)
	tap, err := OpenTAP(TAPConfig{Name: "wt" + s, Netns: vmNS, IfName: "eth0", MAC: vmMAC, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	if tap.Name() != "eth0" || tap.Netns() != vmNS {
		t.Errorf("Name, Netns = %q, %q; want eth0, %q", tap.Name(), tap.Netns(), vmNS)
	}
	if _, err := netlink.LinkByName("wt" + s); err == nil {
		t.Errorf("wt%s is still in the daemon's namespace after the move", s)
	}
	h := nsHandle(t, ns)
	link, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 in %s: %v", vmNS, err)
	}
	if a := link.Attrs(); !bytes.Equal(a.HardwareAddr, vmMAC[:]) || a.MTU != 1400 || a.Flags&net.FlagUp == 0 {
		t.Errorf("eth0 has MAC %s, MTU %d, flags %s; want %s, 1400, up", a.HardwareAddr, a.MTU, a.Flags, vmMAC)
	}

	// Daemon -> VM: a frame written to the TAP is received by eth0.
	var sock int
	inNS(t, ns, func() (err error) { sock, err = packetSocket("eth0"); return })
	defer unix.Close(sock)
	frame := arpRequest(peerMAC, netip.MustParseAddr("10.0.0.2"))
	if n, err := tap.WriteBatch([][]byte{frame}); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	buf := make([]byte, 2048)
	for {
		n, err := unix.Read(sock, buf)
		if err != nil {
			t.Fatalf("eth0 never received the frame written to the TAP: %v", err)
		}
		if bytes.Equal(buf[:n], frame) {
			break
		}
	}

	// VM -> daemon: UDP datagrams sent inside the namespace come out of ReadBatch.
	addNoDAD(t, h, "eth0", netip.MustParsePrefix("10.0.0.2/24"))
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: net.IPv4(10, 0, 0, 9), HardwareAddr: peerMAC[:]}); err != nil {
		t.Fatal(err)
	}
	payloads := []string{"wnv-0", "wnv-1", "wnv-2"}
	inNS(t, ns, func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 9999})
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range payloads {
			if _, err := c.Write([]byte(p)); err != nil {
				return err
			}
		}
		return nil
	})
	time.Sleep(20 * time.Millisecond)
	bufs, sizes := make([][]byte, 16), make([]int, 16)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	timer := time.AfterFunc(5*time.Second, func() { tap.Close() })
	defer timer.Stop()
	var seen []string
	for first := true; len(seen) < len(payloads); first = false {
		n, err := tap.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatalf("ReadBatch after %q: %v", seen, err)
		}
		if first && n < len(payloads) {
			t.Errorf("first ReadBatch returned %d frames, want all %d queued ones", n, len(payloads))
		}
		for i := range n {
			f := bufs[i][:sizes[i]]
			if len(f) < 42 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 || f[23] != unix.IPPROTO_UDP {
				continue // IPv6 router solicitations and the like
			}
			if packet.MAC(f[0:6]) != peerMAC || packet.MAC(f[6:12]) != vmMAC {
				t.Errorf("UDP frame %s -> %s, want %s -> %s", packet.MAC(f[6:12]), packet.MAC(f[0:6]), vmMAC, peerMAC)
			}
			seen = append(seen, string(f[42:]))
		}
	}
	if strings.Join(seen, ",") != strings.Join(payloads, ",") {
		t.Errorf("read payloads %q, want %q", seen, payloads)
	}

	tap.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := h.LinkByName("eth0"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("eth0 still exists in the VM namespace 2s after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTAPWriteWhileDownIsCountedNotFatal(t *testing.T) {
	needRoot(t)
	ns := newNamedNS(t, "wnvvm"+suffix())
	var tap *TAP
	inNS(t, ns, func() (err error) { tap, err = OpenTAP(TAPConfig{Name: "wtdown"}); return })
	defer tap.Close()
	h := nsHandle(t, ns)
	link, err := h.LinkByName("wtdown")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("OpenTAP left the interface down")
	}
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	frame := arpRequest(peerMAC, netip.MustParseAddr("10.0.0.2"))
	n, err := tap.WriteBatch([][]byte{frame, frame})
	if n != 0 || err != nil {
		t.Fatalf("WriteBatch on a down TAP = %d, %v; want 0, nil", n, err)
	}
	if d := tap.Stats().Dropped; d != 2 {
		t.Fatalf("Dropped = %d, want 2", d)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if n, err := tap.WriteBatch([][]byte{frame}); n != 1 || err != nil {
		t.Fatalf("WriteBatch after the TAP came back up = %d, %v; want 1, nil", n, err)
	}
}

func TestTAPCloseUnblocksRead(t *testing.T) {
	needRoot(t)
	ns := newNamedNS(t, "wnvvm"+suffix())
	var tap *TAP
	inNS(t, ns, func() (err error) { tap, err = OpenTAP(TAPConfig{}); return })
	if !strings.HasPrefix(tap.Name(), "tap") {
		t.Errorf("kernel-chosen name = %q, want tapN", tap.Name())
	}
	// A down port transmits nothing, so ReadBatch must block.
	h := nsHandle(t, ns)
	link, _ := h.LinkByName(tap.Name())
	h.LinkSetDown(link)
	// Frames the kernel queued while the port was up (IPv6 DAD, MLD) are
	// read first; then the read blocks until Close.
	bufs, sizes := [][]byte{make([]byte, 2048)}, make([]int, 1)
	wantCloseUnblocks(t, func() error { _, err := tap.ReadBatch(bufs, sizes); return err }, tap.Close)
}

func TestTAPBatchesDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items, so allocations are not representative")
	}
	needRoot(t)
	ns := newNamedNS(t, "wnvvm"+suffix())
	var tap *TAP
	var sock int
	inNS(t, ns, func() (err error) {
		if tap, err = OpenTAP(TAPConfig{Name: "wtalloc", MAC: vmMAC}); err != nil {
			return err
		}
		sock, err = packetSocket("wtalloc")
		return err
	})
	defer tap.Close()
	defer unix.Close(sock)
	frame := arpRequest(peerMAC, netip.MustParseAddr("10.0.0.2"))
	out := [][]byte{frame, frame, frame, frame}
	bufs, sizes := make([][]byte, 8), make([]int, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	roundTrip := func() {
		if n, err := tap.WriteBatch(out); n != len(out) || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		// The packet socket transmits out of the port, so ReadBatch sees it.
		if _, err := unix.Write(sock, frame); err != nil {
			t.Fatal(err)
		}
		if _, err := tap.ReadBatch(bufs, sizes); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	if allocs := testing.AllocsPerRun(50, roundTrip); allocs != 0 {
		t.Errorf("%.1f allocations per batch, want 0", allocs)
	}
}

func TestOpenTAPWithUnknownNetnsLeavesNothing(t *testing.T) {
	needRoot(t)
	name := "wt" + suffix()
	tap, err := OpenTAP(TAPConfig{Name: name, Netns: "wnv-no-such-ns"})
	if err == nil {
		tap.Close()
		t.Fatal("OpenTAP into a missing namespace succeeded")
	}
	if !strings.Contains(err.Error(), "wnv-no-such-ns") {
		t.Errorf("error %q does not name the namespace", err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("%s was left behind", name)
	}
}

func TestOpenTAPRejectsBadConfig(t *testing.T) {
	for _, cfg := range []TAPConfig{
		{Name: "a-name-that-is-too-long"},
		{IfName: "eth0-of-a-very-long-vm"},
		{MTU: 70000},
		{MTU: -1},
		{MTU: 40},
	} {
		if tap, err := OpenTAP(cfg); err == nil {
			tap.Close()
			t.Errorf("OpenTAP(%+v) succeeded, want an error", cfg)
		}
	}
}
