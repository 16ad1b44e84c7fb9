package monitor

import (
	"testing"
	"time"
)

const sec = int64(time.Second)

func TestLimiterSampling(t *testing.T) {
	var l Limiter
	passed := 0
	for i := range 30 {
		if l.Admit(int64(i), 1, 3, MaxRate) {
			passed++
		}
	}
	if passed != 10 || l.Counts.Sampled != 20 || l.Counts.RateLimited != 0 {
		t.Errorf("1 in 3 of 30: %d passed, counts %+v; want 10 and 20 sampled out", passed, l.Counts)
	}
	// Events an earlier stage sampled 1 in 3 already pass 1 in 3 here.
	l = Limiter{}
	passed = 0
	for i := range 10 {
		if l.Admit(int64(i), 3, 3, MaxRate) {
			passed++
		}
	}
	if passed != 10 {
		t.Errorf("weight 3 through 1 in 3: %d of 10 passed", passed)
	}
}

func TestLimiterRate(t *testing.T) {
	var l Limiter
	now := 10 * sec
	passed := 0
	for range 50 { // a burst at one instant: one second's worth passes
		if l.Admit(now, 1, 1, 20) {
			passed++
		}
	}
	if passed != 20 || l.Counts.RateLimited != 30 {
		t.Errorf("burst: %d passed, %+v; want 20 and 30 over the rate", passed, l.Counts)
	}
	// A tenth of a second refills two.
	now += sec / 10
	passed = 0
	for range 5 {
		if l.Admit(now, 1, 1, 20) {
			passed++
		}
	}
	if passed != 2 {
		t.Errorf("after 100 ms at 20/s: %d passed, want 2", passed)
	}
	// A second or more refills the whole bucket, and no more.
	now += 5 * sec
	passed = 0
	for range 50 {
		if l.Admit(now, 1, 1, 20) {
			passed++
		}
	}
	if passed != 20 {
		t.Errorf("after 5 s: %d passed, want 20", passed)
	}
}

func sample(kind Kind, port string, vsid uint32, reason uint8) *Sample {
	return &Sample{Time: time.Unix(100, 0), Kind: kind, Path: PathSlow, Port: port, VSID: vsid, Reason: reason}
}

func TestFilter(t *testing.T) {
	f := Filter{Ports: []string{"a"}, VSIDs: []uint32{5001}, Reasons: []uint8{3}}
	for _, c := range []struct {
		s    *Sample
		want bool
	}{
		{sample(KindDrop, "a", 5001, 3), true},
		{sample(KindDrop, "b", 5001, 3), false},
		{sample(KindDrop, "a", 5002, 3), false},
		{sample(KindDrop, "a", 5001, 4), false},
		{sample(KindFlow, "a", 5001, 0), false}, // flows only when asked
	} {
		if got := f.Match(c.s); got != c.want {
			t.Errorf("%+v: match %v, want %v", c.s, got, c.want)
		}
	}
	f.Flows = true
	if !f.Match(sample(KindFlow, "a", 5001, 0)) {
		t.Error("a flow of port a in 5001 not selected with Flows")
	}
	if !(&Filter{}).Match(sample(KindDrop, "", 0, 9)) {
		t.Error("the empty filter does not select everything")
	}
}

// TestHub: the sources' configuration follows the subscribers; a full
// queue loses samples, counted, without blocking the publisher; a closed
// subscription gets nothing more.
func TestHub(t *testing.T) {
	var seen []SourceConfig
	h := NewHub(func(c SourceConfig) { seen = append(seen, c) }, func() Counts { return Counts{Lost: 7} })
	src := h.Source()
	if src.Wanted(KindDrop) {
		t.Fatal("drops wanted without subscribers")
	}
	a, err := h.Subscribe(Options{Sample: 4, Rate: 10})
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Subscribe(Options{Filter: Filter{Flows: true, VSIDs: []uint32{5001}}, Sample: 2, Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	if c := h.Config(); c != (SourceConfig{Drops: true, Flows: true, Sample: 2, Rate: 50}) {
		t.Errorf("config %+v, want the most any subscriber wants", c)
	}
	as, bs := a.Stream(), b.Stream()
	for i := range queueLen + 5 {
		s := sample(KindDrop, "p", 5002, 1)
		s.Time = time.Unix(100, int64(i))
		h.Publish(s) // b does not select VSID 5002
	}
	if got := len(as.C()); got != queueLen {
		t.Errorf("a's queue holds %d, want %d", got, queueLen)
	}
	if len(bs.C()) != 0 {
		t.Errorf("b got samples its filter does not select")
	}
	if s := as.Suppressed(); s.Stream.Lost != 5 || s.Kernel.Lost != 0 {
		t.Errorf("a's suppressed %+v, want 5 lost to its queue and none since its start from the kernel", s)
	}
	// The slow path's source samples 1 in 2 (the smallest N).
	n := 0
	for i := range 10 {
		s := sample(KindDrop, "p", 5001, 1)
		s.Time = time.Unix(200, int64(i))
		src.Offer(s)
	}
	for len(bs.C()) > 0 {
		s := <-bs.C()
		if s.Weight != 2 {
			t.Errorf("weight %d, want the source's 2", s.Weight)
		}
		n++
	}
	if n != 5 || bs.Suppressed().Slow.Sampled != 5 {
		t.Errorf("b got %d of 10 offered at 1 in 2, slow path suppressed %+v", n, bs.Suppressed().Slow)
	}
	a.Close()
	b.Close()
	if last := seen[len(seen)-1]; last.Drops || last.Flows {
		t.Errorf("after the last Close the sources still sample: %+v", last)
	}
	h.Publish(sample(KindDrop, "p", 5001, 1))
	if len(bs.C()) != 0 {
		t.Error("a closed subscription got a sample")
	}
}

func TestSubscriberBound(t *testing.T) {
	h := NewHub(nil, nil)
	for range MaxSubscribers {
		if _, err := h.Subscribe(Options{Rate: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Subscribe(Options{Rate: 1}); err != ErrTooMany {
		t.Errorf("subscriber %d: %v, want ErrTooMany", MaxSubscribers+1, err)
	}
}
