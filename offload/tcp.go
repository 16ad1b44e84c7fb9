package offload

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/wnv/wnv/packet"
)

const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpCWR = 0x80

	tcpMinHeaderLen = 20
	// maxIPPacket bounds a coalesced packet: the IPv4 total length and the
	// IPv6 payload length are 16 bits.
	maxIPPacket = 65535
)

// Errors of SegmentTCP and CompleteChecksum; package-level so that a refused
// frame does not allocate.
var (
	ErrNotTCP      = errors.New("super-frame is not an unfragmented IPv4 or IPv6 TCP packet without extension headers")
	ErrBadGSO      = errors.New("virtio-net header has GSOSize 0 or a GSO type other than TCPv4 or TCPv6")
	ErrCsumRange   = errors.New("virtio-net header CsumStart or CsumOffset points past the frame")
	ErrDstTooSmall = errors.New("segment buffer is too small for the segments of the super-frame")
)

// Segment is an Ethernet frame carrying one TCP segment over IPv4 or IPv6,
// with its header offsets, as read by ParseSegment.
type Segment struct {
	Frame   []byte
	v6      bool
	l4, pay int // offsets of the TCP header and the payload in Frame
	end     int // end of the IP packet in Frame
}

// ParseSegment reads frame as Ethernet/IP/TCP. It refuses VLAN tags, IPv4
// options and fragments, and IPv6 extension headers: coalescing and
// segmentation handle only the plain shape every TSO stack sends.
func ParseSegment(frame []byte) (Segment, bool) {
	v6, l4, end, ok := parseIP(frame, packet.ProtoTCP)
	if !ok || end < l4+tcpMinHeaderLen {
		return Segment{}, false
	}
	s := Segment{Frame: frame, v6: v6, l4: l4, end: end}
	s.pay = s.l4 + int(frame[s.l4+12]>>4)*4
	if s.pay < s.l4+tcpMinHeaderLen || s.pay > s.end {
		return Segment{}, false
	}
	return s, true
}

// parseIP reads frame as Ethernet and an unfragmented IPv4 packet without
// options or an IPv6 packet without extension headers, carrying proto. It
// returns the offsets of the L4 header and of the end of the IP packet.
func parseIP(frame []byte, proto uint8) (v6 bool, l4, end int, ok bool) {
	if len(frame) < packet.EthernetHeaderLen {
		return false, 0, 0, false
	}
	l3 := packet.EthernetHeaderLen
	ip := frame[l3:]
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case packet.EtherTypeIPv4:
		if len(ip) < packet.IPv4HeaderLen || ip[0] != 0x45 || ip[9] != proto ||
			binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
			return false, 0, 0, false
		}
		l4 = l3 + packet.IPv4HeaderLen
		end = l3 + int(binary.BigEndian.Uint16(ip[2:4]))
	case packet.EtherTypeIPv6:
		if len(ip) < packet.IPv6HeaderLen || ip[0]>>4 != 6 || ip[6] != proto {
			return false, 0, 0, false
		}
		v6 = true
		l4 = l3 + packet.IPv6HeaderLen
		end = l4 + int(binary.BigEndian.Uint16(ip[4:6]))
	default:
		return false, 0, 0, false
	}
	if end > len(frame) || end < l4 {
		return false, 0, 0, false
	}
	return v6, l4, end, true
}

func (s *Segment) tcp() []byte              { return s.Frame[s.l4:s.end] }
func (s *Segment) seq() uint32              { return binary.BigEndian.Uint32(s.Frame[s.l4+4:]) }
func (s *Segment) flags() uint8             { return s.Frame[s.l4+13] }
func (s *Segment) PayloadLen() int          { return s.end - s.pay }
func (s *Segment) Payload() []byte          { return s.Frame[s.pay:s.end] }
func (s *Segment) HeaderLen() int           { return s.pay }
func (s *Segment) ip() []byte               { return s.Frame[packet.EthernetHeaderLen:s.l4] }
func (s *Segment) addrs() (a, b netip.Addr) { return ipAddrs(s.ip(), s.v6) }

func ipAddrs(ip []byte, v6 bool) (src, dst netip.Addr) {
	if v6 {
		return netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	}
	return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
}

