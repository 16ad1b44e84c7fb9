package packet

import (
	"encoding/binary"
	"errors"
)

// VXLANPort is the IANA UDP destination port of VXLAN.
const VXLANPort = 4789

// vxlanFlagI marks a valid VNI; the other flag bits are reserved and ignored
// on receipt (RFC 7348 section 5).
const vxlanFlagI = 0x08

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrVXLANShort = errors.New("VXLAN header is shorter than 8 bytes")
	ErrVXLANFlags = errors.New("VXLAN flags do not have the I bit (0x08) set")
)

// VXLAN is a view of a VXLAN header (RFC 7348) and the Ethernet frame it
// carries.
type VXLAN []byte

// ParseVXLAN requires the I flag; reserved bits are ignored.
func ParseVXLAN(b []byte) (VXLAN, error) {
	if len(b) < VXLANHeaderLen {
		return nil, ErrVXLANShort
	}
	if b[0]&vxlanFlagI == 0 {
		return nil, ErrVXLANFlags
	}
	return VXLAN(b), nil
}

// VNI is the 24-bit VXLAN network identifier (our VSID).
func (v VXLAN) VNI() uint32     { return binary.BigEndian.Uint32(v[4:8]) >> 8 }
func (v VXLAN) Payload() []byte { return v[VXLANHeaderLen:] }

// PutVXLAN writes a VXLAN header for the 24-bit vni and returns 8.
func PutVXLAN(b []byte, vni uint32) int {
	_ = b[VXLANHeaderLen-1]
	binary.BigEndian.PutUint32(b[0:4], vxlanFlagI<<24)
	binary.BigEndian.PutUint32(b[4:8], vni<<8)
	return VXLANHeaderLen
}
