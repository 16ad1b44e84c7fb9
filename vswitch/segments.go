package vswitch

import (
	"net/netip"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// FromVXLANSegments switches the datagrams of one coalesced read (UDP GRO):
// buf holds VXLAN packets of size bytes back to back, the last possibly
// shorter, all from provider address src to dst. It appends one Result per
// datagram, in order, to out and returns it. A datagram delivered to a port
// makes the next one, if its VXLAN header, inner Ethernet header and inner
// IP addresses are the same bytes, take the same verdict without a second
// validation: the verdict depends on nothing else. These are the segments
// of one TCP send, so a read of 44 of them costs one lookup.
func (s *Switch) FromVXLANSegments(src, dst netip.Addr, buf []byte, size int, out []Result) []Result {
	var prev []byte // the last datagram delivered by a full validation
	var prevR Result
	for off := 0; off < len(buf); off += size {
		d := buf[off:min(off+size, len(buf))]
		if prev != nil && sameFlowHeaders(prev, d) {
			if frame, ok := innerIPFrame(d[packet.VXLANHeaderLen:]); ok {
				r := prevR
				r.Data = frame
				s.Counters.VSID(policy.VSID(packet.VXLAN(d).VNI())).Decapsulated.Add(1)
				s.countTx(r.Port, len(frame))
				out = append(out, r)
				continue
			}
		}
		r := s.FromVXLAN(src, dst, d)
		out = append(out, r)
		prev = nil
		if r.Action == ToPort {
			prev, prevR = d, r
		}
	}
	return out
}

// sameFlowHeaders compares what ingress validation reads: the VXLAN header,
// the inner Ethernet header and the inner IP addresses.
func sameFlowHeaders(a, b []byte) bool {
	const eth = packet.VXLANHeaderLen + packet.EthernetHeaderLen
	if len(a) < eth || len(b) < eth || string(a[:eth]) != string(b[:eth]) {
		return false
	}
	var from, to int
	switch packet.Ethernet(a[packet.VXLANHeaderLen:]).Type() {
	case packet.EtherTypeIPv4:
		from, to = eth+12, eth+20
	case packet.EtherTypeIPv6:
		from, to = eth+8, eth+40
	default:
		return false
	}
	return len(a) >= to && len(b) >= to && string(a[from:to]) == string(b[from:to])
}

// innerIPFrame checks the inner IP header and trims the frame to the IP
// packet, as ingress does.
func innerIPFrame(frame []byte) ([]byte, bool) {
	eth := packet.Ethernet(frame)
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			return nil, false
		}
		return frame[:eth.HeaderLen()+ip.TotalLen()], true
	case packet.EtherTypeIPv6:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil {
			return nil, false
		}
		return frame[:eth.HeaderLen()+packet.IPv6HeaderLen+ip.PayloadLen()], true
	}
	return nil, false
}
