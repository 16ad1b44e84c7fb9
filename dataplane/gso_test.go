package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/wnv/wnv/offload"
	"github.com/wnv/wnv/packet"
)

// tsoFrame builds what a VM hands its TAP for a TCP super-frame of payload
// bytes: an IPv4 or IPv6 frame whose TCP checksum holds the pseudo-header
// sum, and its virtio-net header.
func tsoFrame(v6 bool, payload, mss int) ([]byte, offload.VirtioNetHdr) {
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.7")
	ipLen, et, gso := 20, uint16(packet.EtherTypeIPv4), uint8(offload.GSOTCPv4)
	if v6 {
		src, dst = netip.MustParseAddr("fd00::5"), netip.MustParseAddr("fd00::7")
		ipLen, et, gso = 40, packet.EtherTypeIPv6, offload.GSOTCPv6
	}
	l4 := packet.EthernetHeaderLen + ipLen
	f := make([]byte, l4+20+payload)
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 7})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 5})
	binary.BigEndian.PutUint16(f[12:14], et)
	ip := f[packet.EthernetHeaderLen:l4]
	if v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:6], uint16(20+payload))
		ip[6], ip[7] = packet.ProtoTCP, 64
		s, d := src.As16(), dst.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:4], uint16(len(f)-packet.EthernetHeaderLen))
		ip[6], ip[8], ip[9] = 0x40, 64, packet.ProtoTCP
		s, d := src.As4(), dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:12], packet.Checksum(ip, 0))
	}
	tcp := f[l4:]
	binary.BigEndian.PutUint16(tcp[0:2], 40000)
	binary.BigEndian.PutUint16(tcp[2:4], 5201)
	binary.BigEndian.PutUint32(tcp[4:8], 1000)
	tcp[12], tcp[13] = 5<<4, 0x18 // ACK PSH
	binary.BigEndian.PutUint16(tcp[14:16], 512)
	for i := 20; i < len(tcp); i++ {
		tcp[i] = byte(i * 7)
	}
	binary.BigEndian.PutUint16(tcp[16:18], ^packet.Checksum(nil, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, len(tcp))))
	return f, offload.VirtioNetHdr{Flags: offload.NeedsCsum, GSOType: gso, HdrLen: uint16(l4 + 20),
		GSOSize: uint16(mss), CsumStart: uint16(l4), CsumOffset: 16}
}

// reader is a GRE or VXLAN socket.
type reader interface {
	ReadBatch([]Packet) (int, error)
	LocalAddr() netip.Addr
	Close() error
}

// readN reads until want packets arrived, failing after a few seconds.
func readN(t *testing.T, s reader, want, size int) []Packet {
	t.Helper()
	timer := time.AfterFunc(5*time.Second, func() { s.Close() })
	defer timer.Stop()
	var got []Packet
	for len(got) < want {
		in := packets(want-len(got), size)
		n, err := s.ReadBatch(in)
		if err != nil {
			t.Fatalf("ReadBatch on %s after %d of %d packets: %v", s.LocalAddr(), len(got), want, err)
		}
		got = append(got, in[:n]...)
	}
	return got
}

