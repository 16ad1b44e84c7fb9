// Package offload is the pure TCP segmentation and coalescing behind VM ports
// with offloads: a VM hands its TAP up to 64 KiB TCP super-frames described
// by a virtio-net header (TSO), which are cut into wire-sized segments with
// their checksums completed before encapsulation; in the other direction,
// consecutive segments of one TCP flow are merged back into one super-frame
// (GRO) so the VM's kernel handles one packet instead of dozens. No I/O, no
// allocation.
package offload

import (
	"encoding/binary"
	"errors"
)

// VirtioNetHdrLen is the size of the legacy virtio-net header a TAP with
// IFF_VNET_HDR puts in front of every frame.
const VirtioNetHdrLen = 10

// Flags of VirtioNetHdr.
const (
	// NeedsCsum: the checksum at CsumStart+CsumOffset holds only the
	// pseudo-header sum; the rest is still to be added from CsumStart on.
	NeedsCsum = 1
	// DataValid: the checksums are known to be good.
	DataValid = 2
)

// GSO types of VirtioNetHdr.
const (
	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3
	GSOTCPv6 = 4
	GSOECN   = 0x80
)

// VirtioNetHdr is struct virtio_net_hdr (legacy layout, host byte order,
// which is little-endian on every machine wnv runs on).
type VirtioNetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // bytes of headers in front of the payload (a hint)
	GSOSize    uint16 // payload bytes per segment
	CsumStart  uint16 // where the checksummed data starts
	CsumOffset uint16 // where, from CsumStart, the checksum field is
}

var errHdrShort = errors.New("virtio-net header is shorter than 10 bytes")

// ParseVirtioNetHdr reads the header at the start of b.
func ParseVirtioNetHdr(b []byte) (VirtioNetHdr, error) {
	if len(b) < VirtioNetHdrLen {
		return VirtioNetHdr{}, errHdrShort
	}
	return VirtioNetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:4]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:6]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:8]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:10]),
	}, nil
}

// Put writes h into the first 10 bytes of b.
func (h VirtioNetHdr) Put(b []byte) {
	_ = b[VirtioNetHdrLen-1]
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:4], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:6], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:8], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:10], h.CsumOffset)
}

// IsGSO reports whether the frame is a super-frame to be segmented.
func (h VirtioNetHdr) IsGSO() bool { return h.GSOType&^GSOECN != GSONone }
