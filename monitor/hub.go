package monitor

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of a subscription's settings; a stream asking beyond them is
// refused.
const (
	// MaxRate bounds Options.Rate, samples a second.
	MaxRate = 10_000
	// DefaultRate is a stream's rate unless it asks for another.
	DefaultRate = 100
	// MaxSample bounds Options.Sample.
	MaxSample = 1_000_000
	// queueLen is a subscription's queue: what a stream's reader may fall
	// behind before it loses samples.
	queueLen = 1024
	// MaxSubscribers bounds the streams of one host.
	MaxSubscribers = 16
)

// Filter selects the samples a subscriber sees. An empty list matches
// anything; a sample must match every list that is not empty.
type Filter struct {
	Ports   []string
	VSIDs   []uint32
	Reasons []uint8
	// Flows asks for flows too (Reasons then apply to drops only).
	Flows bool
}

// Match reports whether f selects s.
func (f *Filter) Match(s *Sample) bool {
	if s.Kind == KindFlow && !f.Flows {
		return false
	}
	if len(f.Ports) > 0 && !slices.Contains(f.Ports, s.Port) && (s.Kind != KindFlow || !slices.Contains(f.Ports, s.Flow.Local)) {
		return false
	}
	if len(f.VSIDs) > 0 && !slices.Contains(f.VSIDs, s.VSID) {
		return false
	}
	return s.Kind == KindFlow || len(f.Reasons) == 0 || slices.Contains(f.Reasons, s.Reason)
}

// Options are a subscriber's filter and bounds.
type Options struct {
	Filter
	// Sample: the subscriber sees 1 in Sample of what it selects (0 and 1:
	// every one), at most Rate a second (1..MaxRate).
	Sample, Rate uint32
}

// SourceConfig is what the sources must sample for the current
// subscribers: the most any of them wants.
type SourceConfig struct {
	Drops, Flows bool   // someone watches drops, flows
	Sample       uint32 // the smallest N of 1 in N
	Rate         uint32 // the highest rate
}

// Hub fans the samples of every source out to the subscribers. Publishing
// never blocks: a subscriber whose queue is full loses the sample, counted.
type Hub struct {
	mu       sync.Mutex // serializes Subscribe, Close and onChange
	subs     atomic.Pointer[[]*Subscription]
	cfg      atomic.Pointer[SourceConfig]
	onChange func(SourceConfig)
	// slow sums what the slow path's sources suppressed.
	slowSampled, slowRateLimited atomic.Uint64
	kernel                       func() Counts
}

// NewHub returns a hub without subscribers. onChange, if not nil, is told
// the sources' configuration whenever a subscriber comes or goes (the
// kernel's monitor follows it); kernel, if not nil, reads what the kernel
// suppressed, for the streams' reports.
func NewHub(onChange func(SourceConfig), kernel func() Counts) *Hub {
	h := &Hub{onChange: onChange, kernel: kernel}
	h.subs.Store(&[]*Subscription{})
	h.cfg.Store(&SourceConfig{})
	return h
}

// Config is the sources' current configuration.
func (h *Hub) Config() SourceConfig { return *h.cfg.Load() }

// Subscription is one subscriber's queue of samples.
type Subscription struct {
	hub  *Hub
	opts Options
	ch   chan Sample
	lost atomic.Uint64
}

// ErrTooMany is returned by Subscribe when MaxSubscribers streams run.
var ErrTooMany = errors.New("too many monitor streams on this host: at most 16 run at once, stop one first")

// Subscribe adds a subscriber; the caller must Close it.
func (h *Hub) Subscribe(o Options) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.subs.Load()
	if len(old) >= MaxSubscribers {
		return nil, ErrTooMany
	}
	s := &Subscription{hub: h, opts: o, ch: make(chan Sample, queueLen)}
	h.setSubs(append(slices.Clip(old), s))
	return s, nil
}

// Close removes the subscriber. Its queue is never closed: a source may
// still be sending to it, and drops the sample when the queue is full.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.subs.Load()
	i := slices.Index(old, s)
	if i < 0 {
		return
	}
	h.setSubs(slices.Delete(slices.Clone(old), i, i+1))
}

