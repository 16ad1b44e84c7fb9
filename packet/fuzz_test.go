package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// Each fuzz target checks that Parse accepts exactly what the wire rules
// allow, that accessors stay inside the view, and that writing the parsed
// fields back with Put* and parsing again gives the same fields. Targets
// over checksummed headers take a fixChecksum flag so the fuzzer also reaches
// the code behind the checksum check.

func FuzzParseEthernet(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEthernet(b)
		tagged := len(b) >= 14 && binary.BigEndian.Uint16(b[12:14]) == EtherTypeVLAN
		if ok := len(b) >= 14 && (!tagged || len(b) >= 18); ok != (err == nil) {
			t.Fatalf("len %d tagged %v: err %v", len(b), tagged, err)
		}
		if err != nil {
			return
		}
		if e.HeaderLen()+len(e.Payload()) != len(b) || e.HasVLAN() != tagged || (!tagged && e.VLANID() != 0) {
			t.Fatalf("header %d + payload %d != %d", e.HeaderLen(), len(e.Payload()), len(b))
		}
		out := make([]byte, len(b))
		var n int
		if e.HasVLAN() {
			n = PutEthernetVLAN(out, e.Dst(), e.Src(), e.VLANID(), e.Type())
		} else {
			n = PutEthernet(out, e.Dst(), e.Src(), e.Type())
		}
		copy(out[n:], e.Payload())
		r, err := ParseEthernet(out)
		if err != nil || r.Dst() != e.Dst() || r.Src() != e.Src() || r.Type() != e.Type() || r.VLANID() != e.VLANID() ||
			!bytes.Equal(r.Payload(), e.Payload()) {
			t.Fatalf("round trip: %v %x -> %x", err, b, out)
		}
	})
}

func FuzzParseARP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseARP(b)
		ok := len(b) >= 28 && bytes.Equal(b[:6], []byte{0, 1, 8, 0, 6, 4}) && b[6] == 0 && (b[7] == 1 || b[7] == 2)
		if ok != (err == nil) {
			t.Fatalf("%x: err %v", b, err)
		}
		if err != nil {
			return
		}
		out := make([]byte, ARPLen)
		PutARP(out, a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
		if !bytes.Equal(out, a) || len(a) != ARPLen {
			t.Fatalf("round trip %x -> %x", []byte(a), out)
		}
	})
}

func fixIPv4Checksum(b []byte) {
	if len(b) < IPv4HeaderLen {
		return
	}
	hl := min(int(b[0]&0x0f)*4, len(b))
	if hl < IPv4HeaderLen {
		return
	}
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:12], Checksum(b[:hl], 0))
}

