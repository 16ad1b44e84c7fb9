package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// ICMPv6 types and neighbour-advertisement flags.
const (
	ICMPv6DestUnreachable       = 1
	ICMPv6PacketTooBig          = 2
	ICMPv6TimeExceeded          = 3
	ICMPv6EchoRequest           = 128
	ICMPv6EchoReply             = 129
	ICMPv6RouterSolicitation    = 133
	ICMPv6RouterAdvertisement   = 134
	ICMPv6NeighborSolicitation  = 135
	ICMPv6NeighborAdvertisement = 136

	NAFlagRouter    = 0x80
	NAFlagSolicited = 0x40
	NAFlagOverride  = 0x20
)

// Neighbour-discovery option types (RFC 4861 section 4.6).
const (
	NDOptSourceLinkAddr = 1
	NDOptTargetLinkAddr = 2
)

// ndHeaderLen is the fixed part of a neighbour solicitation or advertisement:
// type, code, checksum, 4 bytes of flags/reserved and the 16-byte target.
const ndHeaderLen = 24

// NeighborAdvertLen is what PutNeighborAdvert writes: the NA and one
// target link-layer address option.
const NeighborAdvertLen = ndHeaderLen + 8

// icmpv6MaxQuote keeps an ICMPv6 error within the IPv6 minimum MTU of 1280
// bytes including the 40-byte IPv6 header (RFC 4443 section 2.4 (c)).
const icmpv6MaxQuote = 1280 - IPv6HeaderLen - ICMPv6HeaderLen

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrICMPv6Short    = errors.New("ICMPv6 message is shorter than 4 bytes, or than 8 for its type")
	ErrICMPv6Checksum = errors.New("ICMPv6 checksum (with the IPv6 pseudo-header) is wrong")
	ErrNDShort        = errors.New("ICMPv6 neighbour solicitation/advertisement is shorter than 24 bytes")
)

// ICMPv6 is a view of an ICMPv6 message (the whole upper-layer payload).
type ICMPv6 []byte

// ParseICMPv6 checks the length for the message type and the checksum,
// computed with the pseudo-header of the IPv6 source and destination.
func ParseICMPv6(b []byte, src, dst netip.Addr) (ICMPv6, error) {
	if len(b) < 4 {
		return nil, ErrICMPv6Short
	}
	switch b[0] {
	case ICMPv6NeighborSolicitation, ICMPv6NeighborAdvertisement:
		if len(b) < ndHeaderLen {
			return nil, ErrNDShort
		}
	case ICMPv6DestUnreachable, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
		ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6RouterSolicitation, ICMPv6RouterAdvertisement:
		if len(b) < ICMPv6HeaderLen {
			return nil, ErrICMPv6Short
		}
	}
	if Checksum(b, PseudoHeaderSum(src, dst, ProtoICMPv6, len(b))) != 0 {
		return nil, ErrICMPv6Checksum
	}
	return ICMPv6(b), nil
}

func (m ICMPv6) Type() uint8 { return m[0] }
func (m ICMPv6) Code() uint8 { return m[1] }

// MTU is the MTU carried by a packet-too-big message, 0 if m is too short.
func (m ICMPv6) MTU() uint32 {
	if len(m) < ICMPv6HeaderLen {
		return 0
	}
	return binary.BigEndian.Uint32(m[4:8])
}

// NAFlags is the flag byte of a neighbour advertisement (NAFlag*).
func (m ICMPv6) NAFlags() uint8 {
	if len(m) < ICMPv6HeaderLen {
		return 0
	}
	return m[4]
}

// NDTarget is the target address of a neighbour solicitation or
// advertisement, the zero Addr if m is shorter than 24 bytes.
func (m ICMPv6) NDTarget() netip.Addr {
	if len(m) < ndHeaderLen {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(m[8:24]))
}

// NDSourceLinkAddr returns the source link-layer address option of a
// neighbour solicitation or advertisement.
func (m ICMPv6) NDSourceLinkAddr() (MAC, bool) { return m.ndLinkAddr(NDOptSourceLinkAddr) }

// NDTargetLinkAddr returns the target link-layer address option.
func (m ICMPv6) NDTargetLinkAddr() (MAC, bool) { return m.ndLinkAddr(NDOptTargetLinkAddr) }

// ndLinkAddr walks the options after the 24-byte NS/NA header. An option of
// length 0 or one running past the message makes the whole option list
// malformed (RFC 4861 section 4.6), so the lookup fails.
func (m ICMPv6) ndLinkAddr(typ uint8) (MAC, bool) {
	if len(m) < ndHeaderLen {
		return MAC{}, false
	}
	opts := m[ndHeaderLen:]
	for len(opts) >= 2 {
		n := int(opts[1]) * 8
		if n == 0 || n > len(opts) {
			return MAC{}, false
		}
		if opts[0] == typ {
			return MAC(opts[2:8]), true
		}
		opts = opts[n:]
	}
	return MAC{}, false
}

// PutNeighborAdvert writes a neighbour advertisement for target with flags
// (NAFlag*) and a target link-layer address option carrying mac, fills the
// checksum for the given IPv6 source and destination and returns 32. The
// caller's IPv6 header must use hop limit 255.
func PutNeighborAdvert(b []byte, src, dst, target netip.Addr, mac MAC, flags uint8) int {
	_ = b[NeighborAdvertLen-1]
	b[0], b[1], b[2], b[3] = ICMPv6NeighborAdvertisement, 0, 0, 0
	b[4], b[5], b[6], b[7] = flags, 0, 0, 0
	t := target.As16()
	copy(b[8:24], t[:])
	b[24], b[25] = NDOptTargetLinkAddr, 1
	copy(b[26:32], mac[:])
	setICMPv6Checksum(b[:NeighborAdvertLen], src, dst)
	return NeighborAdvertLen
}

// PutICMPv6PacketTooBig writes a packet-too-big message carrying mtu,
// quoting as much of the invoking packet as keeps the whole IPv6 packet
// within 1280 bytes and b; it fills the checksum and returns 8 plus the quote.
func PutICMPv6PacketTooBig(b []byte, src, dst netip.Addr, mtu uint32, invoking []byte) int {
	return PutICMPv6Error(b, src, dst, ICMPv6PacketTooBig, 0, mtu, invoking)
}

// PutICMPv6DestUnreachable writes a destination-unreachable message with
// code, quoting like PutICMPv6PacketTooBig.
func PutICMPv6DestUnreachable(b []byte, src, dst netip.Addr, code uint8, invoking []byte) int {
	return PutICMPv6Error(b, src, dst, ICMPv6DestUnreachable, code, 0, invoking)
}

// PutICMPv6Error writes an ICMPv6 error of type typ and code with the
// 32-bit field after the checksum set to param, quoting like
// PutICMPv6PacketTooBig.
func PutICMPv6Error(b []byte, src, dst netip.Addr, typ, code uint8, param uint32, invoking []byte) int {
	_ = b[ICMPv6HeaderLen-1]
	b[0], b[1], b[2], b[3] = typ, code, 0, 0
	binary.BigEndian.PutUint32(b[4:8], param)
	n := ICMPv6HeaderLen + copy(b[ICMPv6HeaderLen:], invoking[:min(len(invoking), icmpv6MaxQuote)])
	setICMPv6Checksum(b[:n], src, dst)
	return n
}

func setICMPv6Checksum(m []byte, src, dst netip.Addr) {
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:4], Checksum(m, PseudoHeaderSum(src, dst, ProtoICMPv6, len(m))))
}