// Follows reports whether s continues the run of segments that started with
// first, so far ends with prev and carries runPayload bytes: same Ethernet, IP and TCP headers apart
// from lengths, IDs, sequence numbers and checksums, sequence number right
// after prev's payload, only ACK (and PSH on s) set, every segment but the
// last as long as the first, and the whole still one IP packet. Such a run
// is what one TSO send of the peer became on the wire.
func Follows(first, prev, s *Segment, runPayload int) bool {
	if s.v6 != first.v6 || s.pay != first.pay || s.PayloadLen() == 0 || s.PayloadLen() > first.PayloadLen() ||
		prev.PayloadLen() != first.PayloadLen() {
		return false
	}
	if prev.flags() != tcpACK || s.flags()&^tcpPSH != tcpACK {
		return false
	}
	if s.seq() != prev.seq()+uint32(prev.PayloadLen()) {
		return false
	}
	if first.pay-packet.EthernetHeaderLen+runPayload+s.PayloadLen() > maxIPPacket {
		return false
	}
	f, x := first.Frame, s.Frame
	// Ethernet header.
	if string(f[:packet.EthernetHeaderLen]) != string(x[:packet.EthernetHeaderLen]) {
		return false
	}
	fi, xi := first.ip(), s.ip()
	if s.v6 {
		// Version, traffic class, flow label; next header, hop limit; addresses.
		if string(fi[0:4]) != string(xi[0:4]) || string(fi[6:40]) != string(xi[6:40]) {
			return false
		}
	} else {
		// TOS; flags (DF); TTL, protocol; addresses. Not length, ID, checksum.
		if fi[1] != xi[1] || fi[6] != xi[6] || fi[8] != xi[8] || string(fi[12:20]) != string(xi[12:20]) {
			return false
		}
	}
	ft, xt := first.tcp(), s.tcp()
	// Ports; ACK number; data offset; window; options. Not sequence number,
	// flags, checksum or urgent pointer.
	return string(ft[0:4]) == string(xt[0:4]) && string(ft[8:12]) == string(xt[8:12]) && ft[12] == xt[12] &&
		string(ft[14:16]) == string(xt[14:16]) && string(ft[20:first.pay-first.l4]) == string(xt[20:s.pay-s.l4])
}

// Coalesce turns first into the headers of a super-frame carrying its own
// payload followed by more bytes of payload from the segments that Follow
// it, sets PSH if the last of them had it, and returns the virtio-net header
// for writing the super-frame to a TAP. The TCP checksum is left partial
// (pseudo-header only) as NeedsCsum requires.
func Coalesce(first *Segment, more int, psh bool) VirtioNetHdr {
	tcpLen := first.end - first.l4 + more
	ip := first.ip()
	gso := uint8(GSOTCPv4)
	if first.v6 {
		gso = GSOTCPv6
		binary.BigEndian.PutUint16(ip[4:6], uint16(tcpLen))
	} else {
		binary.BigEndian.PutUint16(ip[2:4], uint16(packet.IPv4HeaderLen+tcpLen))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], packet.Checksum(ip, 0))
	}
	tcp := first.Frame[first.l4:]
	if psh {
		tcp[13] |= tcpPSH
	}
	src, dst := first.addrs()
	binary.BigEndian.PutUint16(tcp[16:18], ^packet.Checksum(nil, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, tcpLen)))
	return VirtioNetHdr{Flags: NeedsCsum, GSOType: gso, HdrLen: uint16(first.pay), GSOSize: uint16(first.PayloadLen()),
		CsumStart: uint16(first.l4), CsumOffset: 16}
}

// ChecksumValid verifies the segment's TCP checksum. Coalescing merges only
// verified segments, as a NIC's GRO does: the VM's kernel trusts the partial
// checksum of a super-frame and checks nothing itself.
func (s *Segment) ChecksumValid() bool {
	src, dst := s.addrs()
	tcp := s.tcp()
	return packet.Checksum(tcp, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, len(tcp))) == 0
}

// IsPSH reports whether the segment has PSH set.
func (s *Segment) IsPSH() bool { return s.flags()&tcpPSH != 0 }

