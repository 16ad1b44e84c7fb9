package vswitch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"unsafe"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

func TestFlowsFollowPolicyAndPortChanges(t *testing.T) {
	sw, ev := host1(t)
	f := NewFlows()
	send := func(dst string) Result {
		buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", dst, 20, true)
		var r Result
		sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
		return r
	}
	for range 2 {
		if r := send("10.0.0.11"); r.Action != ToUnderlay || r.Dst != pa2 || r.Encap != policy.EncapNVGRE {
			t.Fatalf("got %v %v to %s, want NVGRE to %s", r.Action, r.Reason, r.Dst, pa2)
		}
	}
	// The record moves to host3 and the subnet to VXLAN: the cached decision
	// must not outlive the policy it came from.
	st := labStore(t, pa1)
	newPA := pa3
	if _, err := st.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, VirtualSubnetID: []policy.VSID{5001}},
		policy.LookupRecordChange{ProviderAddress: &newPA}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddVirtualSubnet(policy.VirtualSubnet{VirtualSubnetID: 5001, Encapsulation: policy.EncapVXLAN}); err != nil {
		t.Fatal(err)
	}
	sw.SetPolicy(st.Table())
	if r := send("10.0.0.11"); r.Action != ToUnderlay || r.Dst != pa3 || r.Encap != policy.EncapVXLAN {
		t.Fatalf("after the move: %v %v to %s by %v, want VXLAN to %s", r.Action, r.Reason, r.Dst, r.Encap, pa3)
	}
	// blue2 attaches here: local delivery once the ports change.
	newPA = pa1
	if _, err := st.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, VirtualSubnetID: []policy.VSID{5001}},
		policy.LookupRecordChange{ProviderAddress: &newPA}); err != nil {
		t.Fatal(err)
	}
	sw.SetPolicy(st.Table())
	if r := send("10.0.0.11"); r.Action != Drop || r.Reason != ReasonNoLocalPort {
		t.Fatalf("record local, no port: %v %v, want drop no-local-port", r.Action, r.Reason)
	}
	sw.SetPorts(must(NewPortTable([]PortConfig{
		{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10")},
		{Index: 3, Name: "blue2", MAC: macBlue2, VSID: 5001, CAs: addrs("10.0.0.11")},
	})))
	if r := send("10.0.0.11"); r.Action != ToPort || r.Port != 3 {
		t.Fatalf("after attach: %v %v port %d, want port 3", r.Action, r.Reason, r.Port)
	}
	// Misses are not cached: every packet raises its mismatch.
	ev.events = nil
	for range 3 {
		send("10.0.0.99")
	}
	if len(ev.events) != 3 {
		t.Fatalf("%d mismatch events for 3 packets to an unknown CA, want 3", len(ev.events))
	}
}

func TestFlowsStillCheckEveryPacket(t *testing.T) {
	sw, _ := host1(t)
	f := NewFlows()
	buf, n := udpFrame(GatewayMAC, macBlue1, "10.0.0.10", "10.0.1.10", 20, true)
	var r Result
	if sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch()); r.Action != ToUnderlay {
		t.Fatalf("routed: %v %v", r.Action, r.Reason)
	}
	// Same flow, TTL 1: routing decrements it, so the cached route must
	// still stop the packet, answered by the gateway with time exceeded.
	buf, n = udpFrame(GatewayMAC, macBlue1, "10.0.0.10", "10.0.1.10", 20, true)
	ip := packet.IPv4(buf[Headroom+packet.EthernetHeaderLen:])
	for ip.TTL() > 1 {
		ip.DecTTL()
	}
	drops := sw.Counters.Dropped(ReasonTTLExceeded)
	if sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch()); r.Action != ToPort || !r.Reply || sw.Counters.Dropped(ReasonTTLExceeded) != drops+1 {
		t.Fatalf("TTL 1 on a cached route: %v %v reply %v, want an ICMP answer and a ttl-exceeded drop", r.Action, r.Reason, r.Reply)
	}
	eth := must(packet.ParseEthernet(r.Data))
	rip := must(packet.ParseIPv4(eth.Payload()))
	m := must(packet.ParseICMPv4(rip.Payload()))
	if m.Type() != packet.ICMPv4TimeExceeded || m.Code() != 0 || rip.Src() != netip.MustParseAddr("10.0.0.1") || rip.Dst() != netip.MustParseAddr("10.0.0.10") || eth.Dst() != macBlue1 {
		t.Errorf("TTL 1 answer: ICMP %d/%d from %s to %s (MAC %s), want time exceeded from the gateway 10.0.0.1 to 10.0.0.10", m.Type(), m.Code(), rip.Src(), rip.Dst(), eth.Dst())
	}
	// A spoofed source on a cached flow is still dropped.
	buf, n = udpFrame(GatewayMAC, macBlue1, "10.0.0.99", "10.0.1.10", 20, true)
	if sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch()); r.Action != Drop || r.Reason != ReasonSpoofedCA {
		t.Fatalf("spoofed: %v %v", r.Action, r.Reason)
	}
}

