package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrUDPShort  = errors.New("UDP datagram is shorter than its 8-byte header")
	ErrUDPLength = errors.New("UDP length field is below 8 or runs past the buffer")
)

// UDP is a view of a UDP datagram, trimmed to its length field.
type UDP []byte

// ParseUDP validates the length field and returns the datagram trimmed to it.
// The checksum is not verified here; see UDPChecksumValid.
func ParseUDP(b []byte) (UDP, error) {
	if len(b) < UDPHeaderLen {
		return nil, ErrUDPShort
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n < UDPHeaderLen || n > len(b) {
		return nil, ErrUDPLength
	}
	return UDP(b[:n]), nil
}

func (u UDP) SrcPort() uint16  { return binary.BigEndian.Uint16(u[0:2]) }
func (u UDP) DstPort() uint16  { return binary.BigEndian.Uint16(u[2:4]) }
func (u UDP) Length() int      { return int(binary.BigEndian.Uint16(u[4:6])) }
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:8]) }
func (u UDP) Payload() []byte  { return u[UDPHeaderLen:u.Length()] }

// PutUDP writes a UDP header with checksum 0 (allowed over IPv4 and, for
// tunnels, over IPv6 by RFC 6935) and returns 8.
func PutUDP(b []byte, srcPort, dstPort uint16, payloadLen int) int {
	_ = b[UDPHeaderLen-1]
	binary.BigEndian.PutUint16(b[0:2], srcPort)
	binary.BigEndian.PutUint16(b[2:4], dstPort)
	binary.BigEndian.PutUint16(b[4:6], uint16(UDPHeaderLen+payloadLen))
	b[6], b[7] = 0, 0
	return UDPHeaderLen
}

// SetUDPChecksum computes the full UDP checksum over header, payload and the
// pseudo-header; a computed 0 is sent as 0xffff (RFC 768).
func SetUDPChecksum(u UDP, src, dst netip.Addr) {
	n := u.Length()
	u[6], u[7] = 0, 0
	c := Checksum(u[:n], PseudoHeaderSum(src, dst, ProtoUDP, n))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], c)
}

// UDPChecksumValid verifies the checksum of a parsed datagram. A zero
// checksum means "none" and is accepted over IPv4 only.
func UDPChecksumValid(u UDP, src, dst netip.Addr) bool {
	if u.Checksum() == 0 {
		return src.Is4()
	}
	return Checksum(u, PseudoHeaderSum(src, dst, ProtoUDP, len(u))) == 0
}

// FlowPorts returns the source and destination ports of a TCP or UDP header,
// or 0, 0 for other protocols and for headers too short to hold them.
func FlowPorts(proto uint8, l4 []byte) (src, dst uint16) {
	if (proto != ProtoTCP && proto != ProtoUDP) || len(l4) < 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
}
