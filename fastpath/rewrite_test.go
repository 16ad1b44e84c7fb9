package fastpath

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
)

// IP Rewrite PAs of the fixture's VMs: port A's own, and a remote VM's.
var (
	rwPA4, rwRemote4 = netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.20")
	rwPA6, rwRemote6 = netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::20")
)

const protoICMP = 1

// l4Frame builds an Ethernet frame with an IP packet of protocol proto
// carrying l4 (a transport header and payload) whose checksum, at csumOff
// (-1: none), it computes; an IPv4 packet gets flags (DF, MF) and the
// fragment offset frag.
func l4Frame(dst, src packet.MAC, srcIP, dstIP netip.Addr, proto, ttl uint8, l4 []byte, csumOff int, frag uint16) []byte {
	ipLen := packet.IPv4HeaderLen
	et := uint16(packet.EtherTypeIPv4)
	if srcIP.Is6() {
		ipLen, et = packet.IPv6HeaderLen, packet.EtherTypeIPv6
	}
	b := make([]byte, packet.EthernetHeaderLen+ipLen+len(l4))
	n := packet.PutEthernet(b, dst, src, et)
	if srcIP.Is6() {
		n += packet.PutIPv6(b[n:], srcIP, dstIP, proto, ttl, len(l4))
	} else {
		packet.PutIPv4(b[n:], srcIP, dstIP, proto, ttl, len(l4), 9, false)
		binary.BigEndian.PutUint16(b[n+6:], frag)
		binary.BigEndian.PutUint16(b[n+10:], 0)
		binary.BigEndian.PutUint16(b[n+10:], packet.Checksum(b[n:n+ipLen], 0))
		n += ipLen
	}
	seg := b[n:]
	copy(seg, l4)
	if csumOff >= 0 {
		binary.BigEndian.PutUint16(seg[csumOff:], 0)
		initial := uint32(0)
		if proto != protoICMP {
			initial = packet.PseudoHeaderSum(srcIP, dstIP, proto, len(seg))
		}
		binary.BigEndian.PutUint16(seg[csumOff:], packet.Checksum(seg, initial))
	}
	return b
}

func tcpSeg(payload string) []byte {
	b := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], 40001)
	binary.BigEndian.PutUint16(b[2:], 80)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	b[12], b[13] = 5<<4, 0x18 // header length, PSH ACK
	binary.BigEndian.PutUint16(b[14:], 512)
	copy(b[20:], payload)
	return b
}

func udpDgram(dport uint16, payload string) []byte {
	b := make([]byte, 8+len(payload))
	packet.PutUDP(b, 40002, dport, len(payload))
	copy(b[8:], payload)
	return b
}

// icmpEcho is an ICMP (typ 8) or ICMPv6 (typ 128) echo request; typ 135 is
// a neighbour solicitation's type.
func icmpEcho(typ uint8, payload string) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint32(b[4:], 0x00070001)
	copy(b[8:], payload)
	return b
}

// checkChecksums recomputes the checksums of frame's IP packet from
// scratch: the IPv4 header's, and the transport's over the new addresses.
func checkChecksums(t *testing.T, frame []byte) {
	t.Helper()
	eth := packet.Ethernet(frame)
	var src, dst netip.Addr
	var proto uint8
	var l4 []byte
	if eth.Type() == packet.EtherTypeIPv4 {
		ip := packet.IPv4(eth.Payload())
		if !packet.IPv4HeaderChecksumOK(ip[:ip.HeaderLen()]) {
			t.Errorf("IPv4 header checksum is wrong")
		}
		src, dst, proto, l4 = ip.Src(), ip.Dst(), ip.Protocol(), ip.Payload()
	} else {
		ip := packet.IPv6(eth.Payload())
		src, dst, proto, l4 = ip.Src(), ip.Dst(), ip.NextHeader(), ip.Payload()
	}
	initial := packet.PseudoHeaderSum(src, dst, proto, len(l4))
	switch proto {
	case protoICMP:
		initial = 0
	case packet.ProtoUDP:
		if binary.BigEndian.Uint16(l4[6:]) == 0 && src.Is4() {
			return // none
		}
	}
	if packet.Checksum(l4, initial) != 0 {
		t.Errorf("transport checksum (protocol %d) is wrong for %s > %s", proto, src, dst)
	}
}

// slowRewritten is frame as the slow path rewrites it (packet's SetAddrs,
// the TTL one less when routed).
func slowRewritten(frame []byte, src, dst netip.Addr, routed bool) []byte {
	want := bytes.Clone(frame)
	eth := packet.Ethernet(want)
	if eth.Type() == packet.EtherTypeIPv4 {
		ip := packet.IPv4(eth.Payload())
		ip.SetAddrs(src, dst, false)
		if routed {
			ip.DecTTL()
		}
	} else {
		ip := packet.IPv6(eth.Payload())
		ip.SetAddrs(src, dst, false)
		if routed {
			ip.DecHopLimit()
		}
	}
	return want
}

