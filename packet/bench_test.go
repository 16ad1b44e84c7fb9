package packet

import (
	"net/netip"
	"testing"
)

var (
	sinkAddr netip.Addr
	sinkMAC  MAC
	sinkU32  uint32
	sinkU16  uint16
	sinkN    int
)

// nvgreFrame is an NVGRE-over-IPv4 frame carrying a CA UDP packet.
func nvgreFrame() []byte {
	b := make([]byte, 256)
	inner := make([]byte, 128)
	in := putInnerUDP(inner, ca4A, ca4B, "0123456789abcdef")
	n := PutEthernet(b, macB, macA, EtherTypeIPv4)
	n += PutIPv4(b[n:], pa4A, pa4B, ProtoGRE, 64, NVGREHeaderLen+in, 1, true)
	n += PutNVGRE(b[n:], 0x5001, 3)
	n += copy(b[n:], inner[:in])
	return b[:n]
}

// vxlanFrame is a VXLAN-over-IPv4 frame carrying a CA UDP packet.
func vxlanFrame() []byte {
	b := make([]byte, 256)
	inner := make([]byte, 128)
	in := putInnerUDP(inner, ca4A, ca4B, "0123456789abcdef")
	n := PutEthernet(b, macB, macA, EtherTypeIPv4)
	n += PutIPv4(b[n:], pa4A, pa4B, ProtoUDP, 64, UDPHeaderLen+VXLANHeaderLen+in, 1, true)
	n += PutUDP(b[n:], 49152, VXLANPort, VXLANHeaderLen+in)
	n += PutVXLAN(b[n:], 0x5001)
	n += copy(b[n:], inner[:in])
	return b[:n]
}

// decapNVGRE is the receive path: outer headers, NVGRE, inner headers and
// the fields a lookup needs.
func decapNVGRE(f []byte) bool {
	e, err := ParseEthernet(f)
	if err != nil || e.Type() != EtherTypeIPv4 {
		return false
	}
	o, err := ParseIPv4(e.Payload())
	if err != nil || o.Protocol() != ProtoGRE {
		return false
	}
	g, err := ParseNVGRE(o.Payload())
	if err != nil {
		return false
	}
	ie, err := ParseEthernet(g.Payload())
	if err != nil {
		return false
	}
	ip, err := ParseIPv4(ie.Payload())
	if err != nil {
		return false
	}
	sinkAddr, sinkMAC, sinkU32 = o.Src(), ie.Src(), g.VSID()
	sinkAddr = ip.Src()
	sinkU16, _ = FlowPorts(ip.Protocol(), ip.Payload())
	return true
}

func decapVXLAN(f []byte) bool {
	e, err := ParseEthernet(f)
	if err != nil {
		return false
	}
	o, err := ParseIPv4(e.Payload())
	if err != nil || o.Protocol() != ProtoUDP {
		return false
	}
	u, err := ParseUDP(o.Payload())
	if err != nil || u.DstPort() != VXLANPort {
		return false
	}
	v, err := ParseVXLAN(u.Payload())
	if err != nil {
		return false
	}
	ie, err := ParseEthernet(v.Payload())
	if err != nil {
		return false
	}
	ip, err := ParseIPv4(ie.Payload())
	if err != nil {
		return false
	}
	sinkAddr, sinkMAC, sinkU32 = ip.Dst(), ie.Dst(), v.VNI()
	return true
}

// encapNVGRE prepends outer Ethernet, IPv4 and NVGRE headers in front of an
// inner frame already placed at b[42:].
func encapNVGRE(b []byte, innerLen int) int {
	n := PutEthernet(b, macB, macA, EtherTypeIPv4)
	n += PutIPv4(b[n:], pa4A, pa4B, ProtoGRE, 64, NVGREHeaderLen+innerLen, 0, true)
	n += PutNVGRE(b[n:], 0x5001, 3)
	return n + innerLen
}

func answerARP(req, out []byte) int {
	e, err := ParseEthernet(req)
	if err != nil {
		return 0
	}
	a, err := ParseARP(e.Payload())
	if err != nil || a.Op() != ARPRequest {
		return 0
	}
	n := PutEthernet(out, a.SenderMAC(), macB, EtherTypeARP)
	return n + PutARP(out[n:], ARPReply, macB, a.TargetIP(), a.SenderMAC(), a.SenderIP())
}

func answerNS(req, out []byte) int {
	e, err := ParseEthernet(req)
	if err != nil {
		return 0
	}
	p, err := ParseIPv6(e.Payload())
	if err != nil {
		return 0
	}
	m, err := ParseICMPv6(p.Payload(), p.Src(), p.Dst())
	if err != nil || m.Type() != ICMPv6NeighborSolicitation {
		return 0
	}
	mac, _ := m.NDSourceLinkAddr()
	n := PutEthernet(out, mac, macB, EtherTypeIPv6)
	n += PutIPv6(out[n:], m.NDTarget(), p.Src(), ProtoICMPv6, 255, NeighborAdvertLen)
	return n + PutNeighborAdvert(out[n:], m.NDTarget(), p.Src(), m.NDTarget(), macB, NAFlagSolicited|NAFlagOverride)
}

