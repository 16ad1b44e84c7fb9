package vswitch

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// TestFloodOfMissesLeavesOtherTenantsLookups has blue1 send to 10,000 CAs
// that have no lookup record while red1, another tenant's VM on the same
// host, sends to one: red1's miss is still raised and held, and delivered
// once its record arrives; blue1 gets no more than its burst of events.
func TestFloodOfMissesLeavesOtherTenantsLookups(t *testing.T) {
	sw, ev := host1(t)
	sw.SetHoldMisses(true)
	t0 := time.Unix(1000, 0)
	sw.Tick(t0)
	for i := range 10_000 {
		a := netip.MustParseAddr("fd00:0:0:1::").As16()
		a[13], a[14], a[15] = 1, byte(i>>8), byte(i)
		buf, n := udpFrame(macBlue2, macBlue1, "fd00:0:0:1::10", netip.AddrFrom16(a).String(), 10, true)
		if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Action != Hold && r.Reason != ReasonMissRateLimited {
			t.Fatalf("blue1's frame %d: %v %v, want Hold or %v", i, r.Action, r.Reason, ReasonMissRateLimited)
		}
	}
	blueEvents := len(ev.events)
	if want := sw.limits.MissBurst; blueEvents > want {
		t.Errorf("blue1's flood raised %d policy-mismatch events, want at most its burst of %d", blueEvents, want)
	}
	if n := sw.Counters.Dropped(ReasonMissRateLimited); n < 10_000-uint64(sw.limits.MissBurst) {
		t.Errorf("miss-rate-limited counted %d, want the %d frames over blue1's burst", n, 10_000-sw.limits.MissBurst)
	}

	redCA := netip.MustParseAddr("10.0.0.99")
	buf, n := udpFrame(macRed2, macRed1, "10.0.0.10", redCA.String(), 10, true)
	orig := append([]byte(nil), buf[Headroom:Headroom+n]...)
	r := sw.FromPort(1, buf, Headroom, n, scratch())
	if r.Action != Hold || r.Miss != (Miss{6001, redCA}) {
		t.Fatalf("red1 during blue1's flood: %v %v, want Hold for (6001, %s)", r.Action, r.Reason, redCA)
	}
	if len(ev.events) != blueEvents+1 || ev.events[len(ev.events)-1] != (mismatch{6001, redCA, netip.Addr{}}) {
		t.Fatalf("red1's miss raised %v, want one event for (6001, %s)", ev.events[blueEvents:], redCA)
	}

	st := labStore(t, pa1)
	must(st.AddLookupRecord(policy.LookupRecord{CustomerAddress: redCA, VirtualSubnetID: 6001, MACAddress: packet.MAC{2, 0, 0, 0, 0x60, 0x99},
		ProviderAddress: pa3, Rule: policy.TranslationMethodEncap}))
	sw.SetPolicy(st.Table())
	held := make([]byte, Headroom+len(orig))
	copy(held[Headroom:], orig)
	if r := sw.FromPortHeld(1, held, Headroom, len(orig), scratch()); r.Action != ToUnderlay || r.Dst != pa3 {
		t.Fatalf("red1's held frame once its record arrived: %v %v to %s, want ToUnderlay to %s", r.Action, r.Reason, r.Dst, pa3)
	}
}

// TestMissRateRefills checks that the per-port miss rate is a rate, not a
// quota: time passed in gives a port its lookups back.
func TestMissRateRefills(t *testing.T) {
	sw, ev := host1(t)
	t0 := time.Unix(1000, 0)
	sw.Tick(t0)
	send := func(i int) Result { // 10.0.1.2 on: 10.0.1.1 is the gateway, not a miss
		buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 2)}).String(), 10, true)
		return sw.FromPort(0, buf, Headroom, n, scratch())
	}
	for i := range sw.limits.MissBurst + 1 {
		send(i)
	}
	if r := send(200); r.Reason != ReasonMissRateLimited {
		t.Fatalf("a miss over the burst: %v, want %v", r.Reason, ReasonMissRateLimited)
	}
	sw.Tick(t0.Add(time.Second))
	before := len(ev.events)
	if r := send(201); r.Reason != ReasonNoLookupRecord || len(ev.events) != before+1 {
		t.Errorf("a miss a second later: %v with %d new events, want %v and one event", r.Reason, len(ev.events)-before, ReasonNoLookupRecord)
	}
}

// TestFailedLookupIsCachedBriefly: after LookupFailed, frames to that CA are
// dropped as lookup-failed without an event or a hold until the TTL ends,
// and a record arriving meanwhile is used at once.
func TestFailedLookupIsCachedBriefly(t *testing.T) {
	sw, ev := host1(t)
	sw.SetHoldMisses(true)
	t0 := time.Unix(1000, 0)
	sw.Tick(t0)
	ca := netip.MustParseAddr("10.0.0.77")
	sw.LookupFailed(Miss{5001, ca}, t0)
	send := func() Result {
		buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", ca.String(), 10, true)
		return sw.FromPort(0, buf, Headroom, n, scratch())
	}
	if r := send(); r.Action != Drop || r.Reason != ReasonLookupFailed || len(ev.events) != 0 {
		t.Fatalf("within the TTL: %v %v with %d events, want a lookup-failed drop and no event", r.Action, r.Reason, len(ev.events))
	}
	sw.Tick(t0.Add(sw.limits.NegativeTTL))
	if r := send(); r.Action != Hold || len(ev.events) != 1 {
		t.Fatalf("after the TTL: %v %v with %d events, want Hold and one event", r.Action, r.Reason, len(ev.events))
	}
	sw.Tick(t0)
	sw.LookupFailed(Miss{5001, ca}, t0)
	st := labStore(t, pa1)
	must(st.AddLookupRecord(policy.LookupRecord{CustomerAddress: ca, VirtualSubnetID: 5001, MACAddress: packet.MAC{2, 0, 0, 0, 0x50, 0x77},
		ProviderAddress: pa3, Rule: policy.TranslationMethodEncap}))
	sw.SetPolicy(st.Table())
	if r := send(); r.Action != ToUnderlay || r.Dst != pa3 {
		t.Fatalf("with a record within the TTL: %v %v, want ToUnderlay to %s", r.Action, r.Reason, pa3)
	}
}

// TestStormControlLimitsFloodsPerPort: an L2Only VM broadcasting gets its
// burst of floods, then storm-control drops; another port still floods.
func TestStormControlLimitsFloodsPerPort(t *testing.T) {
	sw, _ := l2Host(t, policy.EncapNVGRE)
	t0 := time.Unix(1000, 0)
	sw.Tick(t0)
	bcast := func(port int, mac packet.MAC, spa string) Result {
		buf, n := arpFrame(packet.Broadcast, mac, packet.ARPRequest, spa, "10.7.0.77", packet.MAC{})
		return sw.FromPort(port, buf, Headroom, n, scratch())
	}
	floods := 0
	for range 5000 {
		if bcast(2, macL2a, "10.7.0.2").Action == Flood {
			floods++
		}
	}
	if floods != sw.limits.FloodBurst {
		t.Errorf("l2a flooded %d of 5000 broadcasts at one instant, want its burst of %d", floods, sw.limits.FloodBurst)
	}
	if n := sw.Counters.Dropped(ReasonStormControl); n != uint64(5000-floods) {
		t.Errorf("storm-control counted %d, want %d", n, 5000-floods)
	}
	if r := bcast(3, macL2b, "10.7.0.3"); r.Action != Flood {
		t.Errorf("l2b's broadcast during l2a's storm: %v %v, want Flood", r.Action, r.Reason)
	}
}
