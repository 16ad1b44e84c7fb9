package offload

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
)

// udpFrame builds an Ethernet/IP/UDP frame with a full checksum.
func udpFrame(src, dst string, payloadLen int) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	b := make([]byte, 14+40+packet.UDPHeaderLen+payloadLen)
	n := 0
	if s.Is4() {
		n += packet.PutEthernet(b, macB, macA, packet.EtherTypeIPv4)
		n += packet.PutIPv4(b[n:], s, d, packet.ProtoUDP, 64, packet.UDPHeaderLen+payloadLen, 7, true)
	} else {
		n += packet.PutEthernet(b, macB, macA, packet.EtherTypeIPv6)
		n += packet.PutIPv6(b[n:], s, d, packet.ProtoUDP, 64, packet.UDPHeaderLen+payloadLen)
	}
	u := b[n : n+packet.UDPHeaderLen+payloadLen]
	binary.BigEndian.PutUint16(u[0:], 5000)
	binary.BigEndian.PutUint16(u[2:], 7777)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	for i := range payloadLen {
		u[packet.UDPHeaderLen+i] = byte(i*13 + 1)
	}
	packet.SetUDPChecksum(u, s, d)
	return b[:n+len(u)]
}

// checksumValid verifies the L4 checksum of a frame parseIP reads.
func checksumValid(frame []byte, proto uint8) bool {
	v6, l4, end, ok := parseIP(frame, proto)
	if !ok {
		return false
	}
	src, dst := ipAddrs(frame[packet.EthernetHeaderLen:l4], v6)
	return packet.Checksum(frame[l4:end], packet.PseudoHeaderSum(src, dst, proto, end-l4)) == 0
}

func TestPartialChecksum(t *testing.T) {
	for _, fam := range [][2]string{{"10.0.0.10", "10.0.0.11"}, {"fd00::10", "fd00::11"}} {
		tcp, vm := superFrame(t, fam[0], fam[1], 1000, 1400)
		if err := CompleteChecksum(tcp, vm); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			proto  uint8
			frame  []byte
			offset int
		}{{"TCP", packet.ProtoTCP, tcp, 16}, {"UDP", packet.ProtoUDP, udpFrame(fam[0], fam[1], 333), 6}} {
			name := fam[0] + " " + tc.name
			if !checksumValid(tc.frame, tc.proto) {
				t.Fatalf("%s: the frame built has a bad checksum", name)
			}
			if _, ok := PartialChecksum(tc.frame); ok {
				t.Errorf("%s: a frame with a full checksum is recognised", name)
			}
			// What a sender's checksum offload leaves: the pseudo-header sum.
			partial := append([]byte(nil), tc.frame...)
			v6, l4, end, _ := parseIP(partial, tc.proto)
			src, dst := ipAddrs(partial[packet.EthernetHeaderLen:l4], v6)
			binary.BigEndian.PutUint16(partial[l4+tc.offset:], ^packet.Checksum(nil, packet.PseudoHeaderSum(src, dst, tc.proto, end-l4)))
			h, ok := PartialChecksum(partial)
			if !ok {
				t.Fatalf("%s: a frame with the pseudo-header sum in its checksum is not recognised", name)
			}
			if h != (VirtioNetHdr{Flags: NeedsCsum, CsumStart: uint16(l4), CsumOffset: uint16(tc.offset)}) {
				t.Errorf("%s: header %+v", name, h)
			}
			if checksumValid(partial, tc.proto) {
				t.Fatalf("%s: the partial frame already verifies; the test proves nothing", name)
			}
			// What the port's kernel does with the header finishes it.
			if err := CompleteChecksum(partial, h); err != nil {
				t.Fatal(err)
			}
			if !checksumValid(partial, tc.proto) {
				t.Errorf("%s: finishing the checksum the header asks for leaves it invalid", name)
			}
			if _, ok := PartialChecksum(append(tc.frame[:len(tc.frame):len(tc.frame)], 0)); ok {
				t.Errorf("%s: a frame with trailing bytes is recognised", name)
			}
		}
	}
	noSum := udpFrame("10.0.0.10", "10.0.0.11", 10)
	binary.BigEndian.PutUint16(noSum[34+6:], 0)
	if _, ok := PartialChecksum(noSum); ok {
		t.Error("an IPv4 UDP frame without a checksum is recognised")
	}
}
