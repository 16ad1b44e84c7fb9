package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

var (
	macA = MAC{0x00, 0x15, 0x5d, 0x01, 0x02, 0x03}
	macB = MAC{0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c}
	ca4A = netip.MustParseAddr("10.0.0.5")
	ca4B = netip.MustParseAddr("10.0.0.7")
	pa4A = netip.MustParseAddr("198.18.0.1")
	pa4B = netip.MustParseAddr("198.18.0.2")
	ca6A = netip.MustParseAddr("fd00::5")
	ca6B = netip.MustParseAddr("fd00::7")
)

func wantErr(t *testing.T, name string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", name, err, want)
	}
}

func TestEthernet(t *testing.T) {
	b := make([]byte, 64)
	n := PutEthernet(b, macB, macA, EtherTypeIPv4)
	if n != EthernetHeaderLen {
		t.Fatalf("PutEthernet = %d, want 14", n)
	}
	e, err := ParseEthernet(b[:20])
	if err != nil {
		t.Fatal(err)
	}
	if e.Dst() != macB || e.Src() != macA || e.Type() != EtherTypeIPv4 || e.HasVLAN() || e.VLANID() != 0 ||
		e.HeaderLen() != 14 || len(e.Payload()) != 6 {
		t.Errorf("untagged accessors wrong: dst %v src %v type %#x vlan %v/%d hl %d", e.Dst(), e.Src(), e.Type(), e.HasVLAN(), e.VLANID(), e.HeaderLen())
	}
	e.SetDst(Broadcast)
	e.SetSrc(macB)
	if e.Dst() != Broadcast || e.Src() != macB {
		t.Errorf("SetDst/SetSrc: got %v %v", e.Dst(), e.Src())
	}

	n = PutEthernetVLAN(b, macB, macA, 0xf123, EtherTypeARP)
	if n != 18 {
		t.Fatalf("PutEthernetVLAN = %d, want 18", n)
	}
	e, err = ParseEthernet(b[:18])
	if err != nil {
		t.Fatal(err)
	}
	if !e.HasVLAN() || e.VLANID() != 0x123 || e.Type() != EtherTypeARP || e.HeaderLen() != 18 || len(e.Payload()) != 0 {
		t.Errorf("tagged accessors wrong: vlan %v/%#x type %#x hl %d", e.HasVLAN(), e.VLANID(), e.Type(), e.HeaderLen())
	}

	_, err = ParseEthernet(b[:13])
	wantErr(t, "13 bytes", err, ErrEthernetShort)
	_, err = ParseEthernet(b[:17])
	wantErr(t, "tagged 17 bytes", err, ErrVLANShort)
	_, err = ParseEthernet(nil)
	wantErr(t, "nil", err, ErrEthernetShort)
}

