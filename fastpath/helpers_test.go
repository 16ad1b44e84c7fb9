package fastpath

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/wnv/wnv/packet"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs")
	}
}

// testPinDir returns a fresh pin directory that is cleaned up with t.
func testPinDir(t testing.TB) string {
	t.Helper()
	dir := fmt.Sprintf("/sys/fs/bpf/wfp-test-%016x", rand.Uint64())
	t.Cleanup(func() {
		if err := Cleanup(dir); err != nil {
			t.Errorf("Cleanup(%s): %v", dir, err)
		}
	})
	return dir
}

// openTest opens a datapath with the fast path on and the slow path alive.
func openTest(t testing.TB) *Datapath {
	t.Helper()
	requireRoot(t)
	d, err := Open(Config{PinDir: testPinDir(t), FastPath: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.SlowPathAlive(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return d
}

// skbCtx is struct __sk_buff (linux/bpf.h), the context of a test run.
type skbCtx struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto uint32
	Priority, IngressIfindex, Ifindex, TCIndex                                  uint32
	CB                                                                          [5]uint32
	Hash, TCClassid, Data, DataEnd, NapiID, Family, RemoteIP4, LocalIP4         uint32
	RemoteIP6, LocalIP6                                                         [4]uint32
	RemotePort, LocalPort, DataMeta                                             uint32
	FlowKeys, Tstamp                                                            uint64
	WireLen, GSOSegs                                                            uint32
	Sk                                                                          uint64
	GSOSize                                                                     uint32
	_                                                                           uint32
	Hwtstamp                                                                    uint64
}

// TC actions (linux/pkt_cls.h).
const (
	actOK       = 0
	actShot     = 2
	actRedirect = 7
)

type runResult struct {
	ret  uint32
	data []byte
	mark uint32
}

// run runs prog on frame as received by loopback (ifindex 1: a test run
// needs an existing device, and the fixture's port is ifindex 1).
func run(t *testing.T, prog *ebpf.Program, frame []byte, mark uint32) runResult {
	t.Helper()
	in := skbCtx{Mark: mark, Ifindex: 1}
	var out skbCtx
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256), Context: &in, ContextOut: &out}
	ret, err := prog.Run(opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return runResult{ret: ret, data: opts.DataOut, mark: out.Mark}
}

var (
	macA  = packet.MAC{0x52, 0x54, 0, 0, 0, 0x0a}
	macB  = packet.MAC{0x52, 0x54, 0, 0, 0, 0x0b}
	macGW = packet.MAC{0x02, 0x57, 0x4e, 0x56, 0x00, 0x01}
	macDG = packet.MAC{0x02, 0x00, 0x00, 0x00, 0xd0, 0x01} // a gateway's own lookup record's

	caA4 = netip.MustParseAddr("10.0.0.1")
	caB4 = netip.MustParseAddr("10.0.0.2")
	caC4 = netip.MustParseAddr("10.1.0.9") // another subnet: routed
	caA6 = netip.MustParseAddr("fd00::1")
	caB6 = netip.MustParseAddr("fd00::2")

	paLocal4  = netip.MustParseAddr("198.18.0.1")
	paRemote4 = netip.MustParseAddr("198.18.0.2")
	paLocal6  = netip.MustParseAddr("2001:db8::1")
	paRemote6 = netip.MustParseAddr("2001:db8::2")
)

// udpFrame builds an Ethernet frame with an IPv4 or IPv6 UDP datagram.
func udpFrame(dst, src packet.MAC, srcIP, dstIP netip.Addr, ttl uint8, payload []byte) []byte {
	ipLen := packet.IPv4HeaderLen
	et := uint16(packet.EtherTypeIPv4)
	if srcIP.Is6() {
		ipLen, et = packet.IPv6HeaderLen, packet.EtherTypeIPv6
	}
	b := make([]byte, packet.EthernetHeaderLen+ipLen+packet.UDPHeaderLen+len(payload))
	n := packet.PutEthernet(b, dst, src, et)
	if srcIP.Is6() {
		n += packet.PutIPv6(b[n:], srcIP, dstIP, packet.ProtoUDP, ttl, packet.UDPHeaderLen+len(payload))
	} else {
		n += packet.PutIPv4(b[n:], srcIP, dstIP, packet.ProtoUDP, ttl, packet.UDPHeaderLen+len(payload), 7, true)
	}
	l4 := n
	n += packet.PutUDP(b[n:], 40000, 7777, len(payload))
	copy(b[n:], payload)
	packet.SetUDPChecksum(packet.UDP(b[l4:]), srcIP, dstIP)
	return b
}

// tunnelPacket wraps inner in NVGRE (vxlan false) or VXLAN for vsid, from
// PA src to PA dst, behind an Ethernet header.
func tunnelPacket(src, dst netip.Addr, vxlan bool, vsid uint32, inner []byte) []byte {
	ipLen := packet.IPv4HeaderLen
	et := uint16(packet.EtherTypeIPv4)
	if src.Is6() {
		ipLen, et = packet.IPv6HeaderLen, packet.EtherTypeIPv6
	}
	tun := packet.NVGREHeaderLen
	proto := uint8(packet.ProtoGRE)
	if vxlan {
		tun, proto = packet.UDPHeaderLen+packet.VXLANHeaderLen, packet.ProtoUDP
	}
	b := make([]byte, packet.EthernetHeaderLen+ipLen+tun+len(inner))
	n := packet.PutEthernet(b, packet.MAC{0x52, 0x54, 0, 0, 1, 1}, packet.MAC{0x52, 0x54, 0, 0, 1, 2}, et)
	if src.Is6() {
		n += packet.PutIPv6(b[n:], src, dst, proto, 64, tun+len(inner))
	} else {
		n += packet.PutIPv4(b[n:], src, dst, proto, 64, tun+len(inner), 1, true)
	}
	if vxlan {
		n += packet.PutUDP(b[n:], 50000, packet.VXLANPort, packet.VXLANHeaderLen+len(inner))
		n += packet.PutVXLAN(b[n:], vsid)
	} else {
		n += packet.PutNVGRE(b[n:], vsid, 0x42)
	}
	copy(b[n:], inner)
	return b
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
