package vswitch

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

func TestMissIsHeldWhenAskedAndPassesOnceTheRecordArrives(t *testing.T) {
	sw, ev := host1(t)
	sw.SetHoldMisses(true)
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.77", 10, true)
	orig := append([]byte(nil), buf[Headroom:Headroom+n]...)
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != Hold || r.Miss != (Miss{5001, netip.MustParseAddr("10.0.0.77")}) || len(ev.events) != 1 {
		t.Fatalf("got %v %v miss %+v, events %d; want Hold for (5001, 10.0.0.77) and one mismatch", r.Action, r.Reason, r.Miss, len(ev.events))
	}
	if sw.Counters.Dropped(ReasonNoLookupRecord) != 0 || sw.Counters.Port(0).Drops.Load() != 0 {
		t.Error("a held frame was counted as a drop")
	}

	s := labStore(t, pa1)
	if _, err := s.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr("10.0.0.77"), VirtualSubnetID: 5001,
		MACAddress: packet.MAC{2, 0, 0, 0, 0x50, 0x77}, ProviderAddress: pa3, Rule: policy.TranslationMethodEncap}); err != nil {
		t.Fatal(err)
	}
	sw.SetPolicy(s.Table())
	held := make([]byte, Headroom+len(orig))
	copy(held[Headroom:], orig)
	r = sw.FromPortHeld(0, held, Headroom, len(orig), scratch())
	if r.Action != ToUnderlay || r.Dst != pa3 {
		t.Fatalf("re-injected frame: %v %v to %s, want ToUnderlay to %s", r.Action, r.Reason, r.Dst, pa3)
	}
	if rx := sw.Counters.Port(0).RxFrames.Load(); rx != 1 {
		t.Errorf("port RxFrames = %d after one frame held and re-injected, want 1", rx)
	}
}

func TestARPMissIsHeld(t *testing.T) {
	sw, _ := host1(t)
	sw.SetHoldMisses(true)
	buf := make([]byte, Headroom+64)
	n := packet.PutEthernet(buf[Headroom:], packet.Broadcast, macBlue1, packet.EtherTypeARP)
	n += packet.PutARP(buf[Headroom+n:], packet.ARPRequest, macBlue1, netip.MustParseAddr("10.0.0.10"), packet.MAC{}, netip.MustParseAddr("10.0.0.99"))
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Action != Hold || r.Miss.CA.String() != "10.0.0.99" {
		t.Fatalf("ARP for an unknown CA: %v %v, want Hold", r.Action, r.Reason)
	}
	// Another routing domain's address is not a miss: no record will come.
	buf2, n2 := udpFrame(macBlue2, macBlue1, "10.0.0.10", "192.0.2.1", 10, true)
	if r := sw.FromPort(0, buf2, Headroom, n2, scratch()); r.Action != Drop {
		t.Fatalf("unroutable destination: %v, want Drop", r.Action)
	}
}

func TestPacketsForAMovedVMAreForwardedWithTheSendersPA(t *testing.T) {
	// host2 after blue2 left for host3: no port, record not yet updated.
	sw := New(Config{UnderlayMTU: 1500})
	sw.SetPolicy(labStore(t, pa2).Table())
	sw.SetPorts(must(NewPortTable(nil)))
	payload := encapFrom(5001, macBlue2, macBlue1, "10.0.0.10", "10.0.0.11")
	if r := sw.FromUnderlay(pa1, pa2, payload); r.Action != Drop {
		t.Fatalf("without a moved entry: %v, want Drop", r.Action)
	}
	sw.SetMoved(NewMovedTable([]Moved{{VSID: 5001, MAC: macBlue2, NewPA: pa3}}))
	r := sw.FromUnderlay(pa1, pa2, payload)
	want := RedirectInfo{VSID: 5001, CA: netip.MustParseAddr("10.0.0.11"), PA: pa2, NewPA: pa3}
	if r.Action != Forward || r.Src != pa1 || r.Dst != pa3 || r.Redirect != want {
		t.Fatalf("got %v %s->%s redirect %+v; want Forward %s->%s redirect %+v", r.Action, r.Src, r.Dst, r.Redirect, pa1, pa3, want)
	}
	// Another VM's MAC, or the VM back with a local port, is not forwarded.
	if r := sw.FromUnderlay(pa1, pa2, encapFrom(5001, macBlue3, macBlue1, "10.0.0.10", "10.0.0.11")); r.Action == Forward {
		t.Error("a packet for another MAC was forwarded")
	}
	sw.SetPorts(must(NewPortTable([]PortConfig{{Index: 0, Name: "blue2", MAC: macBlue2, VSID: 5001, CAs: addrs("10.0.0.11")}})))
	if r := sw.FromUnderlay(pa1, pa2, payload); r.Action == Forward {
		t.Error("a packet for a VM with a local port was forwarded")
	}
	sw.SetMoved(nil)
	if sw.moved.Load() != nil {
		t.Error("SetMoved(nil) left a table")
	}
}
