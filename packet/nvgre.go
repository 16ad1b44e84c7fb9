package packet

import (
	"encoding/binary"
	"errors"
)

// nvgreFlags is bytes 0-1 of every NVGRE header: K=1, C=S=0, version 0.
const nvgreFlags = 0x2000

// Parse errors: package-level values so that rejecting a packet never
// allocates; each names the field and the rule it broke.
var (
	ErrNVGREShort    = errors.New("NVGRE header is shorter than 8 bytes")
	ErrNVGREFlags    = errors.New("NVGRE flags and version are not 0x2000 (K=1, C=0, S=0, version 0)")
	ErrNVGREProtocol = errors.New("NVGRE protocol type is not 0x6558 (Transparent Ethernet Bridging)")
)

// NVGRE is a view of an NVGRE header (RFC 7637) and the Ethernet frame it
// carries.
type NVGRE []byte

// ParseNVGRE accepts exactly the NVGRE form of GRE: key present, no checksum
// or sequence number, version 0, protocol Transparent Ethernet Bridging.
func ParseNVGRE(b []byte) (NVGRE, error) {
	if len(b) < NVGREHeaderLen {
		return nil, ErrNVGREShort
	}
	if binary.BigEndian.Uint16(b[0:2]) != nvgreFlags {
		return nil, ErrNVGREFlags
	}
	if binary.BigEndian.Uint16(b[2:4]) != EtherTypeTEB {
		return nil, ErrNVGREProtocol
	}
	return NVGRE(b), nil
}

// Key is the 32-bit GRE key, VSID<<8 | FlowID.
func (g NVGRE) Key() uint32     { return binary.BigEndian.Uint32(g[4:8]) }
func (g NVGRE) VSID() uint32    { return g.Key() >> 8 }
func (g NVGRE) FlowID() uint8   { return g[7] }
func (g NVGRE) Payload() []byte { return g[NVGREHeaderLen:] }

// PutNVGRE writes an NVGRE header for the 24-bit vsid and the per-flow
// entropy byte flowID and returns 8.
func PutNVGRE(b []byte, vsid uint32, flowID uint8) int {
	_ = b[NVGREHeaderLen-1]
	binary.BigEndian.PutUint16(b[0:2], nvgreFlags)
	binary.BigEndian.PutUint16(b[2:4], EtherTypeTEB)
	binary.BigEndian.PutUint32(b[4:8], vsid<<8|uint32(flowID))
	return NVGREHeaderLen
}