// CompleteChecksum finishes a checksum the VM left partial (NeedsCsum): the
// field at CsumStart+CsumOffset holds the pseudo-header sum, and the sum of
// everything from CsumStart on completes it.
func CompleteChecksum(frame []byte, h VirtioNetHdr) error {
	if h.Flags&NeedsCsum == 0 {
		return nil
	}
	start, field := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	if start > len(frame) || field+2 > len(frame) {
		return ErrCsumRange
	}
	c := packet.Checksum(frame[start:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[field:], c)
	return nil
}

// SegmentTCP cuts the TSO super-frame in pkt into segments of at most
// h.GSOSize payload bytes, each with full, correct IP and TCP headers and
// checksums, and writes them back to back into dst. pkt starts with prefix
// bytes (an encapsulation header) that are copied in front of every segment.
// It returns the size of each segment but the last, which may be shorter,
// and the total bytes written: segment i is dst[i*size : min((i+1)*size,
// total)].
func SegmentTCP(dst, pkt []byte, prefix int, h VirtioNetHdr) (size, total int, err error) {
	gso := h.GSOType &^ GSOECN
	if h.GSOSize == 0 || (gso != GSOTCPv4 && gso != GSOTCPv6) {
		return 0, 0, ErrBadGSO
	}
	if prefix > len(pkt) {
		return 0, 0, ErrNotTCP
	}
	s, ok := ParseSegment(pkt[prefix:])
	if !ok || s.v6 != (gso == GSOTCPv6) {
		return 0, 0, ErrNotTCP
	}
	mss, hdrs, payload := int(h.GSOSize), prefix+s.pay, s.Payload()
	size = hdrs + mss
	n := max(1, (len(payload)+mss-1)/mss)
	total = (n-1)*size + hdrs + len(payload) - (n-1)*mss
	if total > len(dst) {
		return 0, 0, ErrDstTooSmall
	}
	src, dstA := s.addrs()
	l3, l4 := prefix+packet.EthernetHeaderLen, prefix+s.l4
	seq0 := s.seq()
	id0 := binary.BigEndian.Uint16(pkt[l3+4:])
	flags := s.flags()
	for i := range n {
		out := dst[i*size:]
		chunk := payload[i*mss : min((i+1)*mss, len(payload))]
		copy(out, pkt[:hdrs])
		copy(out[hdrs:], chunk)
		tcpLen := hdrs - l4 + len(chunk)
		ip := out[l3:l4]
		if s.v6 {
			binary.BigEndian.PutUint16(ip[4:6], uint16(tcpLen))
		} else {
			binary.BigEndian.PutUint16(ip[2:4], uint16(packet.IPv4HeaderLen+tcpLen))
			binary.BigEndian.PutUint16(ip[4:6], id0+uint16(i))
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:12], packet.Checksum(ip, 0))
		}
		tcp := out[l4 : l4+tcpLen]
		binary.BigEndian.PutUint32(tcp[4:8], seq0+uint32(i*mss))
		f := flags
		if i < n-1 {
			f &^= tcpFIN | tcpPSH
		}
		if i > 0 {
			f &^= tcpCWR
		}
		tcp[13] = f
		tcp[16], tcp[17] = 0, 0
		binary.BigEndian.PutUint16(tcp[16:18], packet.Checksum(tcp, packet.PseudoHeaderSum(src, dstA, packet.ProtoTCP, tcpLen)))
	}
	return size, total, nil
}

// KernelCoalesced recognises a TCP super-frame the kernel's GRO built on the
// underlay: an inner frame longer than wire, the most one underlay packet
// can carry, whose TCP checksum field holds only the pseudo-header sum, as
// the kernel leaves it after merging segments it verified. It returns the
// virtio-net header for writing the frame to a TAP as is: the checksum to
// complete and the segment size, the largest that fits the wire (the kernel
// does not tell the size of the segments it merged). A frame that fits the
// wire, or carries a full checksum, is not one.
func KernelCoalesced(frame []byte, wire int) (VirtioNetHdr, bool) {
	if len(frame) <= wire {
		return VirtioNetHdr{}, false
	}
	s, ok := ParseSegment(frame)
	if !ok || s.end != len(frame) {
		return VirtioNetHdr{}, false
	}
	src, dst := s.addrs()
	tcp := s.tcp()
	if binary.BigEndian.Uint16(tcp[16:18]) != ^packet.Checksum(nil, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, len(tcp))) {
		return VirtioNetHdr{}, false
	}
	mss := wire - s.pay
	if mss <= 0 {
		return VirtioNetHdr{}, false
	}
	gso := uint8(GSOTCPv4)
	if s.v6 {
		gso = GSOTCPv6
	}
	return VirtioNetHdr{Flags: NeedsCsum, GSOType: gso, HdrLen: uint16(s.pay), GSOSize: uint16(mss),
		CsumStart: uint16(s.l4), CsumOffset: 16}, true
}
