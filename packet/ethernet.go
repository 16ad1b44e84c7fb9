package packet

import (
	"encoding/binary"
	"errors"
)

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrEthernetShort = errors.New("Ethernet frame is shorter than its 14-byte header")
	ErrVLANShort     = errors.New("Ethernet frame with an 802.1Q tag is shorter than its 18-byte header")
)

// Ethernet is a view of a whole Ethernet frame (no FCS), optionally carrying
// one 802.1Q tag.
type Ethernet []byte

// ParseEthernet checks that b holds a complete Ethernet header, including the
// 802.1Q tag when the outer EtherType is 0x8100.
func ParseEthernet(b []byte) (Ethernet, error) {
	if len(b) < EthernetHeaderLen {
		return nil, ErrEthernetShort
	}
	if binary.BigEndian.Uint16(b[12:14]) == EtherTypeVLAN && len(b) < EthernetHeaderLen+VLANTagLen {
		return nil, ErrVLANShort
	}
	return Ethernet(b), nil
}

func (e Ethernet) Dst() MAC        { return MAC(e[0:6]) }
func (e Ethernet) Src() MAC        { return MAC(e[6:12]) }
func (e Ethernet) SetDst(m MAC)    { copy(e[0:6], m[:]) }
func (e Ethernet) SetSrc(m MAC)    { copy(e[6:12], m[:]) }
func (e Ethernet) HasVLAN() bool   { return binary.BigEndian.Uint16(e[12:14]) == EtherTypeVLAN }
func (e Ethernet) Payload() []byte { return e[e.HeaderLen():] }

// VLANID is the 12-bit VLAN identifier of the 802.1Q tag, 0 when untagged.
func (e Ethernet) VLANID() uint16 {
	if !e.HasVLAN() {
		return 0
	}
	return binary.BigEndian.Uint16(e[14:16]) & 0x0fff
}

// Type is the EtherType of the payload, after the 802.1Q tag if there is one.
func (e Ethernet) Type() uint16 {
	if e.HasVLAN() {
		return binary.BigEndian.Uint16(e[16:18])
	}
	return binary.BigEndian.Uint16(e[12:14])
}

// HeaderLen is 14, or 18 with an 802.1Q tag.
func (e Ethernet) HeaderLen() int {
	if e.HasVLAN() {
		return EthernetHeaderLen + VLANTagLen
	}
	return EthernetHeaderLen
}

// PutEthernet writes an untagged Ethernet header and returns 14.
func PutEthernet(b []byte, dst, src MAC, etherType uint16) int {
	_ = b[EthernetHeaderLen-1]
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], etherType)
	return EthernetHeaderLen
}

// PutEthernetVLAN writes an Ethernet header with an 802.1Q tag (priority 0)
// and returns 18.
func PutEthernetVLAN(b []byte, dst, src MAC, vlanID, etherType uint16) int {
	_ = b[EthernetHeaderLen+VLANTagLen-1]
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], EtherTypeVLAN)
	binary.BigEndian.PutUint16(b[14:16], vlanID&0x0fff)
	binary.BigEndian.PutUint16(b[16:18], etherType)
	return EthernetHeaderLen + VLANTagLen
}
