package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Summary is what Describe makes of a frame, for people watching drops: its
// addresses and its headers in one line.
type Summary struct {
	// Src and Dst are the IP addresses (of the inner frame, for a tunnel
	// packet), or for a frame without IP the MAC addresses.
	Src, Dst string
	// Header says what the frame is, e.g. "UDP 40000 > 7777",
	// "ARP who-has 10.0.0.3 tell 10.0.0.1", "ND solicit fd00::3", and for a
	// tunnel packet "NVGRE VSID 5001 198.18.0.2 > 198.18.0.1: " and the
	// inner frame's.
	Header string
}

// Describe summarizes the headers of a frame that may be cut short (a
// sample of its first bytes): what is missing is left out, and nothing in
// b is trusted beyond its length. It never fails.
func Describe(b []byte) Summary {
	return describe(b, true)
}

func describe(b []byte, outer bool) Summary {
	if len(b) < EthernetHeaderLen {
		return Summary{Header: fmt.Sprintf("%d bytes, shorter than an Ethernet header", len(b))}
	}
	e := Ethernet(b)
	s := Summary{Src: e.Src().String(), Dst: e.Dst().String()}
	vlan := ""
	if e.HasVLAN() {
		if len(b) < EthernetHeaderLen+VLANTagLen {
			s.Header = "802.1Q, cut short"
			return s
		}
		vlan = fmt.Sprintf("VLAN %d ", e.VLANID())
	}
	et, p := e.Type(), e.Payload()
	switch et {
	case EtherTypeARP:
		s.Header = vlan + describeARP(p)
	case EtherTypeIPv4, EtherTypeIPv6:
		s = describeIP(s, p, et == EtherTypeIPv6, outer)
		s.Header = vlan + s.Header
	case EtherTypeWNVControl:
		s.Header = vlan + "wnv redirect"
	default:
		s.Header = fmt.Sprintf("%sEtherType %#04x", vlan, et)
	}
	return s
}

func describeARP(p []byte) string {
	if len(p) < ARPLen {
		return "ARP, cut short"
	}
	a := ARP(p)
	switch a.Op() {
	case ARPRequest:
		return fmt.Sprintf("ARP who-has %s tell %s", a.TargetIP(), a.SenderIP())
	case ARPReply:
		return fmt.Sprintf("ARP reply %s is-at %s", a.SenderIP(), a.SenderMAC())
	}
	return fmt.Sprintf("ARP operation %d", a.Op())
}

// describeIP fills s from the IP packet p; outer says a GRE or VXLAN
// payload is described as a tunnel packet (once: an inner frame's is not).
func describeIP(s Summary, p []byte, v6, outer bool) Summary {
	var (
		src, dst netip.Addr
		proto    uint8
		l4       []byte
		family   = "IPv4"
	)
	if v6 {
		family = "IPv6"
		if len(p) < IPv6HeaderLen {
			s.Header = "IPv6, cut short"
			return s
		}
		h := IPv6(p)
		src, dst, proto, l4 = h.Src(), h.Dst(), h.NextHeader(), p[IPv6HeaderLen:]
	} else {
		if len(p) < IPv4HeaderLen {
			s.Header = "IPv4, cut short"
			return s
		}
		h := IPv4(p)
		hl := h.HeaderLen()
		src, dst, proto = h.Src(), h.Dst(), h.Protocol()
		if hl >= IPv4HeaderLen && hl <= len(p) {
			l4 = p[hl:]
		}
		if h.IsFragment() && binary.BigEndian.Uint16(p[6:8])&0x1fff != 0 {
			s.Src, s.Dst, s.Header = src.String(), dst.String(), fmt.Sprintf("IPv4 fragment, protocol %d", proto)
			return s
		}
	}
	s.Src, s.Dst = src.String(), dst.String()
	switch proto {
	case ProtoUDP, ProtoTCP:
		name := "UDP"
		if proto == ProtoTCP {
			name = "TCP"
		}
		if len(l4) < 4 {
			s.Header = name + ", cut short"
			return s
		}
		sport, dport := binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		if outer && proto == ProtoUDP && dport == VXLANPort && len(l4) >= UDPHeaderLen+VXLANHeaderLen {
			vni := binary.BigEndian.Uint32(l4[UDPHeaderLen+4:]) >> 8
			return tunnel(fmt.Sprintf("VXLAN VNI %d %s > %s", vni, src, dst), l4[UDPHeaderLen+VXLANHeaderLen:])
		}
		s.Header = fmt.Sprintf("%s %d > %d", name, sport, dport)
	case ProtoGRE:
		if outer && len(l4) >= NVGREHeaderLen && binary.BigEndian.Uint16(l4[2:4]) == EtherTypeTEB {
			return tunnel(fmt.Sprintf("NVGRE VSID %d %s > %s", binary.BigEndian.Uint32(l4[4:8])>>8, src, dst), l4[NVGREHeaderLen:])
		}
		s.Header = "GRE"
	case ProtoICMP:
		s.Header = "ICMPv4"
		if len(l4) >= 2 {
			s.Header = fmt.Sprintf("ICMPv4 type %d code %d", l4[0], l4[1])
		}
	case ProtoICMPv6:
		s.Header = describeICMPv6(l4)
	default:
		s.Header = fmt.Sprintf("%s protocol %d", family, proto)
	}
	return s
}

func describeICMPv6(m []byte) string {
	if len(m) < 2 {
		return "ICMPv6, cut short"
	}
	switch m[0] {
	case ICMPv6NeighborSolicitation, ICMPv6NeighborAdvertisement:
		what := "solicit"
		if m[0] == ICMPv6NeighborAdvertisement {
			what = "advert"
		}
		if len(m) < ndHeaderLen {
			return "ND " + what + ", cut short"
		}
		return fmt.Sprintf("ND %s %s", what, netip.AddrFrom16([16]byte(m[8:24])))
	case ICMPv6RouterSolicitation:
		return "ND router solicit"
	case ICMPv6RouterAdvertisement:
		return "ND router advert"
	}
	return fmt.Sprintf("ICMPv6 type %d code %d", m[0], m[1])
}

// tunnel describes the inner frame of a tunnel packet behind what.
func tunnel(what string, inner []byte) Summary {
	s := describe(inner, false)
	s.Header = what + ": " + s.Header
	return s
}