// setSubs publishes subs and the configuration they need; h.mu is held.
func (h *Hub) setSubs(subs []*Subscription) {
	c := SourceConfig{}
	for _, s := range subs {
		c.Drops = true
		c.Flows = c.Flows || s.opts.Flows
		n := max(s.opts.Sample, 1)
		if c.Sample == 0 || n < c.Sample {
			c.Sample = n
		}
		c.Rate = max(c.Rate, s.opts.Rate)
	}
	h.subs.Store(&subs)
	h.cfg.Store(&c)
	if h.onChange != nil {
		h.onChange(c)
	}
}

// Publish hands s to every subscriber whose filter selects it.
func (h *Hub) Publish(s *Sample) {
	for _, sub := range *h.subs.Load() {
		if !sub.opts.Match(s) {
			continue
		}
		select {
		case sub.ch <- *s:
		default:
			sub.lost.Add(1)
		}
	}
}

// Source is one publisher's side of the hub (a worker's): its own Limiter,
// with the sources' configuration. It is not safe for concurrent use.
type Source struct {
	hub *Hub
	lim Limiter
}

// Source returns a new source publishing to h.
func (h *Hub) Source() *Source { return &Source{hub: h} }

// Wanted reports whether anyone watches samples of kind k: one atomic
// load, the cost of a drop while nobody does.
func (s *Source) Wanted(k Kind) bool {
	c := s.hub.cfg.Load()
	if k == KindFlow {
		return c.Flows
	}
	return c.Drops
}

// Offer publishes smp (which Wanted said someone watches) if the source's
// sampling and rate admit it, with its weight set to the sampling's N.
func (s *Source) Offer(smp *Sample) {
	c := s.hub.cfg.Load()
	before := s.lim.Counts
	if !s.lim.Admit(smp.Time.UnixNano(), 1, c.Sample, c.Rate) {
		s.hub.slowSampled.Add(s.lim.Counts.Sampled - before.Sampled)
		s.hub.slowRateLimited.Add(s.lim.Counts.RateLimited - before.RateLimited)
		return
	}
	smp.Weight = max(c.Sample, 1)
	s.hub.Publish(smp)
}

// Suppressed are the counts a stream reports: what each stage did not pass
// on since the stream began.
type Suppressed struct {
	Kernel Counts `json:"Kernel"` // the kernel's sampling, rate and ring buffer
	Slow   Counts `json:"Slow"`   // the slow path's sampling and rate
	Stream Counts `json:"Stream"` // this stream's sampling and rate, and its queue
}

func (h *Hub) sourceCounts() (kernel, slow Counts) {
	if h.kernel != nil {
		kernel = h.kernel()
	}
	return kernel, Counts{Sampled: h.slowSampled.Load(), RateLimited: h.slowRateLimited.Load()}
}

// Stream reads a subscription's samples through its own Limiter.
type Stream struct {
	sub                    *Subscription
	lim                    Limiter
	kernel0, slow0, stream Counts
}

// Stream starts reading s; the counts it reports start now.
func (s *Subscription) Stream() *Stream {
	st := &Stream{sub: s}
	st.kernel0, st.slow0 = s.hub.sourceCounts()
	return st
}

// C is the subscription's queue, for a select; pass what it yields to
// Admit.
func (st *Stream) C() <-chan Sample { return st.sub.ch }

// Admit reports whether the stream's sampling and rate pass smp.
func (st *Stream) Admit(smp *Sample) bool {
	o := st.sub.opts
	return st.lim.Admit(smp.Time.UnixNano(), smp.Weight, o.Sample, o.Rate)
}

// Suppressed returns what was suppressed since the stream began.
func (st *Stream) Suppressed() Suppressed {
	k, s := st.sub.hub.sourceCounts()
	own := st.lim.Counts
	own.Lost = st.sub.lost.Load()
	return Suppressed{Kernel: k.Sub(st.kernel0), Slow: s.Sub(st.slow0), Stream: own}
}

// ReportEvery is how often a stream reports its suppressed counts, when
// they changed.
const ReportEvery = time.Second