func TestFlowsCollisionsEvictOldest(t *testing.T) {
	f := NewFlows()
	// 2*flowWays destinations: the cache answers for at least the last
	// flowWays inserted, whatever sets they hash to.
	var dsts []netip.Addr
	for i := range 2 * flowWays {
		dst := netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})
		dsts = append(dsts, dst)
		f.insert(newFlowKey(0, dst.AsSlice()), &decision{dstVSID: policy.VSID(5000 + i)}, packet.MAC{2, 0, 0, 0, 0, byte(i)})
	}
	// Each decision keeps its own routed source MAC as older ones move
	// down their set.
	for i, dst := range dsts[flowWays:] {
		d, gw := f.lookup(newFlowKey(0, dst.AsSlice()))
		if d == nil || d.dstVSID != policy.VSID(5000+flowWays+i) || *gw != (packet.MAC{2, 0, 0, 0, 0, byte(flowWays + i)}) {
			t.Errorf("%s: %v", dst, d)
		}
	}
	last := dsts[len(dsts)-1]
	if d, _ := f.lookup(newFlowKey(1, last.AsSlice())); d != nil {
		t.Error("another port's flow answered")
	}
	if mapped := netip.AddrFrom16(last.As16()); func() bool { d, _ := f.lookup(newFlowKey(0, mapped.AsSlice())); return d != nil }() {
		t.Errorf("IPv6 %s took the decision for IPv4 %s", mapped, last)
	}
}

// A TSO super-frame is checked against the MTU by the size of the segments
// it will be cut into, not its own.
func TestSuperFrameMTUBySegment(t *testing.T) {
	sw, _ := host1(t)
	var r Result
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 8000, true)
	sw.FromPortFlows(&r, NewFlows(), 0, buf, Headroom, n, 1458+packet.EthernetHeaderLen, scratch())
	if r.Action != ToUnderlay || len(r.Data) != n+packet.NVGREHeaderLen {
		t.Fatalf("super-frame with 1458-byte segments: %v %v, want the whole frame encapsulated", r.Action, r.Reason)
	}
	buf, n = udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 8000, true)
	sw.FromPortFlows(&r, NewFlows(), 0, buf, Headroom, n, 1459+packet.EthernetHeaderLen, scratch())
	if r.Action != ToPort {
		t.Fatalf("super-frame with 1459-byte segments: %v %v, want ICMP fragmentation needed", r.Action, r.Reason)
	}
	ip := must(packet.ParseIPv4(packet.Ethernet(r.Data).Payload()))
	if m := must(packet.ParseICMPv4(ip.Payload())); m.NextHopMTU() != 1458 {
		t.Fatalf("next-hop MTU %d, want 1458", m.NextHopMTU())
	}
}

func TestFlowsCountsReachCountersOnFlush(t *testing.T) {
	sw, _ := host1(t)
	f := NewFlows()
	var r Result
	for range 3 {
		buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 20, true)
		if sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch()); r.Action != ToUnderlay {
			t.Fatalf("%v %v", r.Action, r.Reason)
		}
	}
	f.Flush()
	pc, vc := sw.Counters.Port(0), sw.Counters.VSID(5001)
	if pc.RxFrames.Load() != 3 || pc.RxBytes.Load() != 3*(14+20+8+20) || vc.Encapsulated.Load() != 3 {
		t.Fatalf("after Flush: rx %d frames %d bytes, encapsulated %d; want 3, 186, 3", pc.RxFrames.Load(), pc.RxBytes.Load(), vc.Encapsulated.Load())
	}
	f.Flush()
	if pc.RxFrames.Load() != 3 || vc.Encapsulated.Load() != 3 {
		t.Fatal("a second Flush counted again")
	}
}

func TestFlowEntryFillsOneCacheLine(t *testing.T) {
	if n := unsafe.Sizeof(flowEntry{}); n != 64 {
		t.Errorf("flowEntry is %d bytes, want 64: one cache line per decision", n)
	}
	if off := unsafe.Offsetof(Flows{}.sets); off != 0 {
		t.Errorf("Flows.sets at offset %d, want 0: entries would straddle cache lines", off)
	}
}

