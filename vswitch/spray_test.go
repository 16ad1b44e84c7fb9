package vswitch

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// TestSprayOfVSIDsLeavesNoState sends 100,000 packets with random GRE keys
// and VNIs, as any underlay host can, and checks that the switch keeps no
// state per VSID for them, that its heap stays flat, and that a VM's
// traffic from the real peer is still delivered between and after them.
func TestSprayOfVSIDsLeavesNoState(t *testing.T) {
	sw, ev := host1(t)
	valid := encapFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10")
	if r := sw.FromUnderlay(pa2, pa1, valid); r.Action != ToPort {
		t.Fatalf("before the spray: %v %v, want delivery", r.Action, r.Reason)
	}
	entries := sw.Counters.VSIDEntries()
	gre := encapFrom(0, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10")
	vx := append([]byte(nil), gre...)
	packet.PutVXLAN(vx, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const spray = 100_000
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range spray {
		vsid := rng.Uint32N(1 << 24)
		if i%2 == 0 {
			packet.PutNVGRE(gre, vsid, 7)
			sw.FromUnderlay(pa3, pa1, gre)
		} else {
			packet.PutVXLAN(vx, vsid)
			sw.FromVXLAN(pa3, pa1, vx)
		}
		if i%10_000 == 0 {
			if r := sw.FromUnderlay(pa2, pa1, valid); r.Action != ToPort || r.Port != 0 {
				t.Fatalf("during the spray (packet %d): %v %v, want delivery to blue1", i, r.Action, r.Reason)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if r := sw.FromUnderlay(pa2, pa1, valid); r.Action != ToPort || r.Port != 0 {
		t.Fatalf("after the spray: %v %v, want delivery to blue1", r.Action, r.Reason)
	}
	if n := sw.Counters.VSIDEntries(); n > entries+2 {
		t.Errorf("%d VSIDs have counters after the spray, %d before: the spray created state", n, entries)
	}
	_, vsids, _ := sw.Counters.Snapshot()
	if len(vsids) > 3 {
		t.Errorf("the counter snapshot has %d VSIDs, want 5001, 6001 at most and the unknown bucket", len(vsids))
	}
	var unknown uint64
	for _, v := range vsids {
		if v.VSID == UnknownVSID {
			unknown = v.Drops
		}
	}
	// A random key can hit 5001 or 6001 (a local port's VSID): nearly all go to the bucket.
	if unknown < spray-10 {
		t.Errorf("the unknown-VSID bucket counted %d drops, want about %d", unknown, spray)
	}
	if len(ev.events) > 10 {
		t.Errorf("the spray raised %d policy-mismatch events, want none for VSIDs without a local port", len(ev.events))
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
		t.Errorf("the heap grew by %d bytes over the spray, want under 4 MiB", grew)
	}
}

// TestVSIDCountersAreBounded checks that VSID counters stop at
// MaxVSIDCounters entries, the rest going to the unknown bucket, counted.
func TestVSIDCountersAreBounded(t *testing.T) {
	c := newCounters()
	for v := range MaxVSIDCounters + 100 {
		c.VSID(UnknownVSID + 1 + policy.VSID(v)).Drops.Add(1)
	}
	if n := c.VSIDEntries(); n != MaxVSIDCounters {
		t.Errorf("%d entries, want %d", n, MaxVSIDCounters)
	}
	if n := c.VSIDOverflow.Load(); n != 100 {
		t.Errorf("overflow counted %d, want 100", n)
	}
	if n := c.VSID(UnknownVSID).Drops.Load(); n != 100 {
		t.Errorf("the unknown bucket counted %d drops, want 100", n)
	}
}