func FuzzParseIPv4(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, fixChecksum bool) {
		if fixChecksum {
			fixIPv4Checksum(b)
		}
		p, err := ParseIPv4(b)
		if err == ErrIPv4Checksum && Checksum(b[:int(b[0]&0x0f)*4], 0) == 0 {
			t.Fatalf("rejected a good checksum %x", b)
		}
		if err != nil {
			return
		}
		hl := p.HeaderLen()
		if b[0]>>4 != 4 || hl < 20 || hl > len(p) || len(p) != p.TotalLen() || len(p) > len(b) || hl+len(p.Payload()) != len(p) {
			t.Fatalf("accepted bad header %x", b)
		}
		if Checksum(p[:hl], 0) != 0 {
			t.Fatal("accepted a bad checksum")
		}
		if p.IsFragment() != (binary.BigEndian.Uint16(p[6:8])&0x3fff != 0) {
			t.Fatal("IsFragment disagrees with flags and offset")
		}
		c := bytes.Clone(p)
		if ttl := IPv4(c).TTL(); ttl > 0 {
			IPv4(c).DecTTL()
			if _, err := ParseIPv4(c); err != nil || IPv4(c).TTL() != ttl-1 {
				t.Fatalf("DecTTL broke the header: %v", err)
			}
		}
		c = bytes.Clone(p)
		pl := p.Payload()
		l4ok := !p.IsFragment() && l4Valid(p.Protocol(), pl, p.Src(), p.Dst()) &&
			((p.Protocol() == ProtoTCP && len(pl) >= 20) || (p.Protocol() == ProtoUDP && len(pl) >= 8 && UDP(pl).Checksum() != 0))
		IPv4(c).SetSrc(pa4A)
		IPv4(c).SetDst(pa4B)
		if r, err := ParseIPv4(c); err != nil || r.Src() != pa4A || r.Dst() != pa4B {
			t.Fatalf("rewrite broke the header: %v", err)
		}
		if l4ok && !l4Valid(p.Protocol(), IPv4(c).Payload(), pa4A, pa4B) {
			t.Fatal("rewrite broke a valid transport checksum")
		}
		out := make([]byte, IPv4HeaderLen+len(p.Payload()))
		PutIPv4(out, p.Src(), p.Dst(), p.Protocol(), p.TTL(), len(p.Payload()), p.ID(), p.DF())
		copy(out[IPv4HeaderLen:], p.Payload())
		r, err := ParseIPv4(out)
		if err != nil || r.Src() != p.Src() || r.Dst() != p.Dst() || r.Protocol() != p.Protocol() || r.TTL() != p.TTL() ||
			r.ID() != p.ID() || r.DF() != p.DF() || !bytes.Equal(r.Payload(), p.Payload()) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseIPv6(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseIPv6(b)
		ok := len(b) >= 40 && b[0]>>4 == 6 && 40+int(binary.BigEndian.Uint16(b[4:6])) <= len(b)
		if ok != (err == nil) {
			t.Fatalf("%x: err %v", b, err)
		}
		if err != nil {
			return
		}
		if len(p) != 40+p.PayloadLen() || len(p.Payload()) != p.PayloadLen() || p.FlowLabel() > 0xfffff {
			t.Fatal("view not trimmed to the payload length")
		}
		out := make([]byte, len(p))
		PutIPv6(out, p.Src(), p.Dst(), p.NextHeader(), p.HopLimit(), p.PayloadLen())
		copy(out[IPv6HeaderLen:], p.Payload())
		r, err := ParseIPv6(out)
		r.SetFlowLabel(p.FlowLabel())
		if err != nil || r.Src() != p.Src() || r.Dst() != p.Dst() || r.NextHeader() != p.NextHeader() || r.HopLimit() != p.HopLimit() ||
			r.FlowLabel() != p.FlowLabel() || !bytes.Equal(r.Payload(), p.Payload()) {
			t.Fatalf("round trip: %v", err)
		}
		if hl := r.HopLimit(); hl > 0 {
			r.DecHopLimit()
			if r.HopLimit() != hl-1 {
				t.Fatal("DecHopLimit")
			}
		}
	})
}

func FuzzParseUDP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUDP(b)
		ok := len(b) >= 8 && int(binary.BigEndian.Uint16(b[4:6])) >= 8 && int(binary.BigEndian.Uint16(b[4:6])) <= len(b)
		if ok != (err == nil) {
			t.Fatalf("%x: err %v", b, err)
		}
		if err != nil {
			return
		}
		if len(u) != u.Length() || len(u.Payload()) != u.Length()-8 {
			t.Fatal("view not trimmed to the length field")
		}
		if s, d := FlowPorts(ProtoUDP, u); s != u.SrcPort() || d != u.DstPort() {
			t.Fatal("FlowPorts disagrees with the UDP view")
		}
		out := make([]byte, len(u))
		PutUDP(out, u.SrcPort(), u.DstPort(), len(u.Payload()))
		copy(out[UDPHeaderLen:], u.Payload())
		r, err := ParseUDP(out)
		if err != nil || r.SrcPort() != u.SrcPort() || r.DstPort() != u.DstPort() || !bytes.Equal(r.Payload(), u.Payload()) {
			t.Fatalf("round trip: %v", err)
		}
		for _, ab := range [][2]netip.Addr{{pa4A, pa4B}, {ca6A, ca6B}} {
			SetUDPChecksum(r, ab[0], ab[1])
			if r.Checksum() == 0 || !UDPChecksumValid(r, ab[0], ab[1]) {
				t.Fatalf("%v: checksum %#x invalid", ab, r.Checksum())
			}
		}
	})
}

