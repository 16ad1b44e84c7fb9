package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os/exec"
	"testing"

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

func TestGREGSO(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		inner6     bool
	}{
		{"IPv4 PA", "198.18.0.1/24", "198.18.0.2/24", false},
		{"IPv6 PA", "fd00:47::1/64", "fd00:47::2/64", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			sa, sb := listenPair(t, l, netip.MustParsePrefix(tc.a), netip.MustParsePrefix(tc.b))
			var g *GREGSO
			inNS(t, l.a, func() (err error) { g, err = OpenGREGSO("wnvgso", l.ifA); return })
			t.Cleanup(func() { inNS(t, l.a, g.Close) })

			// Segments of mss fill a 1500-byte underlay packet.
			const payload, mss = 20000, 1360
			inner, hdr := tsoFrame(tc.inner6, payload, mss)
			data := append(nvgre(0x5001, 0, 0), inner...)
			send := func() {
				t.Helper()
				if err := g.Send(GSOPacket{Src: sa.LocalAddr(), Dst: sb.LocalAddr(), Hdr: hdr, Data: data}); err != nil {
					t.Fatal(err)
				}
			}

			// Over a veth the packet reaches the peer whole, as the kernel's
			// GRO would have merged it: one read, the TCP checksum still
			// partial, recognised as a super-frame for the VM's TAP.
			send()
			got := readAll(t, sb, 1, 70000)[0]
			if got.Src != sa.LocalAddr() || !bytes.Equal(got.Buf[:got.N], data) {
				t.Fatalf("received %d bytes from %s, want the %d bytes sent from %s", got.N, got.Src, len(data), sa.LocalAddr())
			}
			if _, ok := offload.KernelCoalesced(got.Buf[packet.NVGREHeaderLen:got.N], 1500); !ok {
				t.Error("the received packet is not recognised as a kernel-coalesced super-frame")
			}

			// Without GRE segmentation and checksum offload on the underlay
			// (a NIC that has neither) the kernel cuts it into wire packets
			// and completes their checksums.
			if _, err := exec.LookPath("ethtool"); err != nil {
				t.Skip("ethtool is not installed: cannot turn off the veth's GRE segmentation (make deps installs it)")
			}
			if out, err := exec.Command("ip", "netns", "exec", l.nsA, "ethtool", "-K", l.ifA, "tx-gre-segmentation", "off", "tx-checksumming", "off").CombinedOutput(); err != nil {
				t.Fatalf("ethtool: %v: %s", err, out)
			}
			send()
			segs := readAll(t, sb, (payload+mss-1)/mss, 2048)
			var joined []byte
			for i, p := range segs {
				frame := p.Buf[packet.NVGREHeaderLen:p.N]
				if !bytes.Equal(p.Buf[:packet.NVGREHeaderLen], data[:packet.NVGREHeaderLen]) {
					t.Fatalf("segment %d: GRE header % x, want % x", i, p.Buf[:packet.NVGREHeaderLen], data[:packet.NVGREHeaderLen])
				}
				s, ok := offload.ParseSegment(frame)
				if !ok || !s.ChecksumValid() {
					t.Fatalf("segment %d (%d bytes): parsed %v, checksum valid %v", i, len(frame), ok, ok && s.ChecksumValid())
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
		})
	}
}

func TestGREGSORefusesTooLongPackets(t *testing.T) {
	var b [64]byte
	_, _, err := gsoHeaders(b[:], packet.MAC{2}, GSOPacket{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), Data: make([]byte, 65516)})
	if err != errGSOTooLong {
		t.Fatalf("gsoHeaders of a 65536-byte IPv4 packet: %v, want %v", err, errGSOTooLong)
	}
	n, h, err := gsoHeaders(b[:], packet.MAC{2}, GSOPacket{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"),
		Hdr: offload.VirtioNetHdr{HdrLen: 54, CsumStart: 34}, Data: make([]byte, 65515)})
	if err != nil || n != 34 || h.CsumStart != 34+34+8 || h.HdrLen != 54+34+8 {
		t.Fatalf("gsoHeaders of a 65535-byte packet: n %d, hdr %+v, %v", n, h, err)
	}
	if packet.Checksum(b[14:34], 0) != 0 {
		t.Error("outer IPv4 header checksum does not verify")
	}
}
