package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/offload"
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

// portBed is a VM namespace whose eth0 is one end of a veth pair, and a host
// namespace holding the other end, the port's interface.
type portBed struct {
	host, vm  netns.NsHandle
	hh, vh    *netlink.Handle
	ifname    string
	vmIfindex int
}

func newPortBed(t *testing.T) *portBed {
	t.Helper()
	needRoot(t)
	s := suffix()
	b := &portBed{ifname: "wpt" + s}
	b.host, b.vm = newNamedNS(t, "wpth"+s), newNamedNS(t, "wptv"+s)
	b.hh, b.vh = nsHandle(t, b.host), nsHandle(t, b.vm)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: b.ifname, Namespace: netlink.NsFd(b.host)},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(b.vm),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	eth, err := b.vh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.vh.LinkSetHardwareAddr(eth, vmMAC[:]); err != nil {
		t.Fatal(err)
	}
	if err := b.vh.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	b.vmIfindex = eth.Attrs().Index
	return b
}

func (b *portBed) open(t *testing.T, mark uint32) *Port {
	t.Helper()
	var p *Port
	inNS(t, b.host, func() (err error) { p, err = OpenPort(PortConfig{Interface: b.ifname, Mark: mark}); return })
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPortCarriesFramesBothWays(t *testing.T) {
	b := newPortBed(t)
	p := b.open(t, 0)
	l, err := b.hh.LinkByName(b.ifname)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 || p.Ifindex() != l.Attrs().Index {
		t.Errorf("after OpenPort %s is %s with index %d, want up with index %d", b.ifname, l.Attrs().Flags, l.Attrs().Index, p.Ifindex())
	}

	// wnvd -> VM: a frame sent on the port is received by the VM's eth0.
	var sock int
	inNS(t, b.vm, func() (err error) { sock, err = packetSocket("eth0"); return })
	defer unix.Close(sock)
	frame := arpRequest(peerMAC, netip.MustParseAddr("10.0.0.2"))
	if n, err := p.WriteOffload([]OffloadFrame{{Head: frame}}); n != 1 || err != nil {
		t.Fatalf("WriteOffload = %d, %v", n, err)
	}
	if _, err := p.WriteBatch([][]byte{frame}); err == nil {
		t.Error("WriteBatch on a port succeeded: its frames need a virtio-net header")
	}
	buf := make([]byte, 2048)
	for {
		n, err := unix.Read(sock, buf)
		if err != nil {
			t.Fatalf("eth0 never received the frame sent on the port: %v", err)
		}
		if bytes.Equal(buf[:n], frame) {
			break
		}
	}

	// VM -> wnvd: UDP datagrams the VM sends come out of ReadBatch behind a
	// virtio-net header, and what wnvd sent is not read back.
	addNoDAD(t, b.vh, "eth0", netip.MustParsePrefix("10.0.0.2/24"))
	if err := b.vh.NeighAdd(&netlink.Neigh{LinkIndex: b.vmIfindex, State: netlink.NUD_PERMANENT,
		IP: net.IPv4(10, 0, 0, 9), HardwareAddr: peerMAC[:]}); err != nil {
		t.Fatal(err)
	}
	payloads := []string{"wnv-0", "wnv-1", "wnv-2"}
	inNS(t, b.vm, func() error {
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
	bufs, sizes := make([][]byte, 16), make([]int, 16)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	timer := time.AfterFunc(5*time.Second, func() { p.Close() })
	defer timer.Stop()
	var seen []string
	for len(seen) < len(payloads) {
		n, err := p.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatalf("ReadBatch after %q: %v", seen, err)
		}
		for i := range n {
			if _, err := offload.ParseVirtioNetHdr(bufs[i][:sizes[i]]); err != nil {
				t.Fatalf("frame without a virtio-net header: %v", err)
			}
			f := bufs[i][offload.VirtioNetHdrLen:sizes[i]]
			if bytes.Equal(f, frame) {
				t.Fatal("ReadBatch returned the frame wnvd sent to the VM")
			}
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

	// Closing the port leaves the interface as it was.
	p.Close()
	if _, err := b.hh.LinkByName(b.ifname); err != nil {
		t.Errorf("%s is gone after Close: %v", b.ifname, err)
	}
}

// With a mark, the socket takes only frames the fast path re-injected with
// it: frames the VM sends without one are not read.
func TestPortWithMarkTakesOnlyMarkedFrames(t *testing.T) {
	b := newPortBed(t)
	marked, all := b.open(t, 0x574e5601), b.open(t, 0)
	frame := arpRequest(vmMAC, netip.MustParseAddr("10.0.0.2"))
	var sock int
	inNS(t, b.vm, func() (err error) { sock, err = packetSocket("eth0"); return })
	defer unix.Close(sock)
	bufs, sizes := [][]byte{make([]byte, 2048)}, make([]int, 1)
	// The unfiltered socket proves the frame arrived.
	for {
		if _, err := unix.Write(sock, frame); err != nil {
			t.Fatal(err)
		}
		n, err := all.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && bytes.Equal(bufs[0][offload.VirtioNetHdrLen:sizes[0]], frame) {
			break
		}
	}
	var got int
	inNS(t, b.host, func() error {
		// The filtered socket's queue is empty: a non-blocking read says so.
		n, err := unix.Read(int(marked.f.Fd()), bufs[0])
		got = n
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		return err
	})
	if got > 0 {
		t.Errorf("the marked port read an unmarked frame of %d bytes", got)
	}
}

func TestPortWriteWhileDownIsCountedNotFatal(t *testing.T) {
	b := newPortBed(t)
	p := b.open(t, 0)
	link, err := b.hh.LinkByName(b.ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.hh.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	frame := arpRequest(peerMAC, netip.MustParseAddr("10.0.0.2"))
	n, err := p.WriteOffload([]OffloadFrame{{Head: frame}, {Head: frame}})
	if n != 0 || err != nil {
		t.Fatalf("WriteOffload on a down port = %d, %v; want 0, nil", n, err)
	}
	if d := p.Stats().Dropped; d != 2 {
		t.Fatalf("Dropped = %d, want 2", d)
	}
	if err := b.hh.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	// Until the kernel's link watch activates the queue again, sends are
	// still refused; then they go through.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := p.WriteOffload([]OffloadFrame{{Head: frame}})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("WriteOffload still refused 10s after the port came back up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPortCloseUnblocksRead(t *testing.T) {
	b := newPortBed(t)
	p := b.open(t, 0)
	// The VM's eth0 down sends nothing more; queued frames (IPv6 DAD, MLD)
	// are read first, then the read blocks until Close.
	eth, _ := b.vh.LinkByName("eth0")
	b.vh.LinkSetDown(eth)
	bufs, sizes := [][]byte{make([]byte, 2048)}, make([]int, 1)
	wantCloseUnblocks(t, func() error { _, err := p.ReadBatch(bufs, sizes); return err }, p.Close)
}

func TestPortBatchesDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items, so allocations are not representative")
	}
	b := newPortBed(t)
	p := b.open(t, 0)
	var sock int
	inNS(t, b.vm, func() (err error) { sock, err = packetSocket("eth0"); return })
	defer unix.Close(sock)
	frame := arpRequest(vmMAC, netip.MustParseAddr("10.0.0.2"))
	out := []OffloadFrame{{Head: frame}, {Head: frame}, {Head: frame}, {Head: frame}}
	bufs, sizes := make([][]byte, 8), make([]int, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	roundTrip := func() {
		if n, err := p.WriteOffload(out); n != len(out) || err != nil {
			t.Fatalf("WriteOffload = %d, %v", n, err)
		}
		if _, err := unix.Write(sock, frame); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ReadBatch(bufs, sizes); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	if allocs := testing.AllocsPerRun(50, roundTrip); allocs != 0 {
		t.Errorf("%.1f allocations per batch, want 0", allocs)
	}
}

func TestOpenPortNamesWhatIsWrong(t *testing.T) {
	needRoot(t)
	s := suffix()
	ns := newNamedNS(t, "wptx"+s)
	h := nsHandle(t, ns)
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "wptd" + s}}); err != nil {
		t.Fatal(err)
	}
	inNS(t, ns, func() error {
		_, err := OpenPort(PortConfig{Interface: "wptnone" + s})
		var nf *LinkNotFoundError
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), "wptnone"+s) {
			t.Errorf("OpenPort of a missing interface = %v, want a LinkNotFoundError naming it", err)
		}
		_, err = OpenPort(PortConfig{Interface: "wptd" + s})
		if err == nil || !strings.Contains(err.Error(), "TAP or the host end of a veth") {
			t.Errorf("OpenPort of a bridge = %v, want a refusal naming what a port may be", err)
		}
		if err := netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "wptu" + s}, Mode: netlink.TUNTAP_MODE_TUN, Flags: netlink.TUNTAP_NO_PI}); err != nil {
			return err
		}
		_, err = OpenPort(PortConfig{Interface: "wptu" + s})
		if err == nil || !strings.Contains(err.Error(), "is a TUN device") {
			t.Errorf("OpenPort of a TUN device = %v, want a refusal: it carries no Ethernet frames", err)
		}
		return nil
	})
}

