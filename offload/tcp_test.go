package offload

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wnv/wnv/packet"
)

var (
	macA = packet.MAC{2, 0, 0, 0, 0, 1}
	macB = packet.MAC{2, 0, 0, 0, 0, 2}
)

// superFrame builds what a VM with TSO hands its TAP: one Ethernet/IP/TCP
// frame with payloadLen bytes, timestamps option, PSH|ACK, and the TCP
// checksum left as the pseudo-header sum (NeedsCsum).
func superFrame(t testing.TB, src, dst string, payloadLen, mss int) ([]byte, VirtioNetHdr) {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	const tcpLen = 32 // 20 + 12 bytes of NOP, NOP, timestamps
	b := make([]byte, 14+40+tcpLen+payloadLen)
	n := 0
	gso := uint8(GSOTCPv4)
	if s.Is4() {
		n += packet.PutEthernet(b, macB, macA, packet.EtherTypeIPv4)
		n += packet.PutIPv4(b[n:], s, d, packet.ProtoTCP, 64, tcpLen+payloadLen, 1000, true)
	} else {
		gso = GSOTCPv6
		n += packet.PutEthernet(b, macB, macA, packet.EtherTypeIPv6)
		n += packet.PutIPv6(b[n:], s, d, packet.ProtoTCP, 64, tcpLen+payloadLen)
	}
	l4 := n
	tcp := b[l4:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0xfffff000) // wraps during the frame
	binary.BigEndian.PutUint32(tcp[8:], 77)
	tcp[12] = tcpLen / 4 << 4
	tcp[13] = tcpACK | tcpPSH
	binary.BigEndian.PutUint16(tcp[14:], 512)
	copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8})
	for i := range payloadLen {
		tcp[tcpLen+i] = byte(i * 7)
	}
	binary.BigEndian.PutUint16(tcp[16:], ^packet.Checksum(nil, packet.PseudoHeaderSum(s, d, packet.ProtoTCP, tcpLen+payloadLen)))
	b = b[:l4+tcpLen+payloadLen]
	return b, VirtioNetHdr{Flags: NeedsCsum, GSOType: gso, HdrLen: uint16(l4 + tcpLen), GSOSize: uint16(mss), CsumStart: uint16(l4), CsumOffset: 16}
}

// checkSegment decodes a segment with gopacket and verifies its checksums.
func checkSegment(t *testing.T, seg []byte) *layers.TCP {
	t.Helper()
	p := gopacket.NewPacket(seg, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("segment does not decode: %v", el.Error())
	}
	tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	var src, dst netip.Addr
	var tcpBytes []byte
	if ip4, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		if packet.Checksum(seg[14:34], 0) != 0 {
			t.Fatal("IPv4 header checksum is wrong")
		}
		src, dst = netip.AddrFrom4([4]byte(ip4.SrcIP.To4())), netip.AddrFrom4([4]byte(ip4.DstIP.To4()))
		tcpBytes = seg[34 : 14+int(ip4.Length)]
	} else {
		ip6 := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		src, dst = netip.AddrFrom16([16]byte(ip6.SrcIP)), netip.AddrFrom16([16]byte(ip6.DstIP))
		tcpBytes = seg[54 : 54+int(ip6.Length)]
	}
	if packet.Checksum(tcpBytes, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, len(tcpBytes))) != 0 {
		t.Fatal("TCP checksum is wrong")
	}
	return tcp
}

func TestSegmentTCP(t *testing.T) {
	for _, c := range []struct {
		src, dst          string
		payload, mss, pre int
	}{
		{"10.0.0.10", "10.0.0.11", 10000, 1398, 8},
		{"10.0.0.10", "10.0.0.11", 2796, 1398, 0}, // an exact multiple
		{"fd00::10", "fd00::11", 65000, 1378, 8},
		{"10.0.0.10", "10.0.0.11", 100, 1398, 8}, // smaller than one MSS
	} {
		frame, h := superFrame(t, c.src, c.dst, c.payload, c.mss)
		pkt := append(bytes.Repeat([]byte{0xee}, c.pre), frame...)
		dst := make([]byte, 128<<10)
		size, total, err := SegmentTCP(dst, pkt, c.pre, h)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		want := (c.payload + c.mss - 1) / c.mss
		var got []byte
		n := 0
		for off := 0; off < total; off += size {
			seg := dst[off:min(off+size, total)]
			if !bytes.Equal(seg[:c.pre], pkt[:c.pre]) {
				t.Fatalf("segment %d lost its prefix", n)
			}
			tcp := checkSegment(t, seg[c.pre:])
			if tcp.Seq != 0xfffff000+uint32(n*c.mss) || tcp.PSH != (n == want-1) || !tcp.ACK || len(tcp.Options) != 3 {
				t.Fatalf("segment %d: seq %#x PSH %v options %v", n, tcp.Seq, tcp.PSH, tcp.Options)
			}
			got = append(got, tcp.Payload...)
			n++
		}
		if n != want || !bytes.Equal(got, frame[len(frame)-c.payload:]) {
			t.Fatalf("%+v: %d segments carrying %d bytes, want %d carrying the original %d", c, n, len(got), want, c.payload)
		}
	}
}

