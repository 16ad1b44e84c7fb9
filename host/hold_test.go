package host

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wnv/wnv/vswitch"
)

func TestHoldQueueBoundsDestinationsAndFramesPerDestination(t *testing.T) {
	q := newHoldQueue(HoldConfig{PerDestination: 2, Destinations: 2, Timeout: time.Second})
	t0 := time.Unix(1000, 0)
	a := vswitch.Miss{VSID: 5001, CA: netip.MustParseAddr("10.0.0.7")}
	b := vswitch.Miss{VSID: 5001, CA: netip.MustParseAddr("10.0.0.8")}
	c := vswitch.Miss{VSID: 5001, CA: netip.MustParseAddr("10.0.0.9")}
	f := func(port int) heldFrame { return heldFrame{port: port, at: t0} }
	if q.park(a, f(1)) != vswitch.ReasonNone || q.park(a, f(2)) != vswitch.ReasonNone {
		t.Fatal("the first two frames for a destination were refused")
	}
	if q.park(a, f(3)) == vswitch.ReasonNone {
		t.Error("a third frame for a destination with room for two was parked")
	}
	if q.park(b, f(4)) != vswitch.ReasonNone {
		t.Fatal("a second destination was refused")
	}
	if q.park(c, f(5)) == vswitch.ReasonNone {
		t.Error("a third destination was parked with room for two")
	}
	all := q.takeAll()
	if len(all[a]) != 2 || all[a][0].port != 1 || all[a][1].port != 2 || len(all[b]) != 1 || q.len() != 0 {
		t.Fatalf("takeAll = %v (queue left with %d); want a: ports 1, 2 in order, b: port 4, queue empty", all, q.len())
	}
	if q.park(c, f(6)) != vswitch.ReasonNone {
		t.Error("after takeAll the queue refused a new destination")
	}
}

func TestHoldQueueExpiresOldFramesOnly(t *testing.T) {
	q := newHoldQueue(HoldConfig{Timeout: 500 * time.Millisecond})
	t0 := time.Unix(1000, 0)
	a := vswitch.Miss{VSID: 5001, CA: netip.MustParseAddr("10.0.0.7")}
	b := vswitch.Miss{VSID: 5001, CA: netip.MustParseAddr("fd00::7")}
	q.park(a, heldFrame{port: 1, at: t0})
	q.park(a, heldFrame{port: 2, at: t0.Add(300 * time.Millisecond)})
	q.park(b, heldFrame{port: 3, at: t0.Add(100 * time.Millisecond)})
	if n, _ := q.expire(t0.Add(499 * time.Millisecond)); n != 0 {
		t.Fatalf("expire before the timeout removed %d frames", n)
	}
	if n, failed := q.expire(t0.Add(650 * time.Millisecond)); n != 2 || q.len() != 1 || len(failed) != 1 || failed[0] != b {
		t.Fatalf("expire at 650ms removed %d frames, left %d, emptied %v; want 2 removed, 1 left, b's lookup failed", n, q.len(), failed)
	}
	if fs := q.takeAll(); len(fs[a]) != 1 || fs[a][0].port != 2 || len(fs[b]) != 0 {
		t.Fatalf("left %v, want only port 2's frame for a", fs)
	}
	if d := (HoldConfig{}).withDefaults(); d.PerDestination != 8 || d.Destinations != 1024 || d.Timeout != 500*time.Millisecond {
		t.Errorf("defaults = %+v, want 8 per destination, 1024 destinations, 500ms", d)
	}
}

func TestHoldQueueGivesEachPortAShare(t *testing.T) {
	q := newHoldQueue(HoldConfig{Destinations: 8, PortDestinations: 2, Timeout: time.Second})
	t0 := time.Unix(1000, 0)
	miss := func(i int) vswitch.Miss {
		return vswitch.Miss{VSID: 5001, CA: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}
	}
	for i := range 2 {
		if r := q.park(miss(i), heldFrame{port: 1, at: t0}); r != vswitch.ReasonNone {
			t.Fatalf("port 1's destination %d refused: %v", i, r)
		}
	}
	for i := 2; i < 100; i++ {
		if r := q.park(miss(i), heldFrame{port: 1, at: t0}); r != vswitch.ReasonHoldPortShare {
			t.Fatalf("port 1's destination %d beyond its share: %v, want %v", i, r, vswitch.ReasonHoldPortShare)
		}
	}
	// Another frame to a destination port 1 holds already takes no new share.
	if r := q.park(miss(0), heldFrame{port: 1, at: t0}); r != vswitch.ReasonNone {
		t.Errorf("a second frame for port 1's destination: %v", r)
	}
	if r := q.park(miss(200), heldFrame{port: 2, at: t0}); r != vswitch.ReasonNone {
		t.Fatalf("port 2's first destination refused while port 1 floods: %v", r)
	}
	if _, failed := q.expire(t0.Add(2 * time.Second)); len(failed) != 3 {
		t.Fatalf("expiry emptied %v, want the 3 destinations", failed)
	}
	if r := q.park(miss(50), heldFrame{port: 1, at: t0}); r != vswitch.ReasonNone {
		t.Errorf("port 1's share was not given back when its destinations expired: %v", r)
	}
}
