package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Checksum returns the Internet checksum (RFC 1071) of b: the ones'
// complement of the folded ones'-complement sum of b's 16-bit big-endian
// words plus initial, a partial sum such as PseudoHeaderSum. An odd final
// byte is padded with zero.
func Checksum(b []byte, initial uint32) uint16 {
	return ^fold(sum(b, uint64(initial)))
}

// PseudoHeaderSum is the unfolded sum of the TCP/UDP/ICMPv6 pseudo-header
// (RFC 768, RFC 8200 section 8.1) for the given addresses, upper-layer
// protocol and upper-layer length. The IPv4 form is used when src is IPv4.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var s uint64
	if src.Is4() {
		a, d := src.As4(), dst.As4()
		s = sum(a[:], 0)
		s = sum(d[:], s)
	} else {
		a, d := src.As16(), dst.As16()
		s = sum(a[:], 0)
		s = sum(d[:], s)
	}
	s += uint64(proto) + uint64(uint32(length)>>16) + uint64(length&0xffff)
	return uint32(fold(s))
}

// sum adds b to the running ones'-complement accumulator s, eight bytes at a
// time: because 2^16 = 1 (mod 0xffff), summing wider big-endian words with
// end-around carry yields the same folded result as summing 16-bit words.
func sum(b []byte, s uint64) uint64 {
	var c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[8:16]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[16:24]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		s, c = bits.Add64(s, uint64(binary.BigEndian.Uint32(b[0:4])), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		s, c = bits.Add64(s, uint64(binary.BigEndian.Uint16(b[0:2])), c)
		b = b[2:]
	}
	if len(b) == 1 {
		s, c = bits.Add64(s, uint64(b[0])<<8, c)
	}
	s, c = bits.Add64(s, c, 0)
	return s + c
}

// fold reduces a 64-bit ones'-complement accumulator to 16 bits.
func fold(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// updateChecksum applies RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), for one
// 16-bit word of the covered data changing from old to new.
func updateChecksum(hc, old, new uint16) uint16 {
	s := uint64(^hc) + uint64(^old) + uint64(new)
	return ^fold(s)
}