func TestSegmentTCPRefuses(t *testing.T) {
	frame, h := superFrame(t, "10.0.0.10", "10.0.0.11", 3000, 1400)
	dst := make([]byte, 4000)
	bad := h
	bad.GSOSize = 0
	if _, _, err := SegmentTCP(dst, frame, 0, bad); err != ErrBadGSO {
		t.Errorf("GSOSize 0: %v", err)
	}
	bad = h
	bad.GSOType = GSOTCPv6
	if _, _, err := SegmentTCP(dst, frame, 0, bad); err != ErrNotTCP {
		t.Errorf("family mismatch: %v", err)
	}
	if _, _, err := SegmentTCP(dst[:3000], frame, 0, h); err != ErrDstTooSmall {
		t.Errorf("small buffer: %v", err)
	}
	udp := append([]byte(nil), frame...)
	udp[14+9] = packet.ProtoUDP
	if _, _, err := SegmentTCP(dst, udp, 0, h); err != ErrNotTCP {
		t.Errorf("UDP: %v", err)
	}
}

// Segmenting and coalescing again gives back the super-frame, with the
// header the receiving TAP needs.
func TestCoalesceUndoesSegment(t *testing.T) {
	for _, fam := range [][2]string{{"10.0.0.10", "10.0.0.11"}, {"fd00::10", "fd00::11"}} {
		frame, h := superFrame(t, fam[0], fam[1], 20000, 1400)
		orig := append([]byte(nil), frame...)
		dst := make([]byte, 64<<10)
		size, total, err := SegmentTCP(dst, frame, 0, h)
		if err != nil {
			t.Fatal(err)
		}
		var segs []Segment
		for off := 0; off < total; off += size {
			s, ok := ParseSegment(dst[off:min(off+size, total)])
			if !ok {
				t.Fatal("segment does not parse")
			}
			segs = append(segs, s)
		}
		for i := range segs {
			if !segs[i].ChecksumValid() {
				t.Fatalf("%s: segment %d has a bad checksum", fam[0], i)
			}
		}
		segs[1].Frame[len(segs[1].Frame)-1]++
		if segs[1].ChecksumValid() {
			t.Fatalf("%s: a corrupted segment passes its checksum", fam[0])
		}
		segs[1].Frame[len(segs[1].Frame)-1]--
		run := segs[0].PayloadLen()
		for i := 1; i < len(segs); i++ {
			if !Follows(&segs[0], &segs[i-1], &segs[i], run) {
				t.Fatalf("%s: segment %d does not follow", fam[0], i)
			}
			run += segs[i].PayloadLen()
		}
		got := Coalesce(&segs[0], run-segs[0].PayloadLen(), segs[len(segs)-1].IsPSH())
		if got != h {
			t.Errorf("%s: header %+v, want %+v", fam[0], got, h)
		}
		var merged []byte
		merged = append(merged, segs[0].Frame[:segs[0].HeaderLen()]...)
		for _, s := range segs {
			merged = append(merged, s.Payload()...)
		}
		if !bytes.Equal(merged, orig) {
			t.Errorf("%s: coalesced frame differs from the super-frame", fam[0])
		}
	}
}

func TestFollowsRejects(t *testing.T) {
	frame, h := superFrame(t, "10.0.0.10", "10.0.0.11", 4200, 1400)
	dst := make([]byte, 8000)
	size, _, _ := SegmentTCP(dst, frame, 0, h)
	seg := func(i int) []byte { return append([]byte(nil), dst[i*size:(i+1)*size]...) }
	parse := func(b []byte) *Segment {
		s, ok := ParseSegment(b)
		if !ok {
			t.Fatal("does not parse")
		}
		return &s
	}
	first := parse(seg(0))
	for name, mutate := range map[string]func(b []byte){
		"gap in sequence": func(b []byte) { b[34+7]++ },
		"other port":      func(b []byte) { b[34+1]++ },
		"FIN":             func(b []byte) { b[34+13] |= tcpFIN },
		"other TTL":       func(b []byte) { b[14+8]-- },
		"other ACK":       func(b []byte) { b[34+11]++ },
		"other timestamp": func(b []byte) { b[34+27]++ },
	} {
		b := seg(1)
		mutate(b)
		if Follows(first, first, parse(b), first.PayloadLen()) {
			t.Errorf("%s: accepted", name)
		}
	}
	if !Follows(first, first, parse(seg(1)), first.PayloadLen()) {
		t.Fatal("the unmodified next segment does not follow")
	}
	if Follows(first, first, parse(seg(1)), 65000) {
		t.Error("a run past 64 KiB was accepted")
	}
}