func TestTAPPersistsForARestartedDaemon(t *testing.T) {
	needRoot(t)
	ns := newNamedNS(t, "wptt"+suffix())
	var first, second *TAP
	inNS(t, ns, func() (err error) { first, err = OpenTAP("wtgso", true); return })
	if first.Reattached() {
		t.Error("a freshly created TAP reports Reattached")
	}
	// A killed daemon's queue closes without clearing persistence.
	first.closeFile()
	inNS(t, ns, func() (err error) { second, err = OpenTAP("wtgso", true); return })
	if !second.Reattached() {
		t.Error("OpenTAP over the TAP a killed daemon left does not report Reattached")
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	h := nsHandle(t, ns)
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := h.LinkByName("wtgso"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("wtgso still exists 2s after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRemoveTAPDeletesOnlyATAPLeftBehind(t *testing.T) {
	needRoot(t)
	s := suffix()
	ns := newNamedNS(t, "wptr"+s)
	h := nsHandle(t, ns)
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "wptb" + s}}); err != nil {
		t.Fatal(err)
	}
	var tap *TAP
	inNS(t, ns, func() (err error) { tap, err = OpenTAP("wptg"+s, true); return })
	tap.closeFile() // a killed daemon: the persistent TAP stays
	inNS(t, ns, func() error {
		if ok, err := RemoveTAP("wptg" + s); !ok || err != nil {
			t.Errorf("RemoveTAP of the TAP left behind = %v, %v; want it removed", ok, err)
		}
		if ok, err := RemoveTAP("wptg" + s); ok || err != nil {
			t.Errorf("RemoveTAP of a TAP already gone = %v, %v; want nothing to do", ok, err)
		}
		if ok, err := RemoveTAP("wptb" + s); ok || err == nil || !strings.Contains(err.Error(), "left alone") {
			t.Errorf("RemoveTAP of a bridge = %v, %v; want it left alone with an error", ok, err)
		}
		return nil
	})
	if _, err := h.LinkByName("wptg" + s); err == nil {
		t.Error("the TAP still exists after RemoveTAP")
	}
	if _, err := h.LinkByName("wptb" + s); err != nil {
		t.Errorf("the bridge is gone after RemoveTAP refused it: %v", err)
	}
}
