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
	if !q.park(a, f(1)) || !q.park(a, f(2)) {
		t.Fatal("the first two frames for a destination were refused")
	}
	if q.park(a, f(3)) {
		t.Error("a third frame for a destination with room for two was parked")
	}
	if !q.park(b, f(4)) {
		t.Fatal("a second destination was refused")
	}
	if q.park(c, f(5)) {
		t.Error("a third destination was parked with room for two")
	}
	all := q.takeAll()
	if len(all[a]) != 2 || all[a][0].port != 1 || all[a][1].port != 2 || len(all[b]) != 1 || q.len() != 0 {
		t.Fatalf("takeAll = %v (queue left with %d); want a: ports 1, 2 in order, b: port 4, queue empty", all, q.len())
	}
	if !q.park(c, f(6)) {
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
	if n := q.expire(t0.Add(499 * time.Millisecond)); n != 0 {
		t.Fatalf("expire before the timeout removed %d frames", n)
	}
	if n := q.expire(t0.Add(650 * time.Millisecond)); n != 2 || q.len() != 1 {
		t.Fatalf("expire at 650ms removed %d frames and left %d; want 2 removed, 1 left", n, q.len())
	}
	if fs := q.takeAll(); len(fs[a]) != 1 || fs[a][0].port != 2 || len(fs[b]) != 0 {
		t.Fatalf("left %v, want only port 2's frame for a", fs)
	}
	if d := (HoldConfig{}).withDefaults(); d.PerDestination != 8 || d.Destinations != 1024 || d.Timeout != 500*time.Millisecond {
		t.Errorf("defaults = %+v, want 8 per destination, 1024 destinations, 500ms", d)
	}
}
