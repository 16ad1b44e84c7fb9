package packet

import (
	"encoding/binary"
	"net/netip"
)

// Address rewriting for IP Rewrite (Rule = Nat): the customer address is
// swapped for the provider address in place, and every checksum that covers
// it (the IPv4 header, and the TCP, UDP or ICMPv6 pseudo-header) is updated
// incrementally (RFC 1624) instead of being recomputed over the payload.

// SetSrc replaces the source address with the IPv4 address a.
func (p IPv4) SetSrc(a netip.Addr) { p.setAddr(12, a.As4(), false) }

// SetDst replaces the destination address with the IPv4 address a.
func (p IPv4) SetDst(a netip.Addr) { p.setAddr(16, a.As4(), false) }

// SetAddrs replaces both addresses with IPv4 src and dst. With partial, the
// transport checksum field holds only the pseudo-header sum, which a
// checksum offload finishes later (CHECKSUM_PARTIAL, a virtio-net
// NEEDS_CSUM frame): it is updated to the new addresses' sum.
func (p IPv4) SetAddrs(src, dst netip.Addr, partial bool) {
	p.setAddr(12, src.As4(), partial)
	p.setAddr(16, dst.As4(), partial)
}

func (p IPv4) setAddr(off int, a [4]byte, partial bool) {
	old := [4]byte(p[off : off+4])
	copy(p[off:off+4], a[:])
	binary.BigEndian.PutUint16(p[10:12], rewriteChecksum(binary.BigEndian.Uint16(p[10:12]), old[:], a[:]))
	if p.FragOffset() != 0 {
		return // a later fragment carries no transport header
	}
	fixL4Checksum(p.Protocol(), p.Payload(), old[:], a[:], false, partial)
}

// SetSrc replaces the source address with a, which must be IPv6 (or
// IPv4-mapped). Transport checksums are fixed when the next header is TCP,
// UDP or ICMPv6; behind extension headers they are left alone.
func (p IPv6) SetSrc(a netip.Addr) { p.setAddr(8, a.As16(), false) }

// SetDst replaces the destination address; see SetSrc.
func (p IPv6) SetDst(a netip.Addr) { p.setAddr(24, a.As16(), false) }

// SetAddrs replaces both addresses; see IPv4.SetAddrs for partial.
func (p IPv6) SetAddrs(src, dst netip.Addr, partial bool) {
	p.setAddr(8, src.As16(), partial)
	p.setAddr(24, dst.As16(), partial)
}

func (p IPv6) setAddr(off int, a [16]byte, partial bool) {
	old := [16]byte(p[off : off+16])
	copy(p[off:off+16], a[:])
	fixL4Checksum(p.NextHeader(), p.Payload(), old[:], a[:], true, partial)
}

// fixL4Checksum updates a transport checksum whose pseudo-header contained
// old and now contains new. A zero UDP checksum over IPv4 means "none" and
// stays zero; a computed zero UDP checksum is sent as 0xffff (RFC 768). A
// partial one (the uncomplemented pseudo-header sum) gets the new sum.
func fixL4Checksum(proto uint8, l4 []byte, old, new []byte, v6, partial bool) {
	var off int
	switch proto {
	case ProtoTCP:
		off = 16
	case ProtoUDP:
		off = 6
	case ProtoICMPv6:
		if !v6 {
			return
		}
		off = 2
	default:
		return
	}
	if len(l4) < off+2 {
		return
	}
	c := binary.BigEndian.Uint16(l4[off : off+2])
	if partial {
		binary.BigEndian.PutUint16(l4[off:off+2], ^rewriteChecksum(^c, old, new))
		return
	}
	if proto == ProtoUDP && c == 0 && !v6 {
		return
	}
	c = rewriteChecksum(c, old, new)
	if proto == ProtoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:off+2], c)
}

// rewriteChecksum is RFC 1624 eqn. 3 over all 16-bit words of a field that
// changed from old to new (equal, even lengths).
func rewriteChecksum(hc uint16, old, new []byte) uint16 {
	s := uint64(^hc)
	for i := 0; i+1 < len(old); i += 2 {
		s += uint64(^binary.BigEndian.Uint16(old[i:])) + uint64(binary.BigEndian.Uint16(new[i:]))
	}
	return ^fold(s)
}
