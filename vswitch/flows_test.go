package vswitch

import (
	"net/netip"
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
	if _, err := st.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: netip.MustParseAddr("10.0.0.11"), VirtualSubnetID: 5001},
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
	if _, err := st.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: netip.MustParseAddr("10.0.0.11"), VirtualSubnetID: 5001},
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
	// still drop the packet.
	buf, n = udpFrame(GatewayMAC, macBlue1, "10.0.0.10", "10.0.1.10", 20, true)
	ip := packet.IPv4(buf[Headroom+packet.EthernetHeaderLen:])
	for ip.TTL() > 1 {
		ip.DecTTL()
	}
	if sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch()); r.Action != Drop || r.Reason != ReasonTTLExceeded {
		t.Fatalf("TTL 1 on a cached route: %v %v, want ttl-exceeded", r.Action, r.Reason)
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
		f.insert(newFlowKey(0, dst.AsSlice()), &decision{dstVSID: policy.VSID(5000 + i)})
	}
	for i, dst := range dsts[flowWays:] {
		if d := f.lookup(newFlowKey(0, dst.AsSlice())); d == nil || d.dstVSID != policy.VSID(5000+flowWays+i) {
			t.Errorf("%s: %v", dst, d)
		}
	}
	last := dsts[len(dsts)-1]
	if f.lookup(newFlowKey(1, last.AsSlice())) != nil {
		t.Error("another port's flow answered")
	}
	if mapped := netip.AddrFrom16(last.As16()); f.lookup(newFlowKey(0, mapped.AsSlice())) != nil {
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
