package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// ARP operation codes.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrARPShort        = errors.New("ARP packet is shorter than 28 bytes")
	ErrARPHardwareType = errors.New("ARP hardware type is not 1 (Ethernet)")
	ErrARPProtocolType = errors.New("ARP protocol type is not 0x0800 (IPv4)")
	ErrARPHardwareLen  = errors.New("ARP hardware address length is not 6")
	ErrARPProtocolLen  = errors.New("ARP protocol address length is not 4")
	ErrARPOperation    = errors.New("ARP operation is not 1 (request) or 2 (reply)")
)

// ARP is a view of an Ethernet/IPv4 ARP packet, exactly 28 bytes.
type ARP []byte

// ParseARP accepts only Ethernet/IPv4 requests and replies; the view drops
// any Ethernet padding after the 28 bytes.
func ParseARP(b []byte) (ARP, error) {
	if len(b) < ARPLen {
		return nil, ErrARPShort
	}
	switch {
	case binary.BigEndian.Uint16(b[0:2]) != 1:
		return nil, ErrARPHardwareType
	case binary.BigEndian.Uint16(b[2:4]) != EtherTypeIPv4:
		return nil, ErrARPProtocolType
	case b[4] != 6:
		return nil, ErrARPHardwareLen
	case b[5] != 4:
		return nil, ErrARPProtocolLen
	}
	if op := binary.BigEndian.Uint16(b[6:8]); op != ARPRequest && op != ARPReply {
		return nil, ErrARPOperation
	}
	return ARP(b[:ARPLen]), nil
}

func (a ARP) Op() uint16           { return binary.BigEndian.Uint16(a[6:8]) }
func (a ARP) SenderMAC() MAC       { return MAC(a[8:14]) }
func (a ARP) SenderIP() netip.Addr { return netip.AddrFrom4([4]byte(a[14:18])) }
func (a ARP) TargetMAC() MAC       { return MAC(a[18:24]) }
func (a ARP) TargetIP() netip.Addr { return netip.AddrFrom4([4]byte(a[24:28])) }

// PutARP writes an Ethernet/IPv4 ARP packet and returns 28. spa and tpa must
// be IPv4 addresses.
func PutARP(b []byte, op uint16, sha MAC, spa netip.Addr, tha MAC, tpa netip.Addr) int {
	_ = b[ARPLen-1]
	binary.BigEndian.PutUint16(b[0:2], 1)
	binary.BigEndian.PutUint16(b[2:4], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:8], op)
	copy(b[8:14], sha[:])
	s := spa.As4()
	copy(b[14:18], s[:])
	copy(b[18:24], tha[:])
	t := tpa.As4()
	copy(b[24:28], t[:])
	return ARPLen
}