func TestCompleteChecksum(t *testing.T) {
	frame, h := superFrame(t, "10.0.0.10", "10.0.0.11", 1000, 1400)
	h.GSOType, h.GSOSize = GSONone, 0
	if err := CompleteChecksum(frame, h); err != nil {
		t.Fatal(err)
	}
	checkSegment(t, frame)
	h.CsumStart = uint16(len(frame))
	if err := CompleteChecksum(frame, h); err != ErrCsumRange {
		t.Fatalf("out of range: %v", err)
	}
}

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := VirtioNetHdr{Flags: NeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 86, GSOSize: 1378, CsumStart: 54, CsumOffset: 16}
	b := make([]byte, VirtioNetHdrLen)
	h.Put(b)
	if got, err := ParseVirtioNetHdr(b); err != nil || got != h || !got.IsGSO() {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseVirtioNetHdr(b[:9]); err == nil {
		t.Fatal("short header accepted")
	}
}

func FuzzSegmentTCP(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzSegmentTCP (IPv4 and IPv6 super-frames).
	dst := make([]byte, 256<<10)
	f.Fuzz(func(t *testing.T, pkt []byte, gso uint8, mss uint16) {
		h := VirtioNetHdr{GSOType: gso, GSOSize: mss}
		size, total, err := SegmentTCP(dst, pkt, 0, h)
		if err != nil {
			return
		}
		in, _ := ParseSegment(pkt)
		var payload int
		for off := 0; off < total; off += size {
			s, ok := ParseSegment(dst[off:min(off+size, total)])
			if !ok {
				t.Fatalf("segment at %d does not parse", off)
			}
			payload += s.PayloadLen()
		}
		if payload != in.PayloadLen() {
			t.Fatalf("segments carry %d bytes, the super-frame %d", payload, in.PayloadLen())
		}
	})
}

func TestKernelCoalesced(t *testing.T) {
	const wire = 1500 - 20 - 8 // inner frame behind IPv4 and NVGRE
	for _, fam := range [][2]string{{"10.0.0.10", "10.0.0.11"}, {"fd00::10", "fd00::11"}} {
		// A super-frame as the kernel's GRO leaves it: lengths of the whole,
		// TCP checksum holding the pseudo-header sum.
		frame, vm := superFrame(t, fam[0], fam[1], 20000, 1000)
		h, ok := KernelCoalesced(frame, wire)
		if !ok {
			t.Fatalf("%s: a GRO super-frame is not recognised", fam[0])
		}
		want := vm
		want.GSOSize = uint16(wire - int(vm.HdrLen))
		if h != want {
			t.Errorf("%s: header %+v, want %+v", fam[0], h, want)
		}
		// The VM's kernel may cut it again: every segment fits the wire.
		dst := make([]byte, 64<<10)
		size, total, err := SegmentTCP(dst, frame, 0, h)
		if err != nil {
			t.Fatal(err)
		}
		if size != wire {
			t.Errorf("%s: segments of %d bytes, want %d", fam[0], size, wire)
		}
		for off := 0; off < total; off += size {
			checkSegment(t, dst[off:min(off+size, total)])
		}

		if _, ok := KernelCoalesced(frame[:len(frame)-1], wire); ok {
			t.Errorf("%s: a frame with bytes missing from its IP packet is recognised", fam[0])
		}
		if _, ok := KernelCoalesced(append(frame[:len(frame):len(frame)], 0), wire); ok {
			t.Errorf("%s: a frame with trailing bytes is recognised", fam[0])
		}
		small, _ := superFrame(t, fam[0], fam[1], 1000, 1000)
		if _, ok := KernelCoalesced(small, wire); ok {
			t.Errorf("%s: a frame that fits the wire is recognised", fam[0])
		}
		if err := CompleteChecksum(frame, vm); err != nil {
			t.Fatal(err)
		}
		if _, ok := KernelCoalesced(frame, wire); ok {
			t.Errorf("%s: a frame with a full checksum is recognised", fam[0])
		}
	}
}
