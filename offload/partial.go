package offload

import (
	"encoding/binary"

	"github.com/wnv/wnv/packet"
)

// PartialChecksum recognises a TCP or UDP frame whose checksum field holds
// only the pseudo-header sum: a sender's checksum offload left it for the
// next device to finish, and a veth underlay hands it over unfinished (a
// real NIC would have finished it on the wire). It returns the virtio-net
// header that asks the port's kernel to finish it on delivery. A frame with a
// full checksum is not one; should a full checksum happen to equal the
// pseudo-header sum, finishing it again writes the same value.
func PartialChecksum(frame []byte) (VirtioNetHdr, bool) {
	for _, l := range [...]struct {
		proto       uint8
		min, offset int
	}{{packet.ProtoTCP, tcpMinHeaderLen, 16}, {packet.ProtoUDP, packet.UDPHeaderLen, 6}} {
		v6, l4, end, ok := parseIP(frame, l.proto)
		if !ok {
			continue
		}
		if end != len(frame) || end-l4 < l.min {
			return VirtioNetHdr{}, false
		}
		field := binary.BigEndian.Uint16(frame[l4+l.offset:])
		if l.proto == packet.ProtoUDP && field == 0 {
			return VirtioNetHdr{}, false // IPv4 UDP without a checksum
		}
		src, dst := ipAddrs(frame[packet.EthernetHeaderLen:l4], v6)
		if field != ^packet.Checksum(nil, packet.PseudoHeaderSum(src, dst, l.proto, end-l4)) {
			return VirtioNetHdr{}, false
		}
		return VirtioNetHdr{Flags: NeedsCsum, CsumStart: uint16(l4), CsumOffset: uint16(l.offset)}, true
	}
	return VirtioNetHdr{}, false
}
