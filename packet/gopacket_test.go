package packet

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// These tests use gopacket as an independent decoder and encoder: frames
// built here must decode there with the same fields and valid checksums, and
// frames serialized there must parse here.

func decodeGP(t *testing.T, frame []byte) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode %x: %v", frame, el.Error())
	}
	for _, m := range checksumMismatches(t, p) {
		t.Errorf("gopacket: bad checksum in layer %s", m.Layer.LayerType())
	}
	return p
}

func checksumMismatches(t *testing.T, p gopacket.Packet) []gopacket.ChecksumMismatch {
	t.Helper()
	// gopacket does not tell decoded UDP/ICMPv6 layers which IP header
	// supplies their pseudo-header: give each the nearest one before it.
	var nl gopacket.NetworkLayer
	for _, l := range p.Layers() {
		if n, ok := l.(gopacket.NetworkLayer); ok {
			nl = n
		}
		if c, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok && nl != nil {
			if err := c.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
		}
	}
	err, mism := p.VerifyChecksums()
	if err != nil {
		t.Fatalf("gopacket checksum verification: %v", err)
	}
	return mism
}

func serializeGP(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ip(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func addrOf(t *testing.T, b net.IP) netip.Addr {
	t.Helper()
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		t.Fatalf("bad address %v", b)
	}
	return a.Unmap()
}

// putInnerUDP writes Ethernet + IP + UDP (with checksum) + payload for a CA
// flow and returns its length.
func putInnerUDP(b []byte, src, dst netip.Addr, payload string) int {
	n := 0
	if src.Is4() {
		n += PutEthernet(b, macB, macA, EtherTypeIPv4)
		n += PutIPv4(b[n:], src, dst, ProtoUDP, 64, UDPHeaderLen+len(payload), 1, true)
	} else {
		n += PutEthernet(b, macB, macA, EtherTypeIPv6)
		n += PutIPv6(b[n:], src, dst, ProtoUDP, 64, UDPHeaderLen+len(payload))
	}
	u := b[n:]
	n += PutUDP(u, 40000, 33333, len(payload))
	n += copy(b[n:], payload)
	SetUDPChecksum(UDP(u), src, dst)
	return n
}

func TestGopacketDecodesPut(t *testing.T) {
	b := make([]byte, 2048)

	t.Run("harness notices a bad checksum", func(t *testing.T) {
		n := putInnerUDP(b, ca6A, ca6B, "hello")
		b[n-1] ^= 1
		p := gopacket.NewPacket(b[:n], layers.LayerTypeEthernet, gopacket.Default)
		if m := checksumMismatches(t, p); len(m) != 1 || m[0].Layer.LayerType() != layers.LayerTypeUDP {
			t.Errorf("corrupted UDP payload: mismatches %v", m)
		}
	})

	t.Run("VLAN ARP", func(t *testing.T) {
		n := PutEthernetVLAN(b, Broadcast, macA, 42, EtherTypeARP)
		n += PutARP(b[n:], ARPRequest, macA, ca4A, MAC{}, ca4B)
		p := decodeGP(t, b[:n])
		d := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
		a := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		if d.VLANIdentifier != 42 || d.Type != layers.EthernetTypeARP {
			t.Errorf("Dot1Q: %+v", d)
		}
		if a.Operation != ARPRequest || !bytes.Equal(a.SourceHwAddress, macA[:]) || addrOf(t, a.SourceProtAddress) != ca4A ||
			addrOf(t, a.DstProtAddress) != ca4B || a.AddrType != layers.LinkTypeEthernet || a.Protocol != layers.EthernetTypeIPv4 {
			t.Errorf("ARP: %+v", a)
		}
	})

	for _, c := range []struct {
		name                                   string
		outerSrc, outerDst, innerSrc, innerDst netip.Addr
	}{
		{"NVGRE v4 in v4", pa4A, pa4B, ca4A, ca4B},
		{"NVGRE v6 in v4", pa4A, pa4B, ca6A, ca6B},
		{"NVGRE v4 in v6", netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), ca4A, ca4B},
	} {
		t.Run(c.name, func(t *testing.T) {
			inner := make([]byte, 200)
			in := putInnerUDP(inner, c.innerSrc, c.innerDst, "hello")
			n := 0
			if c.outerSrc.Is4() {
				n += PutEthernet(b, macB, macA, EtherTypeIPv4)
				n += PutIPv4(b[n:], c.outerSrc, c.outerDst, ProtoGRE, 64, NVGREHeaderLen+in, 9, true)
			} else {
				n += PutEthernet(b, macB, macA, EtherTypeIPv6)
				n += PutIPv6(b[n:], c.outerSrc, c.outerDst, ProtoGRE, 64, NVGREHeaderLen+in)
			}
			n += PutNVGRE(b[n:], 0x123456, 0x77)
			n += copy(b[n:], inner[:in])
			p := decodeGP(t, b[:n])
			g := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
			if !g.KeyPresent || g.ChecksumPresent || g.SeqPresent || g.Version != 0 || g.Protocol != layers.EthernetTypeTransparentEthernetBridging || g.Key != 0x12345677 {
				t.Errorf("GRE: %+v", g)
			}
			u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if !ok || u.SrcPort != 40000 || u.DstPort != 33333 || string(u.Payload) != "hello" {
				t.Errorf("inner UDP: %+v", u)
			}
			ls := p.Layers()
			if ls[len(ls)-2].LayerType() != layers.LayerTypeUDP {
				t.Errorf("layers: %v", ls)
			}
		})
	}

	t.Run("VXLAN", func(t *testing.T) {
		inner := make([]byte, 200)
		in := putInnerUDP(inner, ca6A, ca6B, "vx")
		n := PutEthernet(b, macB, macA, EtherTypeIPv4)
		ipb := b[n:]
		n += PutIPv4(ipb, pa4A, pa4B, ProtoUDP, 64, UDPHeaderLen+VXLANHeaderLen+in, 3, false)
		ub := b[n:]
		n += PutUDP(ub, 51000, VXLANPort, VXLANHeaderLen+in)
		n += PutVXLAN(b[n:], 0xabcdef)
		n += copy(b[n:], inner[:in])
		SetUDPChecksum(UDP(ub), pa4A, pa4B)
		p := decodeGP(t, b[:n])
		v := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if !v.ValidIDFlag || v.VNI != 0xabcdef {
			t.Errorf("VXLAN: %+v", v)
		}
		i6 := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if addrOf(t, i6.SrcIP) != ca6A || addrOf(t, i6.DstIP) != ca6B || i6.HopLimit != 64 {
			t.Errorf("inner IPv6: %+v", i6)
		}
		o := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if addrOf(t, o.SrcIP) != pa4A || addrOf(t, o.DstIP) != pa4B || o.Id != 3 || o.Flags != 0 || o.TTL != 64 || o.IHL != 5 {
			t.Errorf("outer IPv4: %+v", o)
		}
	})

	t.Run("ICMPv4 frag needed", func(t *testing.T) {
		invoking := make([]byte, 1500)
		PutIPv4(invoking, ca4A, ca4B, ProtoUDP, 64, 1480, 7, true)
		n := PutEthernet(b, macA, macB, EtherTypeIPv4)
		ipb := b[n:]
		n += IPv4HeaderLen
		m := PutICMPv4DestUnreachable(b[n:], ICMPv4CodeFragNeeded, 1458, invoking)
		PutIPv4(ipb, netip.MustParseAddr("10.0.0.1"), ca4A, ProtoICMP, 64, m, 0, false)
		n += m
		p := decodeGP(t, b[:n])
		ic := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ic.TypeCode.Type() != ICMPv4DestUnreachable || ic.TypeCode.Code() != ICMPv4CodeFragNeeded || ic.Seq != 1458 || len(ic.Payload) != 548 {
			t.Errorf("ICMPv4: %v seq %d quote %d", ic.TypeCode, ic.Seq, len(ic.Payload))
		}
		if len(p.Data())-EthernetHeaderLen != 576 {
			t.Errorf("ICMP error is %d bytes of IP, want 576", len(p.Data())-EthernetHeaderLen)
		}
	})

	t.Run("ICMPv6 NA", func(t *testing.T) {
		n := PutEthernet(b, macA, macB, EtherTypeIPv6)
		n += PutIPv6(b[n:], ca6B, ca6A, ProtoICMPv6, 255, NeighborAdvertLen)
		n += PutNeighborAdvert(b[n:], ca6B, ca6A, ca6B, macB, NAFlagRouter|NAFlagSolicited)
		p := decodeGP(t, b[:n])
		na := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		if na.Flags != NAFlagRouter|NAFlagSolicited || addrOf(t, na.TargetAddress) != ca6B || len(na.Options) != 1 ||
			na.Options[0].Type != layers.ICMPv6OptTargetAddress || !bytes.Equal(na.Options[0].Data, macB[:]) {
			t.Errorf("NA: %+v", na)
		}
	})

	t.Run("ICMPv6 PTB", func(t *testing.T) {
		invoking := make([]byte, 1500)
		PutIPv6(invoking, ca6A, ca6B, ProtoUDP, 64, 1460)
		n := PutEthernet(b, macA, macB, EtherTypeIPv6)
		ipb := b[n:]
		n += IPv6HeaderLen
		m := PutICMPv6PacketTooBig(b[n:], ca6B, ca6A, 1438, invoking)
		PutIPv6(ipb, ca6B, ca6A, ProtoICMPv6, 64, m)
		n += m
		p := decodeGP(t, b[:n])
		ic := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		if ic.TypeCode.Type() != ICMPv6PacketTooBig || len(p.Data())-EthernetHeaderLen != 1280 {
			t.Errorf("PTB: %v, %d bytes", ic.TypeCode, len(p.Data())-EthernetHeaderLen)
		}
	})
}

