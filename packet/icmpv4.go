package packet

import (
	"encoding/binary"
	"errors"
)

// ICMPv4 types and destination-unreachable codes.
const (
	ICMPv4EchoReply       = 0
	ICMPv4DestUnreachable = 3
	ICMPv4Echo            = 8
	ICMPv4TimeExceeded    = 11

	ICMPv4CodeNetUnreachable  = 0
	ICMPv4CodeHostUnreachable = 1
	ICMPv4CodeFragNeeded      = 4
)

// icmpv4MaxQuote keeps an ICMP error within 576 bytes including a 20-byte
// IPv4 header and the 8-byte ICMP header (RFC 1812 section 4.3.2.3).
const icmpv4MaxQuote = 576 - IPv4HeaderLen - ICMPv4HeaderLen

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrICMPv4Short    = errors.New("ICMPv4 message is shorter than its 8-byte header")
	ErrICMPv4Checksum = errors.New("ICMPv4 checksum is wrong")
)

// ICMPv4 is a view of an ICMPv4 message (the whole IPv4 payload).
type ICMPv4 []byte

// ParseICMPv4 checks the length and the checksum over the whole message.
func ParseICMPv4(b []byte) (ICMPv4, error) {
	if len(b) < ICMPv4HeaderLen {
		return nil, ErrICMPv4Short
	}
	if Checksum(b, 0) != 0 {
		return nil, ErrICMPv4Checksum
	}
	return ICMPv4(b), nil
}

func (m ICMPv4) Type() uint8     { return m[0] }
func (m ICMPv4) Code() uint8     { return m[1] }
func (m ICMPv4) Payload() []byte { return m[ICMPv4HeaderLen:] }

// NextHopMTU is the MTU carried by a fragmentation-needed message (RFC 1191).
func (m ICMPv4) NextHopMTU() uint16 { return binary.BigEndian.Uint16(m[6:8]) }

// EchoID and EchoSeq are the identifier and sequence number of an echo
// request or reply.
func (m ICMPv4) EchoID() uint16  { return binary.BigEndian.Uint16(m[4:6]) }
func (m ICMPv4) EchoSeq() uint16 { return binary.BigEndian.Uint16(m[6:8]) }

// PutICMPv4DestUnreachable writes a destination-unreachable message with the
// given code (nextHopMTU is meaningful for ICMPv4CodeFragNeeded, pass 0
// otherwise), quoting as much of the invoking IPv4 packet as keeps the whole
// ICMP-in-IPv4 packet within 576 bytes and b. It fills the checksum and
// returns the bytes written: 8 plus the quote.
func PutICMPv4DestUnreachable(b []byte, code uint8, nextHopMTU uint16, invoking []byte) int {
	return PutICMPv4Error(b, ICMPv4DestUnreachable, code, uint32(nextHopMTU), invoking)
}

// PutICMPv4Error writes an ICMP error of type typ and code with the 32-bit
// field after the checksum set to param, quoting like
// PutICMPv4DestUnreachable.
func PutICMPv4Error(b []byte, typ, code uint8, param uint32, invoking []byte) int {
	_ = b[ICMPv4HeaderLen-1]
	b[0], b[1] = typ, code
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint32(b[4:8], param)
	n := copy(b[ICMPv4HeaderLen:], invoking[:min(len(invoking), icmpv4MaxQuote)])
	n += ICMPv4HeaderLen
	binary.BigEndian.PutUint16(b[2:4], Checksum(b[:n], 0))
	return n
}