// The port program rewrites a VM's packet under a rewrite decision: the CAs
// become the PAs, checksums right (recomputed) and the frame otherwise what
// the slow path makes of it, nothing added; it goes out by the underlay.
func TestRewriteOut(t *testing.T) {
	d := newFixture(t)
	gen := d.Generation()
	caR4, caR6 := netip.MustParseAddr("10.1.0.20"), netip.MustParseAddr("fd01::20") // routed
	egress := func(dst netip.Addr, routed bool) Egress {
		e := Egress{Ifindex: ifA, Dst: dst, Gen: gen, OutIfindex: ifUnderlay, DstMAC: macB, Rewrite: true, VSID: vsidA,
			SrcPA: rwPA4, DstPA: rwRemote4, MaxLen: 1500 + 14}
		if dst.Is6() {
			e.SrcPA, e.DstPA = rwPA6, rwRemote6
		}
		if routed {
			e.Routed, e.SrcMAC, e.VSID = true, macGW, vsidC
		}
		return e
	}
	install(t, d, egress(caB4, false), egress(caB6, false), egress(caR4, true), egress(caR6, true))
	zeroUDP := l4Frame(macGW, macA, caA4, caB4, packet.ProtoUDP, 64, udpDgram(53, "no checksum"), -1, 0x4000)
	for _, tc := range []struct {
		name  string
		frame []byte
		e     Egress
	}{
		{"TCP/IPv4", l4Frame(macGW, macA, caA4, caB4, packet.ProtoTCP, 64, tcpSeg("rewrite me"), 16, 0x4000), egress(caB4, false)},
		{"UDP/IPv4", l4Frame(macGW, macA, caA4, caB4, packet.ProtoUDP, 64, udpDgram(53, "udp"), 6, 0), egress(caB4, false)},
		{"UDP/IPv4 without checksum", zeroUDP, egress(caB4, false)},
		{"ICMP echo", l4Frame(macGW, macA, caA4, caB4, protoICMP, 64, icmpEcho(8, "ping"), 2, 0x4000), egress(caB4, false)},
		{"TCP/IPv4 routed", l4Frame(macGW, macA, caA4, caR4, packet.ProtoTCP, 9, tcpSeg("routed"), 16, 0x4000), egress(caR4, true)},
		{"TCP/IPv6", l4Frame(macGW, macA, caA6, caB6, packet.ProtoTCP, 64, tcpSeg("six"), 16, 0), egress(caB6, false)},
		{"UDP/IPv6", l4Frame(macGW, macA, caA6, caB6, packet.ProtoUDP, 64, udpDgram(53, "six udp"), 6, 0), egress(caB6, false)},
		{"ICMPv6 echo routed", l4Frame(macGW, macA, caA6, caR6, packet.ProtoICMPv6, 2, icmpEcho(128, "ping6"), 2, 0), egress(caR6, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counters(t, d)
			r := run(t, d.objs.WnvPort, tc.frame, 0)
			if r.ret != actRedirect || r.mark != 0 {
				t.Fatalf("action %d mark %#x, want redirect (%d) without mark", r.ret, r.mark, actRedirect)
			}
			out := r.data
			if want := slowRewritten(tc.frame, tc.e.SrcPA, tc.e.DstPA, tc.e.Routed); !bytes.Equal(out, want) {
				t.Errorf("rewritten\n got %x\nwant %x", out, want)
			}
			checkChecksums(t, out)
			if tc.name == "UDP/IPv4 without checksum" && binary.BigEndian.Uint16(out[14+20+6:]) != 0 {
				t.Errorf("a zero UDP checksum became %#04x", binary.BigEndian.Uint16(out[14+20+6:]))
			}
			after := counters(t, d)
			if after.Path.PortFast-before.Path.PortFast != 1 || after.VSIDs[tc.e.VSID].Encapsulated-before.VSIDs[tc.e.VSID].Encapsulated != 1 ||
				after.Ports[indexA].RxFrames-before.Ports[indexA].RxFrames != 1 {
				t.Errorf("counters not increased by one rewritten frame: before %+v after %+v", before, after)
			}
		})
	}
}

