package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// putTCP writes a 20-byte TCP header plus payload with a valid checksum.
func putTCP(b []byte, src, dst netip.Addr, payload []byte) int {
	clear(b[:20])
	binary.BigEndian.PutUint16(b[0:2], 40000)
	binary.BigEndian.PutUint16(b[2:4], 443)
	b[12] = 5 << 4
	b[13] = 0x18 // PSH|ACK
	n := 20 + copy(b[20:], payload)
	binary.BigEndian.PutUint16(b[16:18], Checksum(b[:n], PseudoHeaderSum(src, dst, ProtoTCP, n)))
	return n
}

func l4Valid(proto uint8, l4 []byte, src, dst netip.Addr) bool {
	return Checksum(l4, PseudoHeaderSum(src, dst, proto, len(l4))) == 0
}

func randAddr(r *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var a [16]byte
		binary.BigEndian.PutUint64(a[0:], r.Uint64())
		binary.BigEndian.PutUint64(a[8:], r.Uint64())
		return netip.AddrFrom16(a)
	}
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], r.Uint32())
	return netip.AddrFrom4(a)
}

func TestRewriteKeepsChecksumsValid(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, 200)
	for i := range 1000 {
		v6 := i%2 == 1
		proto := []uint8{ProtoTCP, ProtoUDP, ProtoICMPv6}[i%3]
		if !v6 && proto == ProtoICMPv6 {
			proto = ProtoTCP
		}
		src, dst := randAddr(r, v6), randAddr(r, v6)
		payload := make([]byte, r.IntN(60))
		for j := range payload {
			payload[j] = byte(r.Uint32())
		}
		hl := IPv4HeaderLen
		if v6 {
			hl = IPv6HeaderLen
		}
		l4 := b[hl:]
		var n int
		switch proto {
		case ProtoTCP:
			n = putTCP(l4, src, dst, payload)
		case ProtoUDP:
			n = PutUDP(l4, 1, 2, len(payload))
			n += copy(l4[n:], payload)
			SetUDPChecksum(UDP(l4), src, dst)
		case ProtoICMPv6:
			n = PutNeighborAdvert(l4, src, dst, src, macA, NAFlagOverride)
		}
		newSrc, newDst := randAddr(r, v6), randAddr(r, v6)
		if v6 {
			PutIPv6(b, src, dst, proto, 64, n)
			p, err := ParseIPv6(b)
			if err != nil {
				t.Fatal(err)
			}
			p.SetSrc(newSrc)
			p.SetDst(newDst)
			if p.Src() != newSrc || p.Dst() != newDst || !l4Valid(proto, p.Payload(), newSrc, newDst) {
				t.Fatalf("IPv6 proto %d: %v %v, transport checksum invalid", proto, p.Src(), p.Dst())
			}
			continue
		}
		PutIPv4(b, src, dst, proto, 64, n, uint16(i), true)
		p, err := ParseIPv4(b)
		if err != nil {
			t.Fatal(err)
		}
		p.SetSrc(newSrc)
		p.SetDst(newDst)
		if _, err := ParseIPv4(p); err != nil || p.Src() != newSrc || p.Dst() != newDst {
			t.Fatalf("IPv4 header after rewrite: %v %v %v", err, p.Src(), p.Dst())
		}
		if !l4Valid(proto, p.Payload(), newSrc, newDst) {
			t.Fatalf("IPv4 proto %d: transport checksum invalid after rewrite", proto)
		}
	}
}

func TestRewriteSpecialCases(t *testing.T) {
	b := make([]byte, 100)
	// UDP over IPv4 without a checksum stays without one.
	n := PutUDP(b[20:], 1, 2, 4)
	PutIPv4(b, ca4A, ca4B, ProtoUDP, 64, n+4, 1, false)
	p, _ := ParseIPv4(b)
	p.SetDst(pa4B)
	if UDP(p.Payload()).Checksum() != 0 {
		t.Error("zero UDP checksum was changed")
	}

	// A later fragment has no transport header to fix.
	PutIPv4(b, ca4A, ca4B, ProtoTCP, 64, 40, 1, false)
	binary.BigEndian.PutUint16(b[6:8], 0x0005)
	binary.BigEndian.PutUint16(b[10:12], 0)
	binary.BigEndian.PutUint16(b[10:12], Checksum(b[:20], 0))
	for i := 20; i < 60; i++ {
		b[i] = 0xaa
	}
	p, err := ParseIPv4(b)
	if err != nil {
		t.Fatal(err)
	}
	p.SetSrc(pa4A)
	if !bytes.Equal(p.Payload(), bytes.Repeat([]byte{0xaa}, 40)) {
		t.Error("later fragment payload was modified")
	}
	if _, err := ParseIPv4(p); err != nil {
		t.Error(err)
	}

	// ICMPv4 has no pseudo-header: its checksum must not move.
	m := PutICMPv4DestUnreachable(b[20:], ICMPv4CodeHostUnreachable, 0, b[:8])
	PutIPv4(b, ca4A, ca4B, ProtoICMP, 64, m, 1, false)
	p, _ = ParseIPv4(b)
	p.SetSrc(pa4A)
	if _, err := ParseICMPv4(p.Payload()); err != nil {
		t.Error(err)
	}
}

func TestRewriteDecodesInGopacket(t *testing.T) {
	b := make([]byte, 200)
	n := putInnerUDP(b, ca4A, ca4B, "nat me")
	e, _ := ParseEthernet(b[:n])
	p, _ := ParseIPv4(e.Payload())
	p.SetSrc(pa4A)
	p.SetDst(pa4B)
	decodeGP(t, b[:n])
	n = putInnerUDP(b, ca6A, ca6B, "nat me")
	e, _ = ParseEthernet(b[:n])
	q, _ := ParseIPv6(e.Payload())
	q.SetSrc(netip.MustParseAddr("2001:db8::1"))
	q.SetDst(netip.MustParseAddr("2001:db8::2"))
	decodeGP(t, b[:n])
}