// cachedVsGeneral is host1 with 5002 on VXLAN and two VMs of its own, blue4
// in 5001 on port 2 and blue5 in 5002 on port 3, so that blue1's flows cover
// every verdict egressCached makes: NVGRE and VXLAN, routed or not, local
// delivery routed or not.
func cachedVsGeneral(t *testing.T) *Switch {
	st := labStore(t, pa1)
	must(st.AddVirtualSubnet(policy.VirtualSubnet{VirtualSubnetID: 5002, Encapsulation: policy.EncapVXLAN}))
	macBlue4, macBlue5 := packet.MAC{2, 0, 0, 0, 0x50, 4}, packet.MAC{2, 0, 0, 0, 0x50, 5}
	for _, r := range []policy.LookupRecord{
		{CustomerAddress: netip.MustParseAddr("10.0.0.20"), VirtualSubnetID: 5001, MACAddress: macBlue4, ProviderAddress: pa1, Rule: policy.TranslationMethodEncap},
		{CustomerAddress: netip.MustParseAddr("10.0.1.20"), VirtualSubnetID: 5002, MACAddress: macBlue5, ProviderAddress: pa1, Rule: policy.TranslationMethodEncap},
	} {
		must(st.AddLookupRecord(r))
	}
	sw := New(Config{UnderlayMTU: 1500, Events: &recorder{}})
	sw.SetPolicy(st.Table())
	sw.SetPorts(must(NewPortTable([]PortConfig{
		{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")},
		{Index: 2, Name: "blue4", MAC: macBlue4, VSID: 5001, CAs: addrs("10.0.0.20")},
		{Index: 3, Name: "blue5", MAC: macBlue5, VSID: 5002, CAs: addrs("10.0.1.20")},
	})))
	return sw
}

// A frame takes the same verdict, leaves the same bytes and counts the same
// whether egressCached switches it from a warm cache or the general path
// does without one; egressCached takes every frame of a cached flow that
// leaves without a drop or an ICMP error.
func TestCachedPathMatchesGeneralPath(t *testing.T) {
	ipOf := func(b []byte) packet.IPv4 { return packet.IPv4(b[packet.EthernetHeaderLen:]) }
	reChecksum := func(b []byte) {
		h := ipOf(b)[:ipOf(b).HeaderLen()]
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:12], packet.Checksum(h, 0))
	}
	setTTL := func(b []byte, ttl uint8) {
		ipOf(b)[8] = ttl
		reChecksum(b)
	}
	const (
		leaves  = iota // egressCached takes it
		ttl1           // it does unless routing drops it
		tooBig         // it does when the destination is local
		general        // it never does
	)
	variants := []struct {
		name   string
		size   int // UDP payload
		df     bool
		segLen int
		change func(b []byte) []byte // of the frame, which it may grow
		kind   int
	}{
		{name: "plain", size: 100, df: true},
		{name: "TTL 2", size: 100, df: true, change: func(b []byte) []byte { setTTL(b, 2); return b }},
		{name: "TTL 1", size: 100, df: true, change: func(b []byte) []byte { setTTL(b, 1); return b }, kind: ttl1},
		{name: "largest", size: 1500 - 28 - 50, df: true},
		{name: "too big, DF", size: 1500 - 28 - 41, df: true, kind: tooBig},
		{name: "too big, no DF", size: 1500 - 28 - 41, kind: tooBig},
		{name: "super-frame", size: 4000, df: true, segLen: 1400},
		{name: "super-frame too big", size: 4000, df: true, segLen: 1500, kind: tooBig},
		{name: "link padding", size: 10, df: true, change: func(b []byte) []byte { return append(b, 0, 0, 0, 0) }},
		{name: "bad checksum", size: 100, df: true, change: func(b []byte) []byte { b[packet.EthernetHeaderLen+10]++; return b }, kind: general},
		{name: "total length past the frame", size: 100, df: true, kind: general, change: func(b []byte) []byte {
			binary.BigEndian.PutUint16(ipOf(b)[2:], uint16(len(b)))
			reChecksum(b)
			return b
		}},
		{name: "total length below the header", size: 100, df: true, kind: general, change: func(b []byte) []byte {
			binary.BigEndian.PutUint16(ipOf(b)[2:], 19)
			reChecksum(b)
			return b
		}},
		{name: "options", size: 100, df: true, kind: general, change: func(b []byte) []byte {
			// End of Option List, padded to 4 bytes before UDP: the first
			// 20 bytes alone still have a correct checksum.
			n := len(b)
			b = append(b, 0, 0, 0, 0)
			copy(b[packet.EthernetHeaderLen+24:], b[packet.EthernetHeaderLen+20:n])
			clear(b[packet.EthernetHeaderLen+20 : packet.EthernetHeaderLen+24])
			ip := ipOf(b)
			ip[0] = 0x46
			binary.BigEndian.PutUint16(ip[2:], binary.BigEndian.Uint16(ip[2:])+4)
			reChecksum(b)
			return b
		}},
		{name: "spoofed CA", size: 100, df: true, kind: general, change: func(b []byte) []byte {
			copy(ipOf(b)[12:], []byte{10, 0, 0, 99})
			reChecksum(b)
			return b
		}},
		{name: "spoofed MAC", size: 100, df: true, change: func(b []byte) []byte { b[11]++; return b }, kind: general},
		{name: "multicast MAC", size: 100, df: true, change: func(b []byte) []byte { copy(b, packet.Broadcast[:]); return b }, kind: general},
		{name: "VLAN", size: 100, df: true, change: func(b []byte) []byte { return append(b[:12:12], append([]byte{0x81, 0, 0, 7}, b[12:]...)...) }, kind: general},
		{name: "short", size: 100, df: true, change: func(b []byte) []byte { return b[:packet.EthernetHeaderLen+19] }, kind: general},
	}
	dsts := []struct {
		dst           string
		mac           packet.MAC
		routed, local bool
		known         bool
	}{
		{"10.0.0.11", macBlue2, false, false, true},  // NVGRE
		{"10.0.1.10", GatewayMAC, true, false, true}, // routed, VXLAN
		{"10.0.0.20", macBlue2, false, true, true},   // local
		{"10.0.1.20", GatewayMAC, true, true, true},  // routed, local
		{"10.0.0.77", macBlue2, false, false, false}, // no record
	}
	// frame is variant v of a frame from blue1 to dst, at Headroom.
	frame := func(dst string, mac packet.MAC, v int) ([]byte, int) {
		buf, n := udpFrame(mac, macBlue1, "10.0.0.10", dst, variants[v].size, variants[v].df)
		if c := variants[v].change; c != nil {
			f := c(append([]byte(nil), buf[Headroom:Headroom+n]...))
			n = copy(buf[Headroom:], f)
		}
		return buf, n
	}
	// warm is a switch whose cache has seen a plain frame to dst.
	warm := func(dst string, mac packet.MAC) (*Switch, *Flows) {
		sw, f := cachedVsGeneral(t), NewFlows()
		var r Result
		buf, n := frame(dst, mac, 0)
		sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
		f.Flush()
		return sw, f
	}
	for _, d := range dsts {
		for v, vv := range variants {
			want := d.known && (vv.kind == leaves || vv.kind == ttl1 && !d.routed || vv.kind == tooBig && d.local)
			probe, pf := warm(d.dst, d.mac)
			p, _ := probe.Ports().Port(0)
			buf, n := frame(d.dst, d.mac, v)
			var r Result
			if took := probe.egressCached(&r, pf, p, buf, Headroom, buf[Headroom:Headroom+n], vv.segLen); took != want {
				t.Errorf("%s, %s: egressCached took it: %v", d.dst, vv.name, took)
			}

			cached, f := warm(d.dst, d.mac)
			gen, _ := warm(d.dst, d.mac)
			bufC, n := frame(d.dst, d.mac, v)
			bufG := append([]byte(nil), bufC...)
			var rc, rg Result
			cached.FromPortFlows(&rc, f, 0, bufC, Headroom, n, vv.segLen, scratch())
			f.Flush()
			gen.FromPortFlows(&rg, nil, 0, bufG, Headroom, n, vv.segLen, scratch())
			dc, dg := rc.Data, rg.Data
			rc.Data, rg.Data = nil, nil
			if !reflect.DeepEqual(rc, rg) || string(dc) != string(dg) || string(bufC) != string(bufG) {
				t.Errorf("%s, %s: cached %+v % x, general %+v % x", d.dst, vv.name, rc, dc, rg, dg)
			}
			pc, vc, rsc := cached.Counters.Snapshot()
			pg, vg, rsg := gen.Counters.Snapshot()
			if fmt.Sprint(pc, vc, rsc) != fmt.Sprint(pg, vg, rsg) {
				t.Errorf("%s, %s: cached counted %v %v %v, general %v %v %v", d.dst, vv.name, pc, vc, rsc, pg, vg, rsg)
			}
		}
	}
}
