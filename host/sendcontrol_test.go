package host

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/fastpath"
)

// TestSendControl: a forwarded packet's control data names the interface
// it leaves by and carries the VLAN in the mark the egress program tags by.
func TestSendControl(t *testing.T) {
	if oob := sendControl(false, 0, 0); len(oob) != 0 {
		t.Errorf("no interface, no VLAN: %d bytes of control data, want none", len(oob))
	}
	for _, v6 := range []bool{false, true} {
		msgs, err := unix.ParseSocketControlMessage(sendControl(v6, 7, 100))
		if err != nil || len(msgs) != 2 {
			t.Fatalf("v6 %v: %d messages, %v, want 2", v6, len(msgs), err)
		}
		info, mark := msgs[0], msgs[1]
		wantLevel, wantType, ifindex := int32(unix.SOL_IP), int32(unix.IP_PKTINFO), binary.NativeEndian.Uint32(info.Data[0:4])
		if v6 {
			wantLevel, wantType, ifindex = unix.SOL_IPV6, unix.IPV6_PKTINFO, binary.NativeEndian.Uint32(info.Data[16:20])
		}
		if info.Header.Level != wantLevel || info.Header.Type != wantType || ifindex != 7 {
			t.Errorf("v6 %v: packet info %+v (ifindex %d), want level %d type %d ifindex 7", v6, info.Header, ifindex, wantLevel, wantType)
		}
		if mark.Header.Level != unix.SOL_SOCKET || mark.Header.Type != unix.SO_MARK || binary.NativeEndian.Uint32(mark.Data) != fastpath.VLANMark|100 {
			t.Errorf("v6 %v: mark %+v %x, want SO_MARK %#x", v6, mark.Header, mark.Data, fastpath.VLANMark|100)
		}
	}
}
