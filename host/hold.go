package host

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

// HoldConfig bounds the per-destination queue where frames to a destination
// without a lookup record wait while the host agent fetches it.
type HoldConfig struct {
	PerDestination int // frames kept per destination (default 8)
	Destinations   int // destinations kept at once (default 1024)
	// PortDestinations is one port's share of Destinations (default a
	// quarter), so a VM sending to ever new CAs cannot take all of it.
	PortDestinations int
	Timeout          time.Duration // a frame older than this is dropped as miss-timeout (default 500ms)
}

func (c HoldConfig) withDefaults() HoldConfig {
	if c.PerDestination <= 0 {
		c.PerDestination = 8
	}
	if c.Destinations <= 0 {
		c.Destinations = 1024
	}
	if c.PortDestinations <= 0 {
		c.PortDestinations = max(1, c.Destinations/4)
	}
	if c.Timeout <= 0 {
		c.Timeout = 500 * time.Millisecond
	}
	return c
}

// heldFrame is a copy of a frame a VM sent, at vswitch.Headroom in buf so it
// can be switched again in place.
type heldFrame struct {
	port int
	at   time.Time
	buf  []byte
	n    int
}

// holdQueue is the pure, bounded queue of held frames, by destination. Time
// is passed in; it is not safe for concurrent use.
type holdQueue struct {
	cfg   HoldConfig
	dests map[vswitch.Miss][]heldFrame
	// owner is the port whose frame parked first for a destination, and
	// owned counts each port's destinations; both are as bounded as dests.
	owner map[vswitch.Miss]int
	owned map[int]int
}

func newHoldQueue(cfg HoldConfig) *holdQueue {
	cfg = cfg.withDefaults()
	return &holdQueue{cfg: cfg, dests: make(map[vswitch.Miss][]heldFrame), owner: map[vswitch.Miss]int{}, owned: map[int]int{}}
}

// park queues f for m; it returns why not (the caller drops the frame for
// that reason) when m's queue or the destination table is full, or f's port
// has its share of destinations.
func (q *holdQueue) park(m vswitch.Miss, f heldFrame) vswitch.Reason {
	fs, ok := q.dests[m]
	if !ok {
		if len(q.dests) >= q.cfg.Destinations {
			return vswitch.ReasonHoldOverflow
		}
		if q.owned[f.port] >= q.cfg.PortDestinations {
			return vswitch.ReasonHoldPortShare
		}
		q.owned[f.port]++
		q.owner[m] = f.port
	}
	if len(fs) >= q.cfg.PerDestination {
		return vswitch.ReasonHoldOverflow
	}
	q.dests[m] = append(fs, f)
	return vswitch.ReasonNone
}

// release forgets destination m, whose frames are gone.
func (q *holdQueue) release(m vswitch.Miss) {
	p, ok := q.owner[m]
	delete(q.dests, m)
	delete(q.owner, m)
	if !ok {
		return
	}
	if q.owned[p]--; q.owned[p] <= 0 {
		delete(q.owned, p)
	}
}

// expire removes the frames held longer than the timeout and returns how
// many it removed and the destinations it emptied: their lookup failed.
func (q *holdQueue) expire(now time.Time) (n int, failed []vswitch.Miss) {
	for m, fs := range q.dests {
		keep := fs[:0]
		for _, f := range fs {
			if now.Sub(f.at) < q.cfg.Timeout {
				keep = append(keep, f)
			} else {
				n++
			}
		}
		if len(keep) == 0 {
			q.release(m)
			failed = append(failed, m)
		} else {
			q.dests[m] = keep
		}
	}
	return n, failed
}

// takeAll empties the queue and returns its frames, each destination's in
// the order they were parked.
func (q *holdQueue) takeAll() map[vswitch.Miss][]heldFrame {
	all := q.dests
	q.dests = make(map[vswitch.Miss][]heldFrame)
	clear(q.owner)
	clear(q.owned)
	return all
}

// len is the number of frames held.
func (q *holdQueue) len() int {
	n := 0
	for _, fs := range q.dests {
		n += len(fs)
	}
	return n
}

// holder is the host's shell around holdQueue: workers park frames, and a
// goroutine re-injects them on every policy change and expires old ones.
type holder struct {
	mu   sync.Mutex
	q    *holdQueue
	kick chan struct{}
}

// HoldMisses makes frames to destinations without a lookup record wait in a
// bounded per-destination queue instead of being dropped, while the policy
// mismatch they raised is served (by the host agent, through the provider
// API); they are switched again on every policy change, and dropped as
// miss-timeout after cfg.Timeout. Call it once, before traffic flows; it
// stops holding when ctx ends.
func (h *Host) HoldMisses(ctx context.Context, cfg HoldConfig) {
	hd := &holder{q: newHoldQueue(cfg), kick: make(chan struct{}, 1)}
	h.held.Store(hd)
	h.store.Subscribe(func(*policy.Table) {
		select {
		case hd.kick <- struct{}{}:
		default:
		}
	})
	h.sw.SetHoldMisses(true)
	go func() {
		defer h.sw.SetHoldMisses(false)
		tick := time.NewTicker(hd.q.cfg.Timeout / 5)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hd.kick:
				h.reinject(hd)
			case now := <-tick.C:
				hd.mu.Lock()
				n, failed := hd.q.expire(now)
				hd.mu.Unlock()
				for range n {
					h.sw.Counters.Drop(vswitch.ReasonMissTimeout)
				}
				for _, m := range failed {
					h.sw.LookupFailed(m, now)
				}
			}
		}
	}()
}

// park keeps a copy of frame, which the switch held for m.
func (h *Host) park(port int, m vswitch.Miss, frame []byte) {
	hd := h.held.Load()
	if hd == nil {
		h.sw.Counters.Drop(vswitch.ReasonNoLookupRecord)
		return
	}
	buf := make([]byte, vswitch.Headroom+len(frame))
	copy(buf[vswitch.Headroom:], frame)
	hd.mu.Lock()
	reason := hd.q.park(m, heldFrame{port: port, at: time.Now(), buf: buf, n: len(frame)})
	hd.mu.Unlock()
	if reason != vswitch.ReasonNone {
		h.sw.Counters.Drop(reason)
	}
}

// reinject switches every held frame again with the current policy; those
// still without a record go back in the queue with their original time.
func (h *Host) reinject(hd *holder) {
	hd.mu.Lock()
	all := hd.q.takeAll()
	hd.mu.Unlock()
	if len(all) == 0 {
		return
	}
	scratch := make([]byte, scratchSize)
	var out output
	var again []struct {
		m vswitch.Miss
		f heldFrame
	}
	for m, fs := range all {
		for _, f := range fs {
			r := h.sw.FromPortHeld(f.port, f.buf, vswitch.Headroom, f.n, scratch)
			if r.Action == vswitch.Hold {
				again = append(again, struct {
					m vswitch.Miss
					f heldFrame
				}{r.Miss, f})
				continue
			}
			if h.hub != nil {
				h.hub.Resolved(uint32(m.VSID), m.CA, netip.Addr{})
			}
			out.add(r)
			// A reply built in scratch must go out before scratch is reused.
			out.flush(h)
		}
	}
	hd.mu.Lock()
	for _, a := range again {
		if reason := hd.q.park(a.m, a.f); reason != vswitch.ReasonNone {
			h.sw.Counters.Drop(reason)
		}
	}
	hd.mu.Unlock()
}