func TestTunnelGSO(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		vxlan      bool
		feature    string // ethtool's name for the underlay's segmentation of this tunnel
	}{
		{"NVGRE IPv4 PA", "198.18.0.1/24", "198.18.0.2/24", false, "tx-gre-segmentation"},
		{"NVGRE IPv6 PA", "fd00:47::1/64", "fd00:47::2/64", false, "tx-gre-segmentation"},
		{"VXLAN IPv4 PA", "198.18.0.1/24", "198.18.0.2/24", true, "tx-udp_tnl-segmentation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			pa, pb := netip.MustParsePrefix(tc.a), netip.MustParsePrefix(tc.b)
			addNoDAD(t, l.ha, l.ifA, pa)
			addNoDAD(t, l.hb, l.ifB, pb)
			var rx reader
			inNS(t, l.b, func() error {
				if tc.vxlan {
					s, err := ListenVXLAN(pb.Addr(), 0)
					rx = s
					return err
				}
				s, err := ListenGRE(pb.Addr(), 0)
				rx = s
				return err
			})
			t.Cleanup(func() { rx.Close() })
			var g *TunnelGSO
			inNS(t, l.a, func() (err error) { g, err = OpenTunnelGSO("wnvgso", l.ifA); return })
			t.Cleanup(func() { inNS(t, l.a, g.Close) })

			// Segments of mss fill a 1500-byte underlay packet.
			const payload, mss = 20000, 1350
			inner, hdr := tsoFrame(pa.Addr().Is6(), payload, mss)
			tunnel := nvgre(0x5001, 0, 0)
			port := uint16(0)
			if tc.vxlan {
				tunnel, port = make([]byte, packet.VXLANHeaderLen), 50123
				packet.PutVXLAN(tunnel, 5001)
			}
			data := append(tunnel, inner...)
			send := func() {
				t.Helper()
				if err := g.Send(GSOPacket{Src: pa.Addr(), Dst: pb.Addr(), VXLANPort: port, Hdr: hdr, Data: data}); err != nil {
					t.Fatal(err)
				}
			}

			// Over a veth the packet reaches the peer whole, as the kernel's
			// GRO would have merged it: one read, the TCP checksum still
			// partial, recognised as a super-frame for the VM's TAP.
			send()
			got := readN(t, rx, 1, 70000)[0]
			if got.Src != pa.Addr() || got.Segment != 0 || !bytes.Equal(got.Buf[:got.N], data) {
				t.Fatalf("received %d bytes (segments of %d) from %s, want the %d bytes sent from %s", got.N, got.Segment, got.Src, len(data), pa.Addr())
			}
			if _, ok := offload.KernelCoalesced(got.Buf[len(tunnel):got.N], 1500); !ok {
				t.Error("the received packet is not recognised as a kernel-coalesced super-frame")
			}

			// Without tunnel segmentation and checksum offload on the
			// underlay (a NIC that has neither) the kernel cuts it into wire
			// packets and completes their checksums.
			if _, err := exec.LookPath("ethtool"); err != nil {
				t.Skip("ethtool is not installed: cannot turn off the veth's tunnel segmentation (make deps installs it)")
			}
			if out, err := exec.Command("ip", "netns", "exec", l.nsA, "ethtool", "-K", l.ifA, tc.feature, "off", "tx-checksumming", "off").CombinedOutput(); err != nil {
				t.Fatalf("ethtool: %v: %s", err, out)
			}
			send()
			// UDP GRO may hand VXLAN segments over several to a read.
			var frames [][]byte
			for len(frames) < (payload+mss-1)/mss {
				for _, p := range readN(t, rx, 1, 70000) {
					step := p.N
					if p.Segment > 0 {
						step = p.Segment
					}
					for off := 0; off < p.N; off += step {
						frames = append(frames, p.Buf[off:min(off+step, p.N)])
					}
				}
			}
			var joined []byte
			for i, f := range frames {
				if !bytes.Equal(f[:len(tunnel)], tunnel) {
					t.Fatalf("segment %d: tunnel header % x, want % x", i, f[:len(tunnel)], tunnel)
				}
				s, ok := offload.ParseSegment(f[len(tunnel):])
				if !ok || !s.ChecksumValid() {
					t.Fatalf("segment %d (%d bytes): parsed %v, checksum valid %v", i, len(f), ok, ok && s.ChecksumValid())
				}
				joined = append(joined, s.Payload()...)
			}
			s, _ := offload.ParseSegment(inner)
			if !bytes.Equal(joined, s.Payload()) {
				t.Errorf("segments carry %d payload bytes that differ from the %d sent", len(joined), s.PayloadLen())
			}
			if st := g.Stats(); st.Redirected != 2 || st.Dropped != 0 || st.Refused != 0 {
				t.Errorf("Stats = %+v, want 2 redirected", st)
			}

			// A TAP set down refuses the write: Send says so, for the caller
			// to segment the packet itself, and counts it.
			if out, err := exec.Command("ip", "-n", l.nsA, "link", "set", "wnvgso", "down").CombinedOutput(); err != nil {
				t.Fatalf("ip link set down: %v: %s", err, out)
			}
			if err := g.Send(GSOPacket{Src: pa.Addr(), Dst: pb.Addr(), VXLANPort: port, Hdr: hdr, Data: data}); err != errGSORefused {
				t.Errorf("Send on a TAP that is down: %v, want %v", err, errGSORefused)
			}
			if st := g.Stats(); st.Refused != 1 {
				t.Errorf("Stats = %+v, want 1 refused", st)
			}
		})
	}
}

func TestTunnelGSORefusesWhatItCannotDescribe(t *testing.T) {
	var b [64]byte
	v4a, v4b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	if _, _, err := gsoHeaders(b[:], packet.MAC{2}, GSOPacket{Src: v4a, Dst: v4b, Data: make([]byte, 65516)}); err != errGSOTooLong {
		t.Errorf("gsoHeaders of a 65536-byte IPv4 packet: %v, want %v", err, errGSOTooLong)
	}
	if _, _, err := gsoHeaders(b[:], packet.MAC{2}, GSOPacket{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), VXLANPort: 50000, Data: make([]byte, 100)}); err != errGSOVXLAN6 {
		t.Errorf("gsoHeaders of VXLAN over IPv6: %v, want %v", err, errGSOVXLAN6)
	}
	n, h, err := gsoHeaders(b[:], packet.MAC{2}, GSOPacket{Src: v4a, Dst: v4b, Hdr: offload.VirtioNetHdr{HdrLen: 54, CsumStart: 34}, Data: make([]byte, 65515)})
	if err != nil || n != 34 || h.CsumStart != 34+34+8 || h.HdrLen != 54+34+8 {
		t.Fatalf("gsoHeaders of a 65535-byte packet: n %d, hdr %+v, %v", n, h, err)
	}
	if packet.Checksum(b[14:34], 0) != 0 {
		t.Error("outer IPv4 header checksum does not verify")
	}
	n, h, err = gsoHeaders(b[:], packet.MAC{2}, GSOPacket{Src: v4a, Dst: v4b, VXLANPort: 50000, Hdr: offload.VirtioNetHdr{CsumStart: 34}, Data: make([]byte, 1000)})
	if err != nil || n != 42 || h.CsumStart != 34+42+8 || b[14+9] != packet.ProtoUDP {
		t.Fatalf("gsoHeaders of a VXLAN packet: n %d, hdr %+v, protocol %d, %v", n, h, b[14+9], err)
	}
}