func TestARP(t *testing.T) {
	b := make([]byte, 46) // minimum Ethernet payload: ARP plus padding
	if n := PutARP(b, ARPRequest, macA, ca4A, MAC{}, ca4B); n != ARPLen {
		t.Fatalf("PutARP = %d, want 28", n)
	}
	a, err := ParseARP(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != ARPLen {
		t.Errorf("view length %d, want padding trimmed to 28", len(a))
	}
	if a.Op() != ARPRequest || a.SenderMAC() != macA || a.SenderIP() != ca4A || !a.TargetMAC().IsZero() || a.TargetIP() != ca4B {
		t.Errorf("accessors: op %d %v %v %v %v", a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
	}

	bad := []struct {
		name string
		off  int
		val  byte
		want error
	}{
		{"htype 6", 1, 6, ErrARPHardwareType},
		{"ptype 0x86dd", 2, 0x86, ErrARPProtocolType},
		{"hlen 8", 4, 8, ErrARPHardwareLen},
		{"plen 16", 5, 16, ErrARPProtocolLen},
		{"op 3", 7, 3, ErrARPOperation},
		{"op 0", 7, 0, ErrARPOperation},
	}
	for _, c := range bad {
		m := bytes.Clone(b)
		m[c.off] = c.val
		_, err := ParseARP(m)
		wantErr(t, c.name, err, c.want)
	}
	_, err = ParseARP(b[:27])
	wantErr(t, "27 bytes", err, ErrARPShort)
}

func TestIPv4(t *testing.T) {
	b := make([]byte, 100)
	n := PutIPv4(b, pa4A, pa4B, ProtoGRE, 64, 30, 0xbeef, true)
	if n != IPv4HeaderLen {
		t.Fatalf("PutIPv4 = %d", n)
	}
	p, err := ParseIPv4(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 50 || p.TotalLen() != 50 || len(p.Payload()) != 30 || p.HeaderLen() != 20 {
		t.Errorf("lengths: view %d total %d payload %d hl %d", len(p), p.TotalLen(), len(p.Payload()), p.HeaderLen())
	}
	if p.Src() != pa4A || p.Dst() != pa4B || p.Protocol() != ProtoGRE || p.TTL() != 64 || p.ID() != 0xbeef || !p.DF() || p.IsFragment() {
		t.Errorf("fields: %v %v proto %d ttl %d id %#x df %v frag %v", p.Src(), p.Dst(), p.Protocol(), p.TTL(), p.ID(), p.DF(), p.IsFragment())
	}

	frag := func(flags uint16) IPv4 {
		m := bytes.Clone(b[:50])
		binary.BigEndian.PutUint16(m[6:8], flags)
		binary.BigEndian.PutUint16(m[10:12], 0)
		binary.BigEndian.PutUint16(m[10:12], Checksum(m[:20], 0))
		q, err := ParseIPv4(m)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	if q := frag(0x2000); !q.IsFragment() || q.DF() {
		t.Error("MF set: want fragment, no DF")
	}
	if q := frag(0x0001); !q.IsFragment() {
		t.Error("offset 8: want fragment")
	}
	if q := frag(0); q.IsFragment() || q.DF() {
		t.Error("no flags: want whole datagram")
	}

	// A header with 4 bytes of options.
	o := make([]byte, 24+4)
	PutIPv4(o, ca4A, ca4B, ProtoUDP, 1, 0, 1, false)
	o[0] = 0x46
	binary.BigEndian.PutUint16(o[2:4], 28)
	o[20], o[21], o[22], o[23] = 1, 1, 1, 0 // NOP NOP NOP EOL
	binary.BigEndian.PutUint16(o[10:12], 0)
	binary.BigEndian.PutUint16(o[10:12], Checksum(o[:24], 0))
	q, err := ParseIPv4(o)
	if err != nil {
		t.Fatal(err)
	}
	if q.HeaderLen() != 24 || len(q.Payload()) != 4 {
		t.Errorf("options: hl %d payload %d", q.HeaderLen(), len(q.Payload()))
	}

	mut := func(f func(m []byte), fixSum bool) []byte {
		m := bytes.Clone(b[:50])
		f(m)
		if fixSum {
			binary.BigEndian.PutUint16(m[10:12], 0)
			binary.BigEndian.PutUint16(m[10:12], Checksum(m[:20], 0))
		}
		return m
	}
	bad := []struct {
		name string
		b    []byte
		want error
	}{
		{"19 bytes", b[:19], ErrIPv4Short},
		{"version 6", mut(func(m []byte) { m[0] = 0x65 }, true), ErrIPv4Version},
		{"IHL 4", mut(func(m []byte) { m[0] = 0x44 }, false), ErrIPv4IHL},
		{"IHL past buffer", mut(func(m []byte) { m[0] = 0x4f }, false)[:40], ErrIPv4IHL},
		{"total 19", mut(func(m []byte) { binary.BigEndian.PutUint16(m[2:4], 19) }, true), ErrIPv4TotalLen},
		{"total past buffer", mut(func(m []byte) { binary.BigEndian.PutUint16(m[2:4], 51) }, true), ErrIPv4TotalLen},
		{"bad checksum", mut(func(m []byte) { m[11] ^= 1 }, false), ErrIPv4Checksum},
		{"changed TTL", mut(func(m []byte) { m[8] = 63 }, false), ErrIPv4Checksum},
	}
	for _, c := range bad {
		_, err := ParseIPv4(c.b)
		wantErr(t, c.name, err, c.want)
	}
}

func TestIPv4DecTTL(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 20)
	for i := range 2000 {
		var s, d [4]byte
		binary.BigEndian.PutUint32(s[:], r.Uint32())
		binary.BigEndian.PutUint32(d[:], r.Uint32())
		ttl := uint8(i%255 + 1)
		PutIPv4(b, netip.AddrFrom4(s), netip.AddrFrom4(d), uint8(r.Uint32()), ttl, int(r.Uint32()%1400), uint16(r.Uint32()), r.Uint32()&1 == 0)
		p := IPv4(b)
		p.DecTTL()
		if p.TTL() != ttl-1 {
			t.Fatalf("TTL %d -> %d", ttl, p.TTL())
		}
		if Checksum(b, 0) != 0 {
			t.Fatalf("header %x: checksum invalid after DecTTL", b)
		}
	}
	PutIPv4(b, pa4A, pa4B, ProtoGRE, 0, 0, 0, false)
	before := bytes.Clone(b)
	IPv4(b).DecTTL()
	if !bytes.Equal(before, b) {
		t.Error("DecTTL changed a packet with TTL 0")
	}
}

func TestIPv6(t *testing.T) {
	b := make([]byte, 120)
	if n := PutIPv6(b, ca6A, ca6B, ProtoUDP, 64, 60); n != IPv6HeaderLen {
		t.Fatalf("PutIPv6 = %d", n)
	}
	p, err := ParseIPv6(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 100 || p.PayloadLen() != 60 || len(p.Payload()) != 60 {
		t.Errorf("lengths: view %d payload %d", len(p), p.PayloadLen())
	}
	if p.Src() != ca6A || p.Dst() != ca6B || p.NextHeader() != ProtoUDP || p.HopLimit() != 64 || p.FlowLabel() != 0 {
		t.Errorf("fields: %v %v nh %d hl %d fl %d", p.Src(), p.Dst(), p.NextHeader(), p.HopLimit(), p.FlowLabel())
	}
	p.SetFlowLabel(0xfffabcde)
	if p.FlowLabel() != 0xabcde || p[0]>>4 != 6 {
		t.Errorf("SetFlowLabel: label %#x version %d", p.FlowLabel(), p[0]>>4)
	}
	p.DecHopLimit()
	if p.HopLimit() != 63 {
		t.Errorf("DecHopLimit: %d", p.HopLimit())
	}
	p[7] = 0
	p.DecHopLimit()
	if p.HopLimit() != 0 {
		t.Error("DecHopLimit wrapped 0")
	}

	_, err = ParseIPv6(b[:39])
	wantErr(t, "39 bytes", err, ErrIPv6Short)
	v4 := bytes.Clone(b)
	v4[0] = 0x45
	_, err = ParseIPv6(v4)
	wantErr(t, "version 4", err, ErrIPv6Version)
	_, err = ParseIPv6(b[:99])
	wantErr(t, "payload past buffer", err, ErrIPv6PayloadLen)
}

// naiveChecksum is RFC 1071 word by word, the reference for Checksum.
func naiveChecksum(b []byte, initial uint32) uint16 {
	s := initial>>16 + initial&0xffff
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = s&0xffff + s>>16
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestChecksum(t *testing.T) {
	// RFC 1071 section 3 example: the sum is 0xddf2.
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != ^uint16(0xddf2) {
		t.Errorf("RFC 1071 example: %#x, want %#x", got, ^uint16(0xddf2))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for n := range 200 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if n%3 == 0 {
			for i := range b {
				b[i] = 0xff
			}
		}
		init := r.Uint32() >> uint(r.IntN(32))
		if got, want := Checksum(b, init), naiveChecksum(b, init); got != want {
			t.Fatalf("len %d initial %#x: %#x, want %#x", n, init, got, want)
		}
	}
}

// IPv4HeaderChecksumOK agrees with Checksum on random headers, on the same
// headers with their checksum set, and on all-ones words.
func TestIPv4HeaderChecksumOK(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 100000 {
		b := make([]byte, IPv4HeaderLen)
		for j := range b {
			b[j] = byte(r.Uint32())
			if i%7 == 0 {
				b[j] |= 0xf0
			}
		}
		if i%2 == 0 {
			b[10], b[11] = 0, 0
			binary.BigEndian.PutUint16(b[10:12], Checksum(b, 0))
		}
		if got, want := IPv4HeaderChecksumOK(b), Checksum(b, 0) == 0; got != want {
			t.Fatalf("% x: %v, want %v", b, got, want)
		}
	}
	ones := bytes.Repeat([]byte{0xff}, IPv4HeaderLen)
	if !IPv4HeaderChecksumOK(ones) || IPv4HeaderChecksumOK(make([]byte, IPv4HeaderLen)) {
		t.Fatal("all-ones header must verify and an all-zero one must not, as with Checksum")
	}
}

func TestUDP(t *testing.T) {
	b := make([]byte, 40)
	if n := PutUDP(b, 50000, VXLANPort, 10); n != UDPHeaderLen {
		t.Fatalf("PutUDP = %d", n)
	}
	copy(b[8:], "0123456789")
	u, err := ParseUDP(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 18 || u.Length() != 18 || u.SrcPort() != 50000 || u.DstPort() != VXLANPort || string(u.Payload()) != "0123456789" || u.Checksum() != 0 {
		t.Errorf("fields: len %d sport %d dport %d payload %q", u.Length(), u.SrcPort(), u.DstPort(), u.Payload())
	}
	if !UDPChecksumValid(u, pa4A, pa4B) {
		t.Error("zero checksum over IPv4 must be accepted")
	}
	if UDPChecksumValid(u, ca6A, ca6B) {
		t.Error("zero checksum over IPv6 must be rejected")
	}
	for _, ab := range [][2]netip.Addr{{pa4A, pa4B}, {ca6A, ca6B}} {
		SetUDPChecksum(u, ab[0], ab[1])
		if u.Checksum() == 0 || !UDPChecksumValid(u, ab[0], ab[1]) {
			t.Errorf("%v: checksum %#x not valid", ab, u.Checksum())
		}
		u[9] ^= 0x40
		if UDPChecksumValid(u, ab[0], ab[1]) {
			t.Errorf("%v: corrupted payload still valid", ab)
		}
		u[9] ^= 0x40
	}

	// Choose a payload word that makes the computed checksum 0: RFC 768
	// requires it to be sent as 0xffff.
	z := make([]byte, 10)
	PutUDP(z, 1, 2, 2)
	binary.BigEndian.PutUint16(z[8:], Checksum(z, PseudoHeaderSum(pa4A, pa4B, ProtoUDP, 10)))
	SetUDPChecksum(UDP(z), pa4A, pa4B)
	if UDP(z).Checksum() != 0xffff || !UDPChecksumValid(UDP(z), pa4A, pa4B) {
		t.Errorf("zero checksum sent as %#x", UDP(z).Checksum())
	}

	_, err = ParseUDP(b[:7])
	wantErr(t, "7 bytes", err, ErrUDPShort)
	_, err = ParseUDP(b[:17])
	wantErr(t, "length past buffer", err, ErrUDPLength)
	m := bytes.Clone(b)
	binary.BigEndian.PutUint16(m[4:6], 7)
	_, err = ParseUDP(m)
	wantErr(t, "length 7", err, ErrUDPLength)
}

func TestFlowPorts(t *testing.T) {
	l4 := []byte{0x12, 0x34, 0x00, 0x50, 0, 0, 0, 0}
	for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
		if s, d := FlowPorts(proto, l4); s != 0x1234 || d != 80 {
			t.Errorf("proto %d: %d %d", proto, s, d)
		}
	}
	if s, d := FlowPorts(ProtoICMP, l4); s != 0 || d != 0 {
		t.Errorf("ICMP: %d %d", s, d)
	}
	if s, d := FlowPorts(ProtoTCP, l4[:3]); s != 0 || d != 0 {
		t.Errorf("short: %d %d", s, d)
	}
}

func TestICMPv4(t *testing.T) {
	invoking := make([]byte, 1500)
	PutIPv4(invoking, ca4A, ca4B, ProtoUDP, 64, 1480, 7, true)
	for i := 20; i < len(invoking); i++ {
		invoking[i] = byte(i)
	}
	b := make([]byte, 2000)
	n := PutICMPv4DestUnreachable(b, ICMPv4CodeFragNeeded, 1458, invoking)
	if n+IPv4HeaderLen != 576 {
		t.Errorf("frag needed for a 1500-byte packet: %d bytes, want 576 with the IPv4 header", n+IPv4HeaderLen)
	}
	m, err := ParseICMPv4(b[:n])
	if err != nil {
		t.Fatal(err)
	}
	if m.Type() != ICMPv4DestUnreachable || m.Code() != ICMPv4CodeFragNeeded || m.NextHopMTU() != 1458 || !bytes.Equal(m.Payload(), invoking[:548]) {
		t.Errorf("fields: type %d code %d mtu %d", m.Type(), m.Code(), m.NextHopMTU())
	}

	if n := PutICMPv4DestUnreachable(b, ICMPv4CodeHostUnreachable, 0, invoking[:60]); n != 68 {
		t.Errorf("short invoking packet: %d bytes, want 68", n)
	}
	if _, err := ParseICMPv4(b[:68]); err != nil {
		t.Error(err)
	}
	if n := PutICMPv4DestUnreachable(b[:100], ICMPv4CodeNetUnreachable, 0, invoking); n != 100 {
		t.Errorf("small buffer: %d bytes, want 100", n)
	}
	if _, err := ParseICMPv4(b[:100]); err != nil {
		t.Error(err)
	}

	_, err = ParseICMPv4(b[:7])
	wantErr(t, "7 bytes", err, ErrICMPv4Short)
	b[50] ^= 1
	_, err = ParseICMPv4(b[:100])
	wantErr(t, "corrupted", err, ErrICMPv4Checksum)

	echo := []byte{ICMPv4Echo, 0, 0, 0, 0x12, 0x34, 0x00, 0x07, 'h', 'i'}
	binary.BigEndian.PutUint16(echo[2:4], Checksum(echo, 0))
	e, err := ParseICMPv4(echo)
	if err != nil {
		t.Fatal(err)
	}
	if e.Type() != ICMPv4Echo || e.EchoID() != 0x1234 || e.EchoSeq() != 7 {
		t.Errorf("echo: type %d id %#x seq %d", e.Type(), e.EchoID(), e.EchoSeq())
	}
}

// putNS writes a neighbour solicitation with the given raw options.
func putNS(b []byte, src, dst, target netip.Addr, opts []byte) int {
	b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7] = ICMPv6NeighborSolicitation, 0, 0, 0, 0, 0, 0, 0
	t := target.As16()
	copy(b[8:24], t[:])
	n := 24 + copy(b[24:], opts)
	setICMPv6Checksum(b[:n], src, dst)
	return n
}

func TestICMPv6ND(t *testing.T) {
	b := make([]byte, 100)
	n := PutNeighborAdvert(b, ca6B, ca6A, ca6B, macB, NAFlagSolicited|NAFlagOverride)
	if n != NeighborAdvertLen {
		t.Fatalf("PutNeighborAdvert = %d, want 32", n)
	}
	m, err := ParseICMPv6(b[:n], ca6B, ca6A)
	if err != nil {
		t.Fatal(err)
	}
	mac, ok := m.NDTargetLinkAddr()
	if m.Type() != ICMPv6NeighborAdvertisement || m.Code() != 0 || m.NDTarget() != ca6B || !ok || mac != macB ||
		m.NAFlags() != NAFlagSolicited|NAFlagOverride {
		t.Errorf("NA: type %d target %v mac %v/%v flags %#x", m.Type(), m.NDTarget(), mac, ok, m.NAFlags())
	}
	if _, ok := m.NDSourceLinkAddr(); ok {
		t.Error("NA has no source link-layer option")
	}
	_, err = ParseICMPv6(b[:n], ca6B, netip.MustParseAddr("fd00::8"))
	wantErr(t, "pseudo-header with another destination", err, ErrICMPv6Checksum)

	sol := netip.MustParseAddr("ff02::1:ff00:7")
	// An unknown option (type 14, nonce) before the source link-layer option.
	opts := []byte{14, 1, 1, 2, 3, 4, 5, 6, NDOptSourceLinkAddr, 1, 0, 0, 0, 0, 0, 0}
	copy(opts[10:16], macA[:])
	n = putNS(b, ca6A, sol, ca6B, opts)
	m, err = ParseICMPv6(b[:n], ca6A, sol)
	if err != nil {
		t.Fatal(err)
	}
	if mac, ok := m.NDSourceLinkAddr(); !ok || mac != macA || m.NDTarget() != ca6B || m.Type() != ICMPv6NeighborSolicitation {
		t.Errorf("NS: %v %v target %v", mac, ok, m.NDTarget())
	}

	malformed := [][]byte{
		{NDOptSourceLinkAddr, 0, 1, 2, 3, 4, 5, 6},        // length 0
		{14, 0, 1, 2, 3, 4, 5, 6, 1, 1, 1, 2, 3, 4, 5, 6}, // length 0 before a good option
		{NDOptSourceLinkAddr, 2, 1, 2, 3, 4, 5, 6},        // runs past the message
		{NDOptSourceLinkAddr, 1, 1, 2, 3},                 // truncated
	}
	for i, o := range malformed {
		n := putNS(b, ca6A, sol, ca6B, o)
		m, err := ParseICMPv6(b[:n], ca6A, sol)
		if err != nil {
			t.Fatalf("option case %d: %v", i, err)
		}
		if mac, ok := m.NDSourceLinkAddr(); ok {
			t.Errorf("malformed option case %d accepted: %v", i, mac)
		}
	}

	n = putNS(b, ca6A, sol, ca6B, nil)
	_, err = ParseICMPv6(b[:n-1], ca6A, sol)
	wantErr(t, "NS of 23 bytes", err, ErrNDShort)
	b[0] = ICMPv6EchoRequest
	_, err = ParseICMPv6(b[:7], ca6A, sol)
	wantErr(t, "echo of 7 bytes", err, ErrICMPv6Short)
	_, err = ParseICMPv6(b[:3], ca6A, sol)
	wantErr(t, "3 bytes", err, ErrICMPv6Short)
	if ICMPv6(b[:10]).NDTarget().IsValid() {
		t.Error("NDTarget of a short message must be the zero Addr")
	}
}

func TestICMPv6Errors(t *testing.T) {
	invoking := make([]byte, 1500)
	PutIPv6(invoking, ca6A, ca6B, ProtoUDP, 64, 1460)
	b := make([]byte, 1500)
	n := PutICMPv6PacketTooBig(b, ca6B, ca6A, 1438, invoking)
	if n+IPv6HeaderLen != 1280 {
		t.Errorf("packet too big: %d bytes, want 1280 with the IPv6 header", n+IPv6HeaderLen)
	}
	m, err := ParseICMPv6(b[:n], ca6B, ca6A)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type() != ICMPv6PacketTooBig || m.Code() != 0 || m.MTU() != 1438 || !bytes.Equal(m[8:], invoking[:1232]) {
		t.Errorf("PTB: type %d code %d mtu %d", m.Type(), m.Code(), m.MTU())
	}

	n = PutICMPv6DestUnreachable(b, ca6B, ca6A, 3, invoking[:80])
	if n != 88 {
		t.Errorf("dest unreachable quoting 80 bytes: %d", n)
	}
	m, err = ParseICMPv6(b[:n], ca6B, ca6A)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type() != ICMPv6DestUnreachable || m.Code() != 3 || m.MTU() != 0 {
		t.Errorf("DU: type %d code %d unused %d", m.Type(), m.Code(), m.MTU())
	}
}

func TestNVGRE(t *testing.T) {
	b := make([]byte, 30)
	if n := PutNVGRE(b, 0xfffffe, 0xa5); n != NVGREHeaderLen {
		t.Fatalf("PutNVGRE = %d", n)
	}
	if !bytes.Equal(b[:8], []byte{0x20, 0x00, 0x65, 0x58, 0xff, 0xff, 0xfe, 0xa5}) {
		t.Errorf("wire bytes %x", b[:8])
	}
	g, err := ParseNVGRE(b)
	if err != nil {
		t.Fatal(err)
	}
	if g.VSID() != 0xfffffe || g.FlowID() != 0xa5 || g.Key() != 0xfffffea5 || len(g.Payload()) != 22 {
		t.Errorf("fields: vsid %#x flow %#x key %#x", g.VSID(), g.FlowID(), g.Key())
	}
	bad := []struct {
		name   string
		b0, b1 byte
		want   error
	}{
		{"checksum bit", 0xa0, 0x00, ErrNVGREFlags},
		{"sequence bit", 0x30, 0x00, ErrNVGREFlags},
		{"no key", 0x00, 0x00, ErrNVGREFlags},
		{"version 1", 0x20, 0x01, ErrNVGREFlags},
	}
	for _, c := range bad {
		m := bytes.Clone(b)
		m[0], m[1] = c.b0, c.b1
		_, err := ParseNVGRE(m)
		wantErr(t, c.name, err, c.want)
	}
	m := bytes.Clone(b)
	m[2], m[3] = 0x08, 0x00
	_, err = ParseNVGRE(m)
	wantErr(t, "protocol IPv4", err, ErrNVGREProtocol)
	_, err = ParseNVGRE(b[:7])
	wantErr(t, "7 bytes", err, ErrNVGREShort)
}

func TestVXLAN(t *testing.T) {
	b := make([]byte, 20)
	if n := PutVXLAN(b, 0x123456); n != VXLANHeaderLen {
		t.Fatalf("PutVXLAN = %d", n)
	}
	if !bytes.Equal(b[:8], []byte{0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0}) {
		t.Errorf("wire bytes %x", b[:8])
	}
	v, err := ParseVXLAN(b)
	if err != nil {
		t.Fatal(err)
	}
	if v.VNI() != 0x123456 || len(v.Payload()) != 12 {
		t.Errorf("VNI %#x payload %d", v.VNI(), len(v.Payload()))
	}
	m := bytes.Clone(b)
	m[0], m[3], m[7] = 0xff, 0xff, 0xff // reserved bits are ignored on receipt
	if v, err := ParseVXLAN(m); err != nil || v.VNI() != 0x123456 {
		t.Errorf("reserved bits set: %v %#x", err, v.VNI())
	}
	m[0] = 0xf7
	_, err = ParseVXLAN(m)
	wantErr(t, "I flag clear", err, ErrVXLANFlags)
	_, err = ParseVXLAN(b[:7])
	wantErr(t, "7 bytes", err, ErrVXLANShort)
}
