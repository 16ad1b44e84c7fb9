package notify

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wnv/wnv/packet"
)

// fakeClock is a settable clock for the dedup window.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestHub(depth int) (*Hub, *fakeClock) {
	c := &fakeClock{}
	c.ns.Store(1_700_000_000e9)
	return NewHub(Config{QueueDepth: depth, DedupWindow: time.Second, Now: c.Now}), c
}

var (
	ca1 = netip.MustParseAddr("10.0.0.11")
	ca2 = netip.MustParseAddr("10.0.0.12")
	pa1 = netip.MustParseAddr("198.18.0.2")
	pa2 = netip.MustParseAddr("198.18.0.3")
)

func drainMismatches(t *testing.T, s *Subscriber) []PolicyMismatch {
	t.Helper()
	buf := make([]byte, 4096)
	n, _ := s.Fill(PolicyMismatchType, buf)
	v, err := DecodePolicyMismatch(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFanOutEveryHandleSeesEveryEvent(t *testing.T) {
	h, _ := newTestHub(16)
	a, b := h.Subscribe(), h.Subscribe()
	h.PolicyMismatch(5001, ca1, pa1)
	h.Redirect(5001, ca1, pa1, pa2)
	for _, s := range []*Subscriber{a, b} {
		if got := drainMismatches(t, s); len(got) != 1 || got[0] != (PolicyMismatch{5001, ca1, pa1}) {
			t.Fatalf("mismatches = %+v, want one for 5001/%v/%v", got, ca1, pa1)
		}
		buf := make([]byte, RedirectSize)
		n, pending := s.Fill(RedirectType, buf)
		if n != RedirectSize || pending != 0 {
			t.Fatalf("redirect fill = %d bytes, %d pending; want %d, 0", n, pending, RedirectSize)
		}
	}
	if st := h.Stats(); st.OpenHandles != 2 || st.Types[PolicyMismatchType].Delivered != 2 || st.Types[RedirectType].Raised != 1 {
		t.Fatalf("stats = %+v", st)
	}
	a.Close()
	h.PolicyMismatch(5001, ca2, pa1)
	if got := drainMismatches(t, a); len(got) != 0 {
		t.Fatalf("closed handle got %v", got)
	}
	if got := drainMismatches(t, b); len(got) != 1 {
		t.Fatalf("open handle got %v, want 1 event", got)
	}
	if st := h.Stats(); st.OpenHandles != 1 {
		t.Fatalf("OpenHandles = %d after Close, want 1", st.OpenHandles)
	}
}

func TestRateLimitOnePerKeyPerWindow(t *testing.T) {
	h, clk := newTestHub(16)
	s := h.Subscribe()
	for range 1000 {
		h.PolicyMismatch(5001, ca1, pa1)
	}
	h.PolicyMismatch(5001, ca2, pa1) // another key is not limited
	if got := drainMismatches(t, s); len(got) != 2 {
		t.Fatalf("got %d events in one window, want 2 (one per key): %v", len(got), got)
	}
	clk.Advance(999 * time.Millisecond)
	h.PolicyMismatch(5001, ca1, pa1)
	if got := drainMismatches(t, s); len(got) != 0 {
		t.Fatalf("key fired again inside its window: %v", got)
	}
	clk.Advance(time.Millisecond)
	h.PolicyMismatch(5001, ca1, pa1)
	if got := drainMismatches(t, s); len(got) != 1 {
		t.Fatalf("key did not fire after its window: %v", got)
	}
	st := h.Stats().Types[PolicyMismatchType]
	if st.Raised != 1003 || st.RateLimited != 1000 {
		t.Fatalf("stats = %+v, want Raised 1003, RateLimited 1000", st)
	}
}

// A mismatch after its policy arrived and went again is news: Resolved lets
// it through inside the window, and only that key.
func TestResolvedKeyFiresAgainAtOnce(t *testing.T) {
	h, _ := newTestHub(16)
	s := h.Subscribe()
	h.PolicyMismatch(5001, ca1, netip.Addr{})
	h.PolicyMismatch(5001, ca2, netip.Addr{})
	if got := drainMismatches(t, s); len(got) != 2 {
		t.Fatalf("got %d events, want 2", len(got))
	}
	h.Resolved(5001, ca1, netip.Addr{})
	h.PolicyMismatch(5001, ca1, netip.Addr{})
	h.PolicyMismatch(5001, ca2, netip.Addr{})
	got := drainMismatches(t, s)
	if len(got) != 1 || got[0].CA != ca1 {
		t.Fatalf("after resolving %v: events %v, want one for it alone", ca1, got)
	}
	h.PolicyMismatch(5001, ca1, netip.Addr{})
	if got := drainMismatches(t, s); len(got) != 0 {
		t.Fatalf("a repeat after the new event was not limited: %v", got)
	}
}

func TestMergeIdenticalPendingMismatch(t *testing.T) {
	h, clk := newTestHub(16)
	s := h.Subscribe()
	h.PolicyMismatch(5001, ca1, pa1)
	h.PolicyMismatch(5001, ca2, pa1)
	clk.Advance(2 * time.Second)
	h.PolicyMismatch(5001, ca1, pa1) // admitted again, but still pending: merged
	h.PolicyMismatch(5001, ca1, pa2) // a different PA is a different key
	got := drainMismatches(t, s)
	want := []PolicyMismatch{{5001, ca1, pa1}, {5001, ca2, pa1}, {5001, ca1, pa2}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d = %v, want %v (merge must keep the first position)", i, got[i], want[i])
		}
	}
	if m := h.Stats().Types[PolicyMismatchType].Merged; m != 1 {
		t.Fatalf("Merged = %d, want 1", m)
	}
	// Once delivered, the key is no longer pending and queues again.
	clk.Advance(2 * time.Second)
	h.PolicyMismatch(5001, ca1, pa1)
	if got := drainMismatches(t, s); len(got) != 1 {
		t.Fatalf("delivered key did not queue again: %v", got)
	}
}

func TestOverflowDropsOldestAndCounts(t *testing.T) {
	h, _ := newTestHub(4)
	s := h.Subscribe()
	for i := range 10 {
		h.Redirect(uint32(5000+i), ca1, pa1, pa2)
	}
	buf := make([]byte, 10*RedirectSize)
	n, pending := s.Fill(RedirectType, buf)
	got, err := DecodeRedirect(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || pending != 0 {
		t.Fatalf("got %d events, %d pending; want 4, 0", len(got), pending)
	}
	for i, e := range got {
		if e.VirtualSubnetID != uint32(5006+i) {
			t.Fatalf("event %d has VSID %d, want %d (oldest dropped, order kept)", i, e.VirtualSubnetID, 5006+i)
		}
	}
	if d := s.Dropped(RedirectType); d != 6 {
		t.Fatalf("handle Dropped = %d, want 6", d)
	}
	if d := h.Stats().Types[RedirectType].Dropped; d != 6 {
		t.Fatalf("hub Dropped = %d, want 6", d)
	}
}

func TestShortBufferReturnsWhatFits(t *testing.T) {
	h, _ := newTestHub(16)
	s := h.Subscribe()
	for i := range 5 {
		h.CustomerAddressChange(packet.MAC{0, 0x15, 0x5d, 0, 0, byte(i)}, ca1, 5001, pa1, uint32(CustomerAddressAdded))
	}
	buf := make([]byte, 2*ObjectChangeSize+ObjectChangeSize-1)
	n, pending := s.Fill(ObjectChangeType, buf)
	if n != 2*ObjectChangeSize || pending != 3 {
		t.Fatalf("fill = %d bytes, %d pending; want %d, 3", n, pending, 2*ObjectChangeSize)
	}
	got, err := DecodeObjectChange(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if got[1].CustomerAddress.MACAddress[5] != 1 {
		t.Fatalf("second event is %+v, want the second raised", got[1].CustomerAddress)
	}
}

func TestObjectChangeEventsEncodeBothUnionMembers(t *testing.T) {
	h, _ := newTestHub(16)
	s := h.Subscribe()
	pa6 := netip.MustParseAddr("fd00::198:18:0:2")
	h.ProviderAddressChange(pa6, uint32(DADTentative))
	h.ProviderAddressChange(pa6, uint32(DADPreferred))
	mac := packet.MAC{0x00, 0x15, 0x5d, 1, 2, 3}
	h.CustomerAddressChange(mac, ca1, 5001, pa1, uint32(CustomerAddressDeleted))
	buf := make([]byte, 1024)
	n, _ := s.Fill(ObjectChangeType, buf)
	got, err := DecodeObjectChange(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || *got[0].ProviderAddress != (ProviderAddressChange{pa6, DADTentative}) ||
		*got[1].ProviderAddress != (ProviderAddressChange{pa6, DADPreferred}) ||
		*got[2].CustomerAddress != (CustomerAddressChange{mac, ca1, 5001, pa1, CustomerAddressDeleted}) {
		t.Fatalf("got %+v", got)
	}
}

func TestUnknownPAIsUnspecifiedFamily(t *testing.T) {
	h, _ := newTestHub(16)
	s := h.Subscribe()
	h.PolicyMismatch(5001, ca1, netip.Addr{})
	buf := make([]byte, PolicyMismatchSize)
	if n, _ := s.Fill(PolicyMismatchType, buf); n != PolicyMismatchSize {
		t.Fatalf("filled %d bytes", n)
	}
	if buf[0] != 2 || buf[2] != 0 || buf[3] != 0 {
		t.Fatalf("CAFamily/PAFamily bytes = % x, want 02 00 00 00", buf[0:4])
	}
	got, _ := DecodePolicyMismatch(buf)
	if got[0].PA.IsValid() {
		t.Fatalf("decoded PA = %v, want invalid", got[0].PA)
	}
}

func TestKeyTableIsBoundedAndCountsEvictions(t *testing.T) {
	c := &fakeClock{}
	h := NewHub(Config{QueueDepth: 8, MismatchKeys: 96, Now: c.Now})
	s := h.Subscribe()
	for i := range 10_000 {
		h.PolicyMismatch(5001, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), pa1)
	}
	st := h.Stats()
	if st.KeyEvictions == 0 {
		t.Fatal("10000 fresh keys in a 96-key table evicted nothing")
	}
	if len(h.keys.buckets)*ways > 96 {
		t.Fatalf("table has %d ways, want at most 96", len(h.keys.buckets)*ways)
	}
	if s.Dropped(PolicyMismatchType) != 10_000-8 {
		t.Fatalf("Dropped = %d, want %d", s.Dropped(PolicyMismatchType), 10_000-8)
	}
}

func TestKeySetMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := newKeySet(64)
	ref := map[uint64]bool{}
	var live []uint64
	for range 100_000 {
		if len(live) < 64 && (len(live) == 0 || r.IntN(2) == 0) {
			// Few distinct home slots, to exercise long probe runs and wrap-around.
			k := uint64(r.IntN(40))<<17 | uint64(r.IntN(1<<16)) | 1
			if ref[k] {
				continue
			}
			s.add(k)
			ref[k] = true
			live = append(live, k)
		} else {
			i := r.IntN(len(live))
			k := live[i]
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
			s.del(k)
			delete(ref, k)
		}
		for _, k := range live {
			if !s.has(k) {
				t.Fatalf("key %x lost", k)
			}
		}
	}
}

// A consumer that never reads must not let a flood of unmatched packets grow
// the host's memory.
func TestMemoryBoundedWithSilentConsumer(t *testing.T) {
	clk := &fakeClock{}
	h := NewHub(Config{Now: clk.Now})
	silent := h.Subscribe()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 1_000_000 {
		// 200,000 distinct keys, each repeated five times, over 10 simulated seconds.
		k := uint32(i % 200_000)
		ca := netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)})
		h.PolicyMismatch(5001+k%7, ca, pa1)
		clk.Advance(10 * time.Microsecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap growth after 1e6 mismatches: %d bytes; dropped %d", growth, silent.Dropped(PolicyMismatchType))
	if growth > 4<<20 {
		t.Fatalf("heap grew by %d bytes with a silent consumer, want < 4 MiB", growth)
	}
	if silent.Dropped(PolicyMismatchType) == 0 {
		t.Fatal("a full queue dropped nothing")
	}
	if a := testing.AllocsPerRun(1000, func() { h.PolicyMismatch(5001, ca1, pa1) }); a != 0 {
		t.Fatalf("PolicyMismatch allocates %v times per call", a)
	}
}

func TestEventTextAndJSON(t *testing.T) {
	ev := Event{Type: PolicyMismatchType, PolicyMismatch: &PolicyMismatch{5001, ca1, pa1}}
	if s := ev.String(); s != "policy-mismatch vsid=5001 ca=10.0.0.11 pa=198.18.0.2 families=2/2" {
		t.Fatalf("String() = %q", s)
	}
	j, err := json.Marshal(ev)
	if err != nil || string(j) != `{"Type":"policy-mismatch","VirtualSubnetId":5001,"CAFamily":2,"CA":"10.0.0.11","PAFamily":2,"PA":"198.18.0.2"}` {
		t.Fatalf("JSON = %s, %v", j, err)
	}
	ev = Event{Type: RedirectType, Redirect: &Redirect{5001, ca1, pa1, netip.MustParseAddr("198.18.0.3")}}
	if s := ev.String(); s != "redirect vsid=5001 ca=10.0.0.11 pa=198.18.0.2 newpa=198.18.0.3" {
		t.Fatalf("String() = %q", s)
	}
	j, _ = json.Marshal(ev)
	if string(j) != `{"Type":"redirect","VirtualSubnetId":5001,"CAFamily":2,"CA":"10.0.0.11","PAFamily":2,"PA":"198.18.0.2","NewPAFamily":2,"NewPA":"198.18.0.3"}` {
		t.Fatalf("JSON = %s", j)
	}
	ev = Event{Type: ObjectChangeType, ObjectChange: &ObjectChange{ObjectType: CustomerAddressType,
		CustomerAddress: &CustomerAddressChange{packet.MAC{0, 0x15, 0x5d, 1, 2, 3}, netip.MustParseAddr("fd00::11"), 5001, netip.Addr{}, CustomerAddressAdded}}}
	if s := ev.String(); s != "customer-address added mac=00:15:5d:01:02:03 ca=fd00::11 vsid=5001 pa=-" {
		t.Fatalf("String() = %q", s)
	}
	j, _ = json.Marshal(ev)
	if string(j) != `{"Type":"object-change","ObjectType":"customer-address","MACAddress":"00:15:5d:01:02:03","CAFamily":23,"CA":"fd00::11","VirtualSubnetId":5001,"PAFamily":0,"PA":"","NotificationReason":"added"}` {
		t.Fatalf("JSON = %s", j)
	}
}

// Concurrent raisers and a reader: every admitted event is accounted for
// exactly once (merged, delivered, dropped or still queued).
func TestConcurrentRaisersConserveEvents(t *testing.T) {
	h := NewHub(Config{QueueDepth: 64})
	s := h.Subscribe()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20_000 {
				h.PolicyMismatch(uint32(5000+w), netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i % 50)}), pa1)
			}
		}()
	}
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 16*PolicyMismatchSize)
		for {
			select {
			case <-stop:
				return
			case <-s.Ready(PolicyMismatchType):
				s.Fill(PolicyMismatchType, buf)
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	_, remaining := s.Fill(PolicyMismatchType, nil)
	st := h.Stats().Types[PolicyMismatchType]
	if st.Raised != 80_000 {
		t.Fatalf("Raised = %d, want 80000", st.Raised)
	}
	admitted := st.Raised - st.RateLimited
	if got := st.Merged + st.Delivered + st.Dropped + uint64(remaining); got != admitted {
		t.Fatalf("merged %d + delivered %d + dropped %d + queued %d = %d, want %d admitted",
			st.Merged, st.Delivered, st.Dropped, remaining, got, admitted)
	}
}