// What the kernel cannot rewrite, or the slow path encapsulates or answers,
// goes to the slow path untouched.
func TestRewriteOutSlowPath(t *testing.T) {
	d := newFixture(t)
	gen := d.Generation()
	caR4 := netip.MustParseAddr("10.1.0.20")
	caBig := netip.MustParseAddr("10.0.0.30")
	e := Egress{Ifindex: ifA, Dst: caB4, Gen: gen, OutIfindex: ifUnderlay, DstMAC: macB, Rewrite: true, VSID: vsidA, SrcPA: rwPA4, DstPA: rwRemote4, MaxLen: 1514}
	routed, big := e, e
	routed.Dst, routed.Routed, routed.SrcMAC = caR4, true, macGW
	big.Dst, big.MaxLen = caBig, 100
	e6 := e
	e6.Dst, e6.SrcPA, e6.DstPA = caB6, rwPA6, rwRemote6
	install(t, d, e, routed, big, e6)
	sctp := make([]byte, 16)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"TTL 1, routed", l4Frame(macGW, macA, caA4, caR4, packet.ProtoUDP, 1, udpDgram(53, "ttl"), 6, 0)},
		{"IPv4 first fragment", l4Frame(macGW, macA, caA4, caB4, packet.ProtoUDP, 64, udpDgram(53, "frag"), 6, 0x2000)},
		{"IPv4 later fragment", l4Frame(macGW, macA, caA4, caB4, packet.ProtoUDP, 64, []byte("the rest of it"), -1, 0x0010)},
		{"IPv6 fragment header", l4Frame(macGW, macA, caA6, caB6, 44, 64, make([]byte, 16), -1, 0)},
		{"GRE", l4Frame(macGW, macA, caA4, caB4, packet.ProtoGRE, 64, make([]byte, 16), -1, 0)},
		{"UDP to port 4789", l4Frame(macGW, macA, caA4, caB4, packet.ProtoUDP, 64, udpDgram(packet.VXLANPort, "vxlan"), 6, 0)},
		{"neighbour solicitation", l4Frame(macGW, macA, caA6, caB6, packet.ProtoICMPv6, 255, icmpEcho(135, "nd"), 2, 0)},
		{"SCTP (no pseudo-header to fix)", l4Frame(macGW, macA, caA4, caB4, 132, 64, sctp, -1, 0)},
		{"too big for the underlay", l4Frame(macGW, macA, caA4, caBig, packet.ProtoUDP, 64, udpDgram(53, string(make([]byte, 200))), 6, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, d.objs.WnvPort, tc.frame, 0)
			if r.ret != actRedirect || r.mark != SlowMark {
				t.Fatalf("action %d mark %#x, want the slow path", r.ret, r.mark)
			}
			if !bytes.Equal(r.data[:len(tc.frame)], tc.frame) {
				t.Errorf("frame changed on its way to the slow path")
			}
		})
	}
}

