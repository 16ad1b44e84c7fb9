package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrIPv6Short      = errors.New("IPv6 packet is shorter than its 40-byte header")
	ErrIPv6Version    = errors.New("IPv6 version field is not 6")
	ErrIPv6PayloadLen = errors.New("IPv6 payload length runs past the buffer")
)

// IPv6 is a view of an IPv6 packet, trimmed to 40 + payload length.
type IPv6 []byte

// ParseIPv6 validates the version and the payload length and returns the
// packet trimmed to 40 + payload length. Jumbograms are not supported.
func ParseIPv6(b []byte) (IPv6, error) {
	if len(b) < IPv6HeaderLen {
		return nil, ErrIPv6Short
	}
	if b[0]>>4 != 6 {
		return nil, ErrIPv6Version
	}
	n := IPv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
	if n > len(b) {
		return nil, ErrIPv6PayloadLen
	}
	return IPv6(b[:n]), nil
}

func (p IPv6) Src() netip.Addr   { return netip.AddrFrom16([16]byte(p[8:24])) }
func (p IPv6) Dst() netip.Addr   { return netip.AddrFrom16([16]byte(p[24:40])) }
func (p IPv6) NextHeader() uint8 { return p[6] }
func (p IPv6) HopLimit() uint8   { return p[7] }
func (p IPv6) PayloadLen() int   { return int(binary.BigEndian.Uint16(p[4:6])) }
func (p IPv6) Payload() []byte   { return p[IPv6HeaderLen : IPv6HeaderLen+p.PayloadLen()] }
func (p IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(p[0:4]) & 0xfffff }

// SetFlowLabel sets the 20-bit flow label (IPv6 has no header checksum).
func (p IPv6) SetFlowLabel(l uint32) {
	binary.BigEndian.PutUint32(p[0:4], binary.BigEndian.Uint32(p[0:4])&^0xfffff|l&0xfffff)
}

// DecHopLimit decrements the hop limit; 0 is left alone because the caller
// drops such packets.
func (p IPv6) DecHopLimit() {
	if p[7] != 0 {
		p[7]--
	}
}

// PutIPv6 writes a 40-byte IPv6 header (traffic class and flow label 0) and
// returns 40.
func PutIPv6(b []byte, src, dst netip.Addr, nextHeader, hopLimit uint8, payloadLen int) int {
	_ = b[IPv6HeaderLen-1]
	binary.BigEndian.PutUint32(b[0:4], 6<<28)
	binary.BigEndian.PutUint16(b[4:6], uint16(payloadLen))
	b[6] = nextHeader
	b[7] = hopLimit
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	return IPv6HeaderLen
}
