package packet

import (
	"net/netip"
	"testing"
)

func TestDescribe(t *testing.T) {
	a4, b4 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	a6, b6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::3")
	m1, m2 := MAC{2, 0, 0, 0, 0, 1}, MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	udp := make([]byte, 14+20+8)
	n := PutEthernet(udp, m2, m1, EtherTypeIPv4)
	n += PutIPv4(udp[n:], a4, b4, ProtoUDP, 64, 8, 1, true)
	PutUDP(udp[n:], 40000, 7777, 0)

	arp := make([]byte, 14+ARPLen)
	n = PutEthernet(arp, m2, m1, EtherTypeARP)
	PutARP(arp[n:], ARPRequest, m1, a4, MAC{}, b4)

	ns := make([]byte, 14+40+24)
	n = PutEthernet(ns, m2, m1, EtherTypeIPv6)
	n += PutIPv6(ns[n:], a6, b6, ProtoICMPv6, 255, 24)
	ns[n] = ICMPv6NeighborSolicitation
	copy(ns[n+8:], b6.AsSlice())

	gre := make([]byte, 14+20+NVGREHeaderLen+len(udp))
	n = PutEthernet(gre, m1, m1, EtherTypeIPv4)
	n += PutIPv4(gre[n:], netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1"), ProtoGRE, 64, NVGREHeaderLen+len(udp), 1, true)
	n += PutNVGRE(gre[n:], 5001, 0)
	copy(gre[n:], udp)

	for _, c := range []struct {
		name          string
		frame         []byte
		src, dst, hdr string
	}{
		{"UDP", udp, "10.0.0.1", "10.0.0.2", "UDP 40000 > 7777"},
		{"UDP cut short", udp[:14+20+2], "10.0.0.1", "10.0.0.2", "UDP, cut short"},
		{"ARP", arp, m1.String(), m2.String(), "ARP who-has 10.0.0.2 tell 10.0.0.1"},
		{"ND", ns, "fd00::1", "fd00::3", "ND solicit fd00::3"},
		{"NVGRE", gre, "10.0.0.1", "10.0.0.2", "NVGRE VSID 5001 198.18.0.2 > 198.18.0.1: UDP 40000 > 7777"},
		{"runt", udp[:10], "", "", "10 bytes, shorter than an Ethernet header"},
	} {
		s := Describe(c.frame)
		if s.Src != c.src || s.Dst != c.dst || s.Header != c.hdr {
			t.Errorf("%s: %+v, want %s > %s %q", c.name, s, c.src, c.dst, c.hdr)
		}
	}
}

// FuzzDescribe: any bytes, any length, are described without a panic.
func FuzzDescribe(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 14))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := Describe(b)
		if s.Header == "" {
			t.Fatalf("%x: no header description", b)
		}
	})
}