func TestParseGopacketFrames(t *testing.T) {
	eth := func(typ layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: macA[:], DstMAC: macB[:], EthernetType: typ}
	}

	t.Run("VLAN ARP", func(t *testing.T) {
		f := serializeGP(t,
			&layers.Ethernet{SrcMAC: macA[:], DstMAC: Broadcast[:], EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 100, Priority: 5, Type: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: ARPReply, SourceHwAddress: macA[:], SourceProtAddress: ip(ca4A), DstHwAddress: macB[:], DstProtAddress: ip(ca4B)})
		e, err := ParseEthernet(f)
		if err != nil {
			t.Fatal(err)
		}
		if e.Dst() != Broadcast || e.Src() != macA || !e.HasVLAN() || e.VLANID() != 100 || e.Type() != EtherTypeARP {
			t.Errorf("Ethernet: vlan %d type %#x", e.VLANID(), e.Type())
		}
		a, err := ParseARP(e.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if a.Op() != ARPReply || a.SenderMAC() != macA || a.SenderIP() != ca4A || a.TargetMAC() != macB || a.TargetIP() != ca4B {
			t.Errorf("ARP: %v %v %v %v", a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
		}
	})

	t.Run("IPv4 UDP", func(t *testing.T) {
		i4 := &layers.IPv4{Version: 4, TTL: 17, Id: 0x4242, Flags: layers.IPv4MoreFragments, Protocol: layers.IPProtocolUDP, SrcIP: ip(ca4A), DstIP: ip(ca4B),
			Options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}
		u := &layers.UDP{SrcPort: 1234, DstPort: 5678}
		u.SetNetworkLayerForChecksum(i4)
		f := serializeGP(t, eth(layers.EthernetTypeIPv4), i4, u, gopacket.Payload("data"))
		e, _ := ParseEthernet(f)
		p, err := ParseIPv4(e.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if p.Src() != ca4A || p.Dst() != ca4B || p.TTL() != 17 || p.ID() != 0x4242 || !p.IsFragment() || p.DF() || p.Protocol() != ProtoUDP || p.HeaderLen() != 24 {
			t.Errorf("IPv4: %v %v ttl %d id %#x hl %d", p.Src(), p.Dst(), p.TTL(), p.ID(), p.HeaderLen())
		}
		ud, err := ParseUDP(p.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if ud.SrcPort() != 1234 || ud.DstPort() != 5678 || string(ud.Payload()) != "data" || !UDPChecksumValid(ud, p.Src(), p.Dst()) {
			t.Errorf("UDP: %d %d %q checksum %#x", ud.SrcPort(), ud.DstPort(), ud.Payload(), ud.Checksum())
		}
		if s, d := FlowPorts(p.Protocol(), p.Payload()); s != 1234 || d != 5678 {
			t.Errorf("FlowPorts: %d %d", s, d)
		}
	})

	t.Run("ICMPv4 echo", func(t *testing.T) {
		i4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: ip(ca4A), DstIP: ip(ca4B)}
		f := serializeGP(t, eth(layers.EthernetTypeIPv4), i4,
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(ICMPv4Echo, 0), Id: 9, Seq: 10}, gopacket.Payload("ping"))
		e, _ := ParseEthernet(f)
		p, err := ParseIPv4(e.Payload())
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseICMPv4(p.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if m.Type() != ICMPv4Echo || m.Code() != 0 || m.EchoID() != 9 || m.EchoSeq() != 10 || string(m.Payload()) != "ping" {
			t.Errorf("ICMPv4: type %d id %d seq %d", m.Type(), m.EchoID(), m.EchoSeq())
		}
	})

	icmp6 := func(t *testing.T, src, dst netip.Addr, ls ...gopacket.SerializableLayer) ICMPv6 {
		t.Helper()
		i6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip(src), DstIP: ip(dst), FlowLabel: 0x12345}
		ic := ls[0].(*layers.ICMPv6)
		ic.SetNetworkLayerForChecksum(i6)
		f := serializeGP(t, append([]gopacket.SerializableLayer{eth(layers.EthernetTypeIPv6), i6}, ls...)...)
		e, _ := ParseEthernet(f)
		p, err := ParseIPv6(e.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if p.Src() != src || p.Dst() != dst || p.HopLimit() != 255 || p.NextHeader() != ProtoICMPv6 || p.FlowLabel() != 0x12345 {
			t.Errorf("IPv6: %v %v hl %d nh %d fl %#x", p.Src(), p.Dst(), p.HopLimit(), p.NextHeader(), p.FlowLabel())
		}
		m, err := ParseICMPv6(p.Payload(), p.Src(), p.Dst())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("ICMPv6 NS", func(t *testing.T) {
		sol := netip.MustParseAddr("ff02::1:ff00:7")
		m := icmp6(t, ca6A, sol,
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(ICMPv6NeighborSolicitation, 0)},
			&layers.ICMPv6NeighborSolicitation{TargetAddress: ip(ca6B),
				Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: macA[:]}}})
		mac, ok := m.NDSourceLinkAddr()
		if m.Type() != ICMPv6NeighborSolicitation || m.NDTarget() != ca6B || !ok || mac != macA {
			t.Errorf("NS: type %d target %v mac %v %v", m.Type(), m.NDTarget(), mac, ok)
		}
	})

	t.Run("ICMPv6 NA", func(t *testing.T) {
		m := icmp6(t, ca6B, ca6A,
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(ICMPv6NeighborAdvertisement, 0)},
			&layers.ICMPv6NeighborAdvertisement{Flags: NAFlagSolicited | NAFlagOverride, TargetAddress: ip(ca6B),
				Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: macB[:]}}})
		mac, ok := m.NDTargetLinkAddr()
		if m.Type() != ICMPv6NeighborAdvertisement || m.NDTarget() != ca6B || !ok || mac != macB || m.NAFlags() != NAFlagSolicited|NAFlagOverride {
			t.Errorf("NA: type %d target %v mac %v %v flags %#x", m.Type(), m.NDTarget(), mac, ok, m.NAFlags())
		}
	})

	t.Run("ICMPv6 PTB", func(t *testing.T) {
		body := []byte{0, 0, 0x05, 0x00} // MTU 1280
		body = append(body, make([]byte, 48)...)
		m := icmp6(t, ca6B, ca6A, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(ICMPv6PacketTooBig, 0)}, gopacket.Payload(body))
		if m.Type() != ICMPv6PacketTooBig || m.MTU() != 1280 {
			t.Errorf("PTB: type %d mtu %d", m.Type(), m.MTU())
		}
	})

	t.Run("NVGRE", func(t *testing.T) {
		i4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolGRE, SrcIP: ip(pa4A), DstIP: ip(pa4B)}
		gre := &layers.GRE{KeyPresent: true, Protocol: layers.EthernetTypeTransparentEthernetBridging, Key: 0x00100001}
		innerIP := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: ip(ca4A), DstIP: ip(ca4B)}
		u := &layers.UDP{SrcPort: 7, DstPort: 9}
		u.SetNetworkLayerForChecksum(innerIP)
		f := serializeGP(t, eth(layers.EthernetTypeIPv4), i4, gre, eth(layers.EthernetTypeIPv4), innerIP, u, gopacket.Payload("x"))
		e, _ := ParseEthernet(f)
		p, err := ParseIPv4(e.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if p.Protocol() != ProtoGRE {
			t.Fatalf("outer protocol %d", p.Protocol())
		}
		g, err := ParseNVGRE(p.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if g.VSID() != 0x1000 || g.FlowID() != 1 {
			t.Errorf("NVGRE: vsid %#x flow %d", g.VSID(), g.FlowID())
		}
		ie, err := ParseEthernet(g.Payload())
		if err != nil {
			t.Fatal(err)
		}
		ip4, err := ParseIPv4(ie.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if ip4.Src() != ca4A || ip4.Dst() != ca4B {
			t.Errorf("inner IPv4: %v %v", ip4.Src(), ip4.Dst())
		}

		gre.ChecksumPresent = true
		f = serializeGP(t, eth(layers.EthernetTypeIPv4), i4, gre, eth(layers.EthernetTypeIPv4), innerIP, u, gopacket.Payload("x"))
		e, _ = ParseEthernet(f)
		p, _ = ParseIPv4(e.Payload())
		if _, err := ParseNVGRE(p.Payload()); err != ErrNVGREFlags {
			t.Errorf("GRE with checksum: err %v, want ErrNVGREFlags", err)
		}
	})

	t.Run("VXLAN", func(t *testing.T) {
		i6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: ip(netip.MustParseAddr("2001:db8::1")), DstIP: ip(netip.MustParseAddr("2001:db8::2"))}
		u := &layers.UDP{SrcPort: 49152, DstPort: VXLANPort}
		u.SetNetworkLayerForChecksum(i6)
		f := serializeGP(t, eth(layers.EthernetTypeIPv6), i6, u, &layers.VXLAN{ValidIDFlag: true, VNI: 0x1001},
			eth(layers.EthernetTypeARP), gopacket.Payload(make([]byte, 28)))
		e, _ := ParseEthernet(f)
		p, err := ParseIPv6(e.Payload())
		if err != nil {
			t.Fatal(err)
		}
		ud, err := ParseUDP(p.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if ud.DstPort() != VXLANPort || !UDPChecksumValid(ud, p.Src(), p.Dst()) {
			t.Errorf("UDP: port %d checksum %#x", ud.DstPort(), ud.Checksum())
		}
		v, err := ParseVXLAN(ud.Payload())
		if err != nil {
			t.Fatal(err)
		}
		ie, err := ParseEthernet(v.Payload())
		if v.VNI() != 0x1001 || err != nil || ie.Type() != EtherTypeARP || ie.Src() != macA {
			t.Errorf("VXLAN: vni %#x inner %v type %#x", v.VNI(), err, ie.Type())
		}
	})
}
