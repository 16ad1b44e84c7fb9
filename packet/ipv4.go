package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrIPv4Short    = errors.New("IPv4 packet is shorter than its 20-byte header")
	ErrIPv4Version  = errors.New("IPv4 version field is not 4")
	ErrIPv4IHL      = errors.New("IPv4 IHL is below 5 or the header runs past the buffer")
	ErrIPv4TotalLen = errors.New("IPv4 total length is smaller than the header or larger than the buffer")
	ErrIPv4Checksum = errors.New("IPv4 header checksum is wrong")
)

// IPv4 is a view of an IPv4 packet, trimmed to its total length.
type IPv4 []byte

// ParseIPv4 validates version, IHL, total length and the header checksum and
// returns the packet trimmed to its total length (dropping link padding).
func ParseIPv4(b []byte) (IPv4, error) {
	if len(b) < IPv4HeaderLen {
		return nil, ErrIPv4Short
	}
	if b[0]>>4 != 4 {
		return nil, ErrIPv4Version
	}
	hl := int(b[0]&0x0f) * 4
	if hl < IPv4HeaderLen || hl > len(b) {
		return nil, ErrIPv4IHL
	}
	tl := int(binary.BigEndian.Uint16(b[2:4]))
	if tl < hl || tl > len(b) {
		return nil, ErrIPv4TotalLen
	}
	if hl == IPv4HeaderLen {
		if !IPv4HeaderChecksumOK(b) {
			return nil, ErrIPv4Checksum
		}
	} else if Checksum(b[:hl], 0) != 0 {
		return nil, ErrIPv4Checksum
	}
	return IPv4(b[:tl]), nil
}

// IPv4HeaderChecksumOK reports whether the 20-byte IPv4 header without
// options that b starts with has a correct checksum. It is short enough to
// inline, for ParseIPv4 and for fast paths that check a header's shape
// themselves: five 32-bit words add up without carrying out of 64 bits, and
// their ones' complement sum, the same in either byte order (RFC 1071), is
// all ones when the integer sum is a non-zero multiple of 0xffff.
func IPv4HeaderChecksumOK(b []byte) bool {
	le := binary.LittleEndian
	s := uint64(le.Uint32(b[0:])) + uint64(le.Uint32(b[4:])) + uint64(le.Uint32(b[8:])) + uint64(le.Uint32(b[12:])) + uint64(le.Uint32(b[16:]))
	return s != 0 && s%0xffff == 0
}

func (p IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(p[12:16])) }
func (p IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(p[16:20])) }
func (p IPv4) Protocol() uint8 { return p[9] }
func (p IPv4) TTL() uint8      { return p[8] }
func (p IPv4) HeaderLen() int  { return int(p[0]&0x0f) * 4 }
func (p IPv4) TotalLen() int   { return int(binary.BigEndian.Uint16(p[2:4])) }
func (p IPv4) ID() uint16      { return binary.BigEndian.Uint16(p[4:6]) }
func (p IPv4) DF() bool        { return p[6]&0x40 != 0 }
func (p IPv4) Payload() []byte { return p[p.HeaderLen():p.TotalLen()] }

// FragOffset is the fragment offset in bytes: non-zero for a fragment but
// the first, which carries no transport header.
func (p IPv4) FragOffset() int { return int(binary.BigEndian.Uint16(p[6:8])&0x1fff) * 8 }

// IsFragment reports whether p is part of a fragmented datagram: MF is set
// or the fragment offset is not zero.
func (p IPv4) IsFragment() bool { return binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 }

// DecTTL decrements the TTL and updates the header checksum incrementally
// (RFC 1624). A TTL of 0 is left alone: the caller drops such packets.
func (p IPv4) DecTTL() {
	if p[8] == 0 {
		return
	}
	old := binary.BigEndian.Uint16(p[8:10])
	p[8]--
	hc := binary.BigEndian.Uint16(p[10:12])
	binary.BigEndian.PutUint16(p[10:12], updateChecksum(hc, old, old-0x100))
}

// PutIPv4 writes a 20-byte IPv4 header without options for a payload of
// payloadLen bytes, fills its checksum and returns 20. src and dst must be
// IPv4 addresses.
func PutIPv4(b []byte, src, dst netip.Addr, proto, ttl uint8, payloadLen int, id uint16, df bool) int {
	_ = b[IPv4HeaderLen-1]
	b[0] = 0x45
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:4], uint16(IPv4HeaderLen+payloadLen))
	binary.BigEndian.PutUint16(b[4:6], id)
	var flags uint16
	if df {
		flags = 0x4000
	}
	binary.BigEndian.PutUint16(b[6:8], flags)
	b[8] = ttl
	b[9] = proto
	b[10], b[11] = 0, 0
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:12], Checksum(b[:IPv4HeaderLen], 0))
	return IPv4HeaderLen
}