func arpRequest() []byte {
	b := make([]byte, 64)
	n := PutEthernet(b, Broadcast, macA, EtherTypeARP)
	return b[:n+PutARP(b[n:], ARPRequest, macA, ca4A, MAC{}, ca4B)]
}

func nsRequest() []byte {
	b := make([]byte, 128)
	sol := netip.MustParseAddr("ff02::1:ff00:7")
	n := PutEthernet(b, MAC{0x33, 0x33, 0xff, 0, 0, 7}, macA, EtherTypeIPv6)
	ipb := b[n:]
	n += IPv6HeaderLen
	m := putNS(b[n:], ca6A, sol, ca6B, []byte{NDOptSourceLinkAddr, 1, 0x00, 0x15, 0x5d, 0x01, 0x02, 0x03})
	PutIPv6(ipb, ca6A, sol, ProtoICMPv6, 255, m)
	return b[:n+m]
}

func TestFastPathDoesNotAllocate(t *testing.T) {
	nv, vx, arp, ns := nvgreFrame(), vxlanFrame(), arpRequest(), nsRequest()
	out := make([]byte, 2048)
	inv := make([]byte, 1500)
	PutIPv4(inv, ca4A, ca4B, ProtoUDP, 64, 1480, 0, true)
	cases := map[string]func(){
		"decap NVGRE": func() {
			if !decapNVGRE(nv) {
				t.Fatal("decap NVGRE failed")
			}
		},
		"decap VXLAN": func() {
			if !decapVXLAN(vx) {
				t.Fatal("decap VXLAN failed")
			}
		},
		"encap NVGRE": func() { sinkN = encapNVGRE(out, 100) },
		"ARP reply": func() {
			if answerARP(arp, out) == 0 {
				t.Fatal("no ARP reply")
			}
		},
		"NA reply": func() {
			if answerNS(ns, out) == 0 {
				t.Fatal("no NA reply")
			}
		},
		"frag needed":    func() { sinkN = PutICMPv4DestUnreachable(out, ICMPv4CodeFragNeeded, 1458, inv) },
		"packet too big": func() { sinkN = PutICMPv6PacketTooBig(out, ca6B, ca6A, 1280, inv) },
		"DecTTL":         func() { IPv4(inv).DecTTL(); inv[8] = 64 },
		"malformed":      func() { _, err := ParseNVGRE(inv[:4]); _ = err },
		"IP rewrite":     func() { IPv4(inv).SetSrc(pa4A); IPv4(inv).SetSrc(ca4A) },
	}
	for name, f := range cases {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, a)
		}
	}
	if answerNS(ns, out) == 0 {
		t.Fatal("no NA reply")
	}
	e, _ := ParseEthernet(out)
	p, _ := ParseIPv6(e.Payload())
	m, err := ParseICMPv6(p.Payload(), p.Src(), p.Dst())
	if mac, _ := m.NDTargetLinkAddr(); err != nil || p.Src() != ca6B || p.Dst() != ca6A || e.Dst() != macA || mac != macB {
		t.Errorf("NA reply: %v src %v dst %v eth dst %v mac %v", err, p.Src(), p.Dst(), e.Dst(), mac)
	}
}

func BenchmarkDecapNVGRE(b *testing.B) {
	f := nvgreFrame()
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		decapNVGRE(f)
	}
}

func BenchmarkDecapVXLAN(b *testing.B) {
	f := vxlanFrame()
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		decapVXLAN(f)
	}
}

func BenchmarkEncapNVGRE(b *testing.B) {
	out := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		sinkN = encapNVGRE(out, 1400)
	}
}

func BenchmarkARPReply(b *testing.B) {
	req, out := arpRequest(), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		sinkN = answerARP(req, out)
	}
}

func BenchmarkNeighborAdvertReply(b *testing.B) {
	req, out := nsRequest(), make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		sinkN = answerNS(req, out)
	}
}

func BenchmarkDecTTL(b *testing.B) {
	h := make([]byte, 20)
	PutIPv4(h, pa4A, pa4B, ProtoGRE, 255, 0, 0, false)
	p := IPv4(h)
	b.ReportAllocs()
	for b.Loop() {
		p.DecTTL()
		p[8] = 255
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	d := make([]byte, 1500)
	for i := range d {
		d[i] = byte(i)
	}
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		sinkU16 = Checksum(d, 0)
	}
}

func BenchmarkICMPv4FragNeeded(b *testing.B) {
	inv, out := make([]byte, 1500), make([]byte, 600)
	PutIPv4(inv, ca4A, ca4B, ProtoUDP, 64, 1480, 0, true)
	b.ReportAllocs()
	for b.Loop() {
		sinkN = PutICMPv4DestUnreachable(out, ICMPv4CodeFragNeeded, 1458, inv)
	}
}

func BenchmarkRewriteIPv4UDP(b *testing.B) {
	f := make([]byte, 128)
	n := putInnerUDP(f, ca4A, ca4B, "0123456789abcdef")
	e, _ := ParseEthernet(f[:n])
	p, _ := ParseIPv4(e.Payload())
	b.ReportAllocs()
	for b.Loop() {
		p.SetSrc(pa4A)
		p.SetDst(pa4B)
	}
}
