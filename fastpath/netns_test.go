package fastpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// lab is a set of wfp-prefixed namespaces removed when the test ends.
type lab struct {
	t      *testing.T
	suffix string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	return &lab{t: t, suffix: fmt.Sprintf("%06x", rand.Uint32()>>8)}
}

// ns creates namespace wfp-<name>-<suffix> and returns its name.
func (l *lab) ns(name string) string {
	n := "wfp-" + name + "-" + l.suffix
	l.ip("netns", "add", n)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	return n
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// link returns the ifindex and MAC of interface name in namespace ns.
func (l *lab) link(ns, name string) (int, packet.MAC) {
	l.t.Helper()
	var (
		idx int
		mac packet.MAC
	)
	l.in(ns, func() error {
		lk, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		idx = lk.Attrs().Index
		copy(mac[:], lk.Attrs().HardwareAddr)
		return nil
	})
	return idx, mac
}

// in runs fn on a thread in namespace ns. The thread is never returned to
// the pool: it ends with fn's goroutine.
func (l *lab) in(ns string, fn func() error) {
	l.t.Helper()
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		if err == nil {
			err = fn()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		l.t.Fatalf("in %s: %v", ns, err)
	}
}

// packetSocket opens an AF_PACKET socket on ifindex (in the calling
// thread's namespace), accepting only frames with SlowMark if slowOnly.
func packetSocket(ifindex int, slowOnly bool) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, err
	}
	if slowOnly {
		// ld mark; jeq SlowMark ? accept : drop: how wnvd reads a port.
		prog := []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdMark},
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: SlowMark},
			{Code: unix.BPF_RET | unix.BPF_K, K: 0x40000},
			{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	tv := unix.Timeval{Sec: 0, Usec: 200000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Ancillary data offsets of classic BPF (linux/filter.h): SKF_AD_OFF is -0x1000.
const (
	skfAdOff  = 0xfffff000
	skfAdMark = 20
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openTAP creates TAP name with virtio-net headers in the calling
// thread's namespace and returns its file descriptor and ifindex.
func openTAP(name string) (int, int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	var l netlink.Link
	if err == nil {
		l, err = netlink.LinkByName(name)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("TAP %s: %w", name, err)
	}
	return fd, l.Attrs().Index, nil
}

// pseudoSum is the folded, uncomplemented UDP pseudo-header sum of IPv4
// src and dst for a UDP length: the checksum field of a partial checksum.
func pseudoSum(src, dst netip.Addr, length int) uint16 {
	s, d := src.As4(), dst.As4()
	sum := uint32(packet.ProtoUDP) + uint32(length)
	for _, b := range [][4]byte{s, d} {
		sum += uint32(binary.BigEndian.Uint16(b[0:])) + uint32(binary.BigEndian.Uint16(b[2:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// awaitFrame reads fd until a frame for which match is true arrives, or
// fails after 5 seconds.
func awaitFrame(t *testing.T, fd int, what string, match func([]byte) bool) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if match(buf[:n]) {
			return bytes.Clone(buf[:n])
		}
	}
	t.Fatalf("%s: no frame within 5 s", what)
	return nil
}

// awaitUDP reads one datagram from c, failing after 5 seconds.
func awaitUDP(t *testing.T, c net.PacketConn, what string) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return buf[:n]
}

// nothingQueued checks that c has no datagram queued.
func nothingQueued(t *testing.T, c net.PacketConn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now())
	if n, _, err := c.ReadFrom(make([]byte, 2048)); err == nil {
		t.Errorf("%s: a %d-byte datagram arrived", what, n)
	}
}

// TestNamespaces forwards real frames between veths: VM A and VM B are
// namespaces whose veth peers are ports in a host namespace, whose
// underlay veth leads to a peer namespace.
func TestNamespaces(t *testing.T) {
	l := newLab(t)
	host, vmA, vmB, peer := l.ns("host"), l.ns("vma"), l.ns("vmb"), l.ns("peer")
	l.ip("-n", host, "link", "add", "wfpa", "type", "veth", "peer", "name", "eth0", "netns", vmA)
	l.ip("-n", host, "link", "add", "wfpb", "type", "veth", "peer", "name", "eth0", "netns", vmB)
	l.ip("-n", host, "link", "add", "wfpul", "type", "veth", "peer", "name", "ul", "netns", peer)
	l.ip("-n", vmA, "link", "set", "eth0", "address", macA.String())
	l.ip("-n", vmB, "link", "set", "eth0", "address", macB.String())
	for _, c := range [][]string{
		{vmA, "addr", "add", "10.0.0.1/24", "dev", "eth0"},
		{vmB, "addr", "add", "10.0.0.2/24", "dev", "eth0"},
		{host, "addr", "add", "10.0.0.254/24", "dev", "wfpa"}, // the host stack must never see a VM's frames
		{host, "addr", "add", "198.18.0.1/24", "dev", "wfpul"},
		{peer, "addr", "add", "198.18.0.2/24", "dev", "ul"},
	} {
		l.ip(append([]string{"-n"}, c...)...)
	}
	for _, c := range [][]string{{vmA, "eth0"}, {vmB, "eth0"}, {host, "wfpa"}, {host, "wfpb"}, {host, "wfpul"}, {peer, "ul"}, {vmA, "lo"}, {vmB, "lo"}} {
		l.ip("-n", c[0], "link", "set", c[1], "up")
	}
	hostA, macHostA := l.link(host, "wfpa")
	hostB, _ := l.link(host, "wfpb")
	ul, macUL := l.link(host, "wfpul")
	peerUL, macPeer := l.link(peer, "ul")
	// Static neighbours: no ARP in the way.
	for _, c := range [][]string{
		{vmA, "10.0.0.2", macB.String()}, {vmA, "10.0.0.9", macGW.String()}, {vmA, "10.0.0.254", macHostA.String()},
		{vmB, "10.0.0.1", macA.String()}, {host, "198.18.0.2", macPeer.String()},
	} {
		dev := "eth0"
		if c[0] == host {
			dev = "wfpul"
		}
		l.ip("-n", c[0], "neigh", "replace", c[1], "lladdr", c[2], "dev", dev, "nud", "permanent")
	}

	var d *Datapath
	pinDir := testPinDir(t)
	l.in(host, func() error {
		var err error
		if d, err = Open(Config{PinDir: pinDir, Underlays: []int{ul}, FastPath: true}); err != nil {
			return err
		}
		if err := d.AttachPort(hostA, Port{Index: indexA, VSID: vsidA, MAC: macA, CAs: []netip.Addr{caA4}}); err != nil {
			return err
		}
		return d.AttachPort(hostB, Port{Index: indexB, VSID: vsidA, MAC: macB, CAs: []netip.Addr{caB4}})
	})
	t.Cleanup(func() { d.Close() })
	gen := d.Generation()
	for _, err := range []error{
		d.SlowPathAlive(time.Now().Add(time.Hour)),
		d.SetLocalPAs([]netip.Addr{paLocal4}),
		d.EnsureVSID(vsidA),
		d.InstallEgress([]Egress{
			{Ifindex: hostA, Dst: caB4, Gen: gen, Local: true, OutIfindex: hostB, DstMAC: macB, VSID: vsidA},
			{Ifindex: hostA, Dst: netip.MustParseAddr("10.0.0.9"), Gen: gen, OutIfindex: ul, DstMAC: macB, Encap: policy.EncapNVGRE,
				VSID: vsidA, SrcPA: paLocal4, DstPA: paRemote4, MaxLen: MaxLen(1500, policy.EncapNVGRE, false)},
		}),
		d.InstallIngress([]Ingress{{VSID: vsidA, SrcPA: paRemote4, SrcCA: caB4, SrcMAC: macB, DstCA: caA4, DstMAC: macA, Gen: gen, Ifindex: hostA}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	var (
		fromA, hostConn, atB, atA net.PacketConn
		slowFD, capFD, injFD      int
	)
	l.in(vmA, func() (err error) {
		if fromA, err = net.ListenPacket("udp4", "10.0.0.1:40000"); err != nil {
			return err
		}
		atA, err = net.ListenPacket("udp4", "10.0.0.1:7778")
		return err
	})
	l.in(vmB, func() (err error) { atB, err = net.ListenPacket("udp4", "10.0.0.2:7777"); return err })
	l.in(host, func() (err error) {
		if hostConn, err = net.ListenPacket("udp4", "0.0.0.0:7777"); err != nil {
			return err
		}
		slowFD, err = packetSocket(hostA, true)
		return err
	})
	l.in(peer, func() (err error) {
		if capFD, err = packetSocket(peerUL, false); err != nil {
			return err
		}
		injFD, err = packetSocket(peerUL, false)
		return err
	})
	t.Cleanup(func() {
		for _, c := range []net.PacketConn{fromA, hostConn, atB, atA} {
			c.Close()
		}
		for _, fd := range []int{slowFD, capFD, injFD} {
			unix.Close(fd)
		}
	})
	send := func(dst string, payload string) {
		t.Helper()
		if _, err := fromA.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst))); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("local", func(t *testing.T) {
		send("10.0.0.2:7777", "local delivery")
		if got := string(awaitUDP(t, atB, "VM B")); got != "local delivery" {
			t.Errorf("VM B received %q", got)
		}
	})

	t.Run("encapsulated", func(t *testing.T) {
		send("10.0.0.9:7777", "to a remote host")
		frame := awaitFrame(t, capFD, "underlay peer", func(b []byte) bool { return bytes.Contains(b, []byte("to a remote host")) })
		e := Egress{DstMAC: macB, Encap: policy.EncapNVGRE, VSID: vsidA, SrcPA: paLocal4, DstPA: paRemote4}
		if packet.Ethernet(frame).Dst() != macPeer || packet.Ethernet(frame).Src() != macUL {
			t.Errorf("outer MACs %v > %v, want %v > %v (the neighbour's)", packet.Ethernet(frame).Src(), packet.Ethernet(frame).Dst(), macUL, macPeer)
		}
		inner := bytes.Clone(frame[14+20+8:])
		if packet.Ethernet(inner).Dst() != macB || packet.Ethernet(inner).Src() != macA {
			t.Errorf("inner MACs %v > %v, want %v > %v", packet.Ethernet(inner).Src(), packet.Ethernet(inner).Dst(), macA, macB)
		}
		checkEncapsulated(t, frame, e, inner)
	})

	// A UDP GSO send is one super-frame across the VM's veth: it leaves
	// whole, with the tunnel GSO state, if its segments fit the underlay,
	// and goes to the slow path (for "too big") if they do not.
	t.Run("GSO", func(t *testing.T) {
		var fd int
		l.in(vmA, func() (err error) {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			return err
		})
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Port: 7777, Addr: [4]byte{10, 0, 0, 9}}
		sendGSO := func(seg int, marker string) {
			t.Helper()
			if err := unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT, seg); err != nil {
				t.Skipf("UDP GSO: %v", err)
			}
			payload := bytes.Repeat([]byte(marker), 4*seg/len(marker))
			if err := unix.Sendto(fd, payload, 0, to); err != nil {
				t.Fatal(err)
			}
		}
		sendGSO(1000, "gso-fits.")
		frame := awaitFrame(t, capFD, "underlay peer", func(b []byte) bool { return bytes.Contains(b, []byte("gso-fits.")) })
		if len(frame) < 4000 {
			t.Errorf("a %d-byte frame on the underlay: the super-frame was cut before the underlay", len(frame))
		}
		if g := packet.NVGRE(frame[34:]); len(frame) < 42 || frame[23] != packet.ProtoGRE || g.VSID() != vsidA {
			t.Errorf("the super-frame left without its NVGRE header: %x", frame[:min(len(frame), 64)])
		}
		sendGSO(1460, "gso-too-big.") // 14+20+8+1460 > MaxLen 1472
		awaitFrame(t, slowFD, "slow path socket", func(b []byte) bool { return bytes.Contains(b, []byte("gso-too-big.")) })
	})

	t.Run("decapsulated", func(t *testing.T) {
		inner := udpFrame(macA, macB, caB4, caA4, 64, []byte("from a remote host"))
		udp := packet.UDP(inner[34:])
		binary.BigEndian.PutUint16(udp[2:4], 7778) // VM A's second socket
		binary.BigEndian.PutUint16(udp[6:8], 0)
		packet.SetUDPChecksum(udp, caB4, caA4)
		pkt := tunnelPacket(paRemote4, paLocal4, false, vsidA, inner)
		packet.Ethernet(pkt).SetDst(macUL)
		packet.Ethernet(pkt).SetSrc(macPeer)
		if err := unix.Sendto(injFD, pkt, 0, &unix.SockaddrLinklayer{Ifindex: peerUL, Halen: 6, Addr: [8]byte(append(macUL[:], 0, 0))}); err != nil {
			t.Fatal(err)
		}
		if got := string(awaitUDP(t, atA, "VM A")); got != "from a remote host" {
			t.Errorf("VM A received %q", got)
		}
	})

	// A GSO tunnel packet (a remote host's super-frame that crossed a veth
	// underlay whole, or one GRO built) is decapsulated whole for a port
	// whose peer is in another namespace, also where the kernel cannot
	// clear its tunnel GSO state (no DECAP_L4): VM A's stack segments it.
	// A TAP as a second underlay receives what the test writes as it is.
	t.Run("GSO decapsulated", func(t *testing.T) {
		var tapFD, tap int
		l.in(host, func() (err error) {
			if tapFD, tap, err = openTAP("wfptap"); err != nil {
				return err
			}
			return d.AttachUnderlay(tap)
		})
		defer unix.Close(tapFD)
		l.ip("-n", host, "link", "set", "wfptap", "up")
		const seg, segs = 1000, 3
		inner := udpFrame(macA, macB, caB4, caA4, 64, bytes.Repeat([]byte("gso-decap."), seg*segs/10))
		udp := packet.UDP(inner[34:])
		binary.BigEndian.PutUint16(udp[2:4], 7778)
		binary.BigEndian.PutUint16(udp[6:8], pseudoSum(caB4, caA4, len(udp))) // a partial checksum
		pkt := tunnelPacket(paRemote4, paLocal4, false, vsidA, inner)
		csumStart := len(pkt) - len(udp)
		// struct virtio_net_hdr: NEEDS_CSUM, GSO_UDP_L4, hdr_len, gso_size, csum_start, csum_offset.
		vnet := make([]byte, 10)
		vnet[0], vnet[1] = 1, 5
		binary.LittleEndian.PutUint16(vnet[2:], uint16(csumStart+packet.UDPHeaderLen))
		binary.LittleEndian.PutUint16(vnet[4:], seg)
		binary.LittleEndian.PutUint16(vnet[6:], uint16(csumStart))
		binary.LittleEndian.PutUint16(vnet[8:], 6)
		before := counters(t, d)
		if _, err := unix.Write(tapFD, append(vnet, pkt...)); err != nil {
			t.Fatalf("writing a UDP GSO packet to a TAP: %v", err)
		}
		for i := range segs {
			if got := awaitUDP(t, atA, "VM A"); len(got) != seg || !bytes.HasPrefix(got, []byte("gso-decap.")) {
				t.Fatalf("datagram %d: VM A received %d bytes %q…, want a %d-byte segment", i, len(got), got[:min(len(got), 20)], seg)
			}
		}
		after := counters(t, d)
		if after.Path.UnderlayFast-before.Path.UnderlayFast != 1 || after.Path.UnderlaySlow != before.Path.UnderlaySlow {
			t.Errorf("path counters %+v, then %+v: want the super-frame decapsulated by the fast path", before.Path, after.Path)
		}
	})

	t.Run("slow path", func(t *testing.T) {
		send("10.0.0.254:7777", "miss: to the host's own address")
		awaitFrame(t, slowFD, "slow path socket", func(b []byte) bool { return bytes.Contains(b, []byte("miss: to the host")) })
		// The marked copy was dropped right after the socket took it.
		nothingQueued(t, hostConn, "host stack")
	})

	t.Run("fast path off", func(t *testing.T) {
		if err := d.SetFastPath(false); err != nil {
			t.Fatal(err)
		}
		defer d.SetFastPath(true)
		send("10.0.0.2:7777", "fast path off")
		awaitFrame(t, slowFD, "slow path socket", func(b []byte) bool { return bytes.Contains(b, []byte("fast path off")) })
		nothingQueued(t, atB, "VM B")
	})

	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.VSIDs[vsidA].Local < 1 || c.VSIDs[vsidA].Encapsulated < 1 || c.VSIDs[vsidA].Decapsulated < 1 || c.Path.PortSlow < 2 {
		t.Errorf("counters %+v: want a local, an encapsulated, a decapsulated and 2 slow path frames at least", c)
	}
}

// TestPinning: what Open, AttachPort and InstallEgress did survives Close
// and a new Open, which replaces the program in place; Cleanup removes it.
func TestPinning(t *testing.T) {
	l := newLab(t)
	host, vm := l.ns("pinhost"), l.ns("pinvm")
	l.ip("-n", host, "link", "add", "wfpp", "type", "veth", "peer", "name", "eth0", "netns", vm)
	port, _ := l.link(host, "wfpp")
	pinDir := testPinDir(t)

	var gen uint64
	e := Egress{Ifindex: port, Dst: caB4, Local: true, OutIfindex: port, DstMAC: macB, VSID: vsidA}
	l.in(host, func() error {
		d, err := Open(Config{PinDir: pinDir, FastPath: true})
		if err != nil {
			return err
		}
		defer d.Close()
		if d.Adopted() {
			return errors.New("a fresh pin directory was adopted")
		}
		if err := d.AttachPort(port, Port{Index: 1, VSID: vsidA, MAC: macA, CAs: []netip.Addr{caA4}}); err != nil {
			return err
		}
		gen = d.Generation()
		e.Gen = gen
		return d.InstallEgress([]Egress{e})
	})
	before := pinnedLinkInfo(t, pinDir, port)
	if before.ifindex != port {
		t.Fatalf("pinned link on interface %d after Close, want %d", before.ifindex, port)
	}

	l.in(host, func() error {
		d, err := Open(Config{PinDir: pinDir, FastPath: true})
		if err != nil {
			return err
		}
		defer d.Close()
		if !d.Adopted() {
			return errors.New("the pinned maps were not adopted")
		}
		if g := d.Generation(); g != gen {
			return fmt.Errorf("generation %d after adoption, want %d", g, gen)
		}
		es, err := d.Egresses()
		if err != nil {
			return err
		}
		if len(es) != 1 || es[0] != e {
			return fmt.Errorf("adopted egress decisions %+v, want [%+v]", es, e)
		}
		ps, err := d.Ports()
		if err != nil {
			return err
		}
		if p := ps[port]; p.MAC != macA || len(p.CAs) != 1 || p.CAs[0] != caA4 {
			return fmt.Errorf("adopted port %+v", p)
		}
		as, err := d.Attached()
		if err != nil {
			return err
		}
		if len(as) != 1 || as[0] != (Attachment{Ifindex: port}) {
			return fmt.Errorf("attached %+v, want port %d", as, port)
		}
		return d.AttachPort(port, Port{Index: 1, VSID: vsidA, MAC: macA, CAs: []netip.Addr{caA4}})
	})
	after := pinnedLinkInfo(t, pinDir, port)
	if after.id != before.id || after.prog == before.prog {
		t.Errorf("link %d with program %d after re-attaching, want link %d with a new program (was %d)", after.id, after.prog, before.id, before.prog)
	}

	if err := Cleanup(pinDir); err != nil {
		t.Fatal(err)
	}
	if _, err := link.LoadPinnedLink(pinDir+"/links/port-"+fmt.Sprint(port), nil); err == nil {
		t.Error("the link is still pinned after Cleanup")
	}
	l.in(host, func() error {
		progs, err := link.QueryPrograms(link.QueryOptions{Target: port, Attach: 46 /* BPF_TCX_INGRESS */})
		if err != nil {
			return err
		}
		if len(progs.Programs) != 0 {
			return fmt.Errorf("%d programs still attached after Cleanup", len(progs.Programs))
		}
		return nil
	})
}

type linkInfo struct {
	id, prog uint32
	ifindex  int
}

func pinnedLinkInfo(t *testing.T, pinDir string, ifindex int) linkInfo {
	t.Helper()
	l, err := link.LoadPinnedLink(fmt.Sprintf("%s/links/port-%d", pinDir, ifindex), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	li := linkInfo{id: uint32(info.ID), prog: uint32(info.Program)}
	if tcx := info.TCX(); tcx != nil {
		li.ifindex = int(tcx.Ifindex)
	}
	return li
}