func FuzzParseICMPv4(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, fixChecksum bool) {
		if fixChecksum && len(b) >= 4 {
			b[2], b[3] = 0, 0
			binary.BigEndian.PutUint16(b[2:4], Checksum(b, 0))
		}
		m, err := ParseICMPv4(b)
		if ok := len(b) >= 8 && Checksum(b, 0) == 0; ok != (err == nil) {
			t.Fatalf("%x: err %v", b, err)
		}
		if err != nil {
			return
		}
		out := make([]byte, 600)
		n := PutICMPv4DestUnreachable(out, m.Code(), m.NextHopMTU(), m.Payload())
		r, err := ParseICMPv4(out[:n])
		if err != nil || r.Type() != ICMPv4DestUnreachable || r.Code() != m.Code() || r.NextHopMTU() != m.NextHopMTU() ||
			len(r.Payload()) != min(len(m.Payload()), icmpv4MaxQuote) || !bytes.HasPrefix(m.Payload(), r.Payload()) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseICMPv6(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, fixChecksum bool) {
		if fixChecksum && len(b) >= 4 {
			setICMPv6Checksum(b, ca6A, ca6B)
		}
		m, err := ParseICMPv6(b, ca6A, ca6B)
		if err != nil {
			return
		}
		if len(m) < 4 || Checksum(m, PseudoHeaderSum(ca6A, ca6B, ProtoICMPv6, len(m))) != 0 {
			t.Fatal("accepted a short message or a bad checksum")
		}
		isND := m.Type() == ICMPv6NeighborSolicitation || m.Type() == ICMPv6NeighborAdvertisement
		if isND && len(m) < 24 {
			t.Fatal("accepted a short NS/NA")
		}
		if m.NDTarget().IsValid() != (len(m) >= 24) {
			t.Fatal("NDTarget validity disagrees with the length")
		}
		_ = m.MTU()
		_ = m.NAFlags()
		if _, ok := m.NDSourceLinkAddr(); ok && len(m) < 32 {
			t.Fatal("source link-layer option found in a message without room for it")
		}
		mac, ok := m.NDTargetLinkAddr()
		if !ok || m.Type() != ICMPv6NeighborAdvertisement {
			return
		}
		out := make([]byte, NeighborAdvertLen)
		PutNeighborAdvert(out, ca6A, ca6B, m.NDTarget(), mac, m.NAFlags())
		r, err := ParseICMPv6(out, ca6A, ca6B)
		rmac, rok := r.NDTargetLinkAddr()
		if err != nil || r.NDTarget() != m.NDTarget() || r.NAFlags() != m.NAFlags() || !rok || rmac != mac {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseNVGRE(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseNVGRE(b)
		if ok := len(b) >= 8 && bytes.Equal(b[:4], []byte{0x20, 0x00, 0x65, 0x58}); ok != (err == nil) {
			t.Fatalf("%x: err %v", b, err)
		}
		if err != nil {
			return
		}
		if g.VSID() > 0xffffff || g.Key() != g.VSID()<<8|uint32(g.FlowID()) || len(g.Payload()) != len(b)-8 {
			t.Fatal("key fields disagree")
		}
		out := make([]byte, NVGREHeaderLen)
		PutNVGRE(out, g.VSID(), g.FlowID())
		if !bytes.Equal(out, g[:8]) {
			t.Fatalf("round trip %x -> %x", []byte(g[:8]), out)
		}
	})
}

func FuzzParseVXLAN(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVXLAN(b)
		if ok := len(b) >= 8 && b[0]&0x08 != 0; ok != (err == nil) {
			t.Fatalf("%x: err %v", b, err)
		}
		if err != nil {
			return
		}
		out := make([]byte, VXLANHeaderLen)
		PutVXLAN(out, v.VNI())
		r, err := ParseVXLAN(out)
		if err != nil || r.VNI() != v.VNI() || v.VNI() > 0xffffff || len(v.Payload()) != len(b)-8 {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzChecksum(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, initial uint32) {
		if got, want := Checksum(b, initial), naiveChecksum(b, initial); got != want {
			t.Fatalf("%x initial %#x: %#x, want %#x", b, initial, got, want)
		}
	})
}