// The underlay program delivers a rewritten packet whose PA pair the slow
// path validated: the CAs and MACs back, checksums right, to the port; any
// other pair, a stale decision or a fragment goes to the slow path.
func TestRewriteIn(t *testing.T) {
	d := newFixture(t)
	gen := d.Generation()
	if err := d.SetRewritePAs([]netip.Addr{rwPA4, rwPA6}); err != nil {
		t.Fatal(err)
	}
	ins := []RewriteIngress{
		{SrcPA: rwRemote4, DstPA: rwPA4, SrcCA: caB4, DstCA: caA4, SrcMAC: macB, DstMAC: macA, Gen: gen, Ifindex: ifA},
		{SrcPA: rwRemote6, DstPA: rwPA6, SrcCA: caB6, DstCA: caA6, SrcMAC: macGW, DstMAC: macA, Gen: gen, Ifindex: ifA},
	}
	if err := d.InstallRewriteIngress(ins); err != nil {
		t.Fatal(err)
	}
	if got, err := d.RewriteIngresses(); err != nil || len(got) != 2 {
		t.Fatalf("installed %+v (%v), want 2", got, err)
	}
	wire := packet.MAC{0x52, 0x54, 0, 0, 1, 1}
	for _, tc := range []struct {
		name string
		in   RewriteIngress
		l4   []byte
		prot uint8
		off  int
	}{
		{"TCP/IPv4", ins[0], tcpSeg("back to the CAs"), packet.ProtoTCP, 16},
		{"UDP/IPv4", ins[0], udpDgram(7010, "udp"), packet.ProtoUDP, 6},
		{"ICMP", ins[0], icmpEcho(0, "pong"), protoICMP, 2},
		{"TCP/IPv6", ins[1], tcpSeg("six"), packet.ProtoTCP, 16},
		{"ICMPv6", ins[1], icmpEcho(129, "pong6"), packet.ProtoICMPv6, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := l4Frame(wire, wire, tc.in.SrcPA, tc.in.DstPA, tc.prot, 61, tc.l4, tc.off, 0x4000)
			before := counters(t, d)
			r := run(t, d.objs.WnvUnderlay, pkt, 0)
			if r.ret != actRedirect || r.mark != 0 {
				t.Fatalf("action %d mark %#x, want redirect without mark", r.ret, r.mark)
			}
			want := slowRewritten(pkt, tc.in.SrcCA, tc.in.DstCA, false)
			packet.Ethernet(want).SetDst(tc.in.DstMAC)
			packet.Ethernet(want).SetSrc(tc.in.SrcMAC)
			if !bytes.Equal(r.data[:len(pkt)], want) {
				t.Errorf("delivered\n got %x\nwant %x", r.data[:len(pkt)], want)
			}
			checkChecksums(t, r.data[:len(pkt)])
			after := counters(t, d)
			if after.Path.UnderlayFast-before.Path.UnderlayFast != 1 || after.VSIDs[vsidA].Decapsulated-before.VSIDs[vsidA].Decapsulated != 1 ||
				after.Ports[indexA].TxFrames-before.Ports[indexA].TxFrames != 1 {
				t.Errorf("counters not increased by one delivered frame: before %+v after %+v", before, after)
			}
		})
	}

	other := netip.MustParseAddr("198.18.0.99")
	for _, tc := range []struct {
		name   string
		pkt    []byte
		before func()
		after  func()
	}{
		{name: "a PA pair without a decision", pkt: l4Frame(wire, wire, other, rwPA4, packet.ProtoUDP, 64, udpDgram(7010, "x"), 6, 0)},
		// (A UDP fragment is the tunnel path's: senders encapsulate those.)
		{name: "a TCP fragment", pkt: l4Frame(wire, wire, rwRemote4, rwPA4, packet.ProtoTCP, 64, tcpSeg("x"), 16, 0x2000)},
		{name: "a stale decision", pkt: l4Frame(wire, wire, rwRemote4, rwPA4, packet.ProtoUDP, 64, udpDgram(7010, "x"), 6, 0),
			before: func() { d.BumpGeneration() }, after: func() { d.SetGeneration(gen) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
				defer tc.after()
			}
			before := counters(t, d)
			r := run(t, d.objs.WnvUnderlay, tc.pkt, 0)
			if r.ret != actRedirect || r.mark != SlowMark || !bytes.Equal(r.data[:len(tc.pkt)], tc.pkt) {
				t.Errorf("action %d mark %#x changed %v, want the slow path, untouched", r.ret, r.mark, !bytes.Equal(r.data[:len(tc.pkt)], tc.pkt))
			}
			if got := counters(t, d).Path.UnderlaySlow - before.Path.UnderlaySlow; got != 1 {
				t.Errorf("handed to the slow path +%d, want +1", got)
			}
		})
	}
}

// With UseVmMACAddress, the underlay's egress program puts the VM's MAC on
// what leaves from its PA, but for the host's neighbour discovery.
func TestVMMACOut(t *testing.T) {
	d := newFixture(t)
	if err := d.SetVMMACs(map[netip.Addr]packet.MAC{rwPA4: macA, rwPA6: macA}); err != nil {
		t.Fatal(err)
	}
	host := packet.MAC{0x52, 0x54, 0, 0, 2, 2}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  packet.MAC
	}{
		{"from the PA", l4Frame(macB, host, rwPA4, rwRemote4, packet.ProtoTCP, 64, tcpSeg("x"), 16, 0), macA},
		{"from the IPv6 PA", l4Frame(macB, host, rwPA6, rwRemote6, packet.ProtoUDP, 64, udpDgram(1, "x"), 6, 0), macA},
		{"neighbour advertisement from the PA", l4Frame(macB, host, rwPA6, rwRemote6, packet.ProtoICMPv6, 255, icmpEcho(136, "x"), 2, 0), host},
		{"from another PA", l4Frame(macB, host, paLocal4, rwRemote4, packet.ProtoTCP, 64, tcpSeg("x"), 16, 0), host},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, d.objs.WnvUnderlayOut, tc.frame, 0)
			if r.ret != actOK {
				t.Fatalf("action %d, want ok", r.ret)
			}
			want := bytes.Clone(tc.frame)
			packet.Ethernet(want).SetSrc(tc.want)
			if !bytes.Equal(r.data[:len(want)], want) {
				t.Errorf("sent\n got %x\nwant %x", r.data[:len(want)], want)
			}
		})
	}
	if err := d.SetVMMACs(nil); err != nil {
		t.Fatal(err)
	}
	frame := l4Frame(macB, host, rwPA4, rwRemote4, packet.ProtoTCP, 64, tcpSeg("x"), 16, 0)
	if r := run(t, d.objs.WnvUnderlayOut, frame, 0); !bytes.Equal(r.data[:len(frame)], frame) {
		t.Errorf("the VM's MAC put on a frame after the PA left the map")
	}
}
