package vswitch

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/wnv/wnv/policy"
)

// Limits keep one VM from taking the slow path's shared resources from the
// others: lookup misses (each raises a policy-mismatch notification and may
// park a frame) and L2Only floods are rate limited per port, and a CA whose
// lookup failed is not looked up again for NegativeTTL. A port learns at
// most LearnedPerPort CAs in an L2Only subnet, each forgotten when not heard
// from for LearnedAge (see learn.go). Zero fields take the defaults.
type Limits struct {
	MissRate, MissBurst   int // lookup misses per second per port, and the burst
	FloodRate, FloodBurst int // floods per second per port (storm control)
	NegativeTTL           time.Duration
	NegativeEntries       int // CAs whose lookup failed remembered at once
	LearnedPerPort        int
	LearnedAge            time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MissRate <= 0 {
		l.MissRate = 200
	}
	if l.MissBurst <= 0 {
		l.MissBurst = 64
	}
	if l.FloodRate <= 0 {
		l.FloodRate = 1000
	}
	if l.FloodBurst <= 0 {
		l.FloodBurst = 200
	}
	if l.NegativeTTL <= 0 {
		l.NegativeTTL = 2 * time.Second
	}
	if l.NegativeEntries <= 0 {
		l.NegativeEntries = 4096
	}
	if l.LearnedPerPort <= 0 {
		l.LearnedPerPort = DefaultLearnedPerPort
	}
	if l.LearnedAge <= 0 {
		l.LearnedAge = DefaultLearnedAge
	}
	return l
}

// The defaults of the learning limits: a VM with a few addresses per family
// fits easily, and a CA is forgotten after the five minutes a Linux bridge
// keeps a MAC.
const (
	DefaultLearnedPerPort = 32
	DefaultLearnedAge     = 5 * time.Minute
)

// Tick gives the switch the time; the limits use the last time given and
// are off until the first Tick. The shell calls it once per batch.
func (s *Switch) Tick(now time.Time) { s.now.Store(now.UnixNano()) }

// rate is a GCRA token bucket in one atomic: tat is the theoretical arrival
// time of the next event, in Unix nanoseconds.
type rate struct{ tat atomic.Int64 }

// allow reports whether an event at now fits a rate of perSec with burst.
func (b *rate) allow(now int64, perSec, burst int) bool {
	interval := int64(time.Second) / int64(perSec)
	for {
		old := b.tat.Load()
		tat := max(old, now)
		if tat-now > interval*int64(burst-1) {
			return false
		}
		if b.tat.CompareAndSwap(old, tat+interval) {
			return true
		}
	}
}

// negativeCache remembers CAs whose lookup failed until an expiry: a fixed
// direct-mapped table of atomics, so a VM asking for ever new CAs costs no
// memory; a new entry overwrites whatever shares its slot (counted).
type negativeCache struct {
	slots     []negativeSlot
	mask      uint64
	evictions atomic.Uint64
}

type negativeSlot struct {
	key   atomic.Uint64 // 0 = empty
	until atomic.Int64
}

func newNegativeCache(entries int) *negativeCache {
	n := 1
	for n < entries {
		n <<= 1
	}
	return &negativeCache{slots: make([]negativeSlot, n), mask: uint64(n - 1)}
}

func negativeKey(vsid policy.VSID, ca netip.Addr) uint64 {
	b := ca.As16()
	h := uint64(vsid)*0x9e3779b97f4a7c15 ^ uint64(ca.BitLen())
	h = (h ^ binary.LittleEndian.Uint64(b[:8])) * 0xbf58476d1ce4e5b9
	h = (h ^ binary.LittleEndian.Uint64(b[8:])) * 0x94d049bb133111eb
	return h>>1 | 1
}

func (c *negativeCache) add(k uint64, until int64) {
	sl := &c.slots[k&c.mask]
	if old := sl.key.Load(); old != 0 && old != k {
		c.evictions.Add(1)
	}
	sl.key.Store(k)
	sl.until.Store(until)
}

func (c *negativeCache) has(k uint64, now int64) bool {
	sl := &c.slots[k&c.mask]
	return sl.key.Load() == k && now < sl.until.Load()
}

// LookupFailed remembers that the lookup of m failed at now (a held frame
// waited for it in vain): for Limits.NegativeTTL, frames to it are dropped
// as lookup-failed without another notification or hold. A record for it
// arriving meanwhile is used at once.
func (s *Switch) LookupFailed(m Miss, now time.Time) {
	s.negative.add(negativeKey(m.VSID, m.CA), now.Add(s.limits.NegativeTTL).UnixNano())
}

// NegativeEvictions is how many remembered failed lookups a newer one
// displaced.
func (s *Switch) NegativeEvictions() uint64 { return s.negative.evictions.Load() }

// onMiss handles a frame of port p to CA ca of vsid that has no lookup
// record: it drops it if the lookup failed lately or p is over its miss
// rate, else raises the mismatch and, when holding, makes r a Hold. It
// reports whether it made the verdict in r. A frame switched again from the
// hold queue (r.again) was counted against the rate when it was parked.
func (s *Switch) onMiss(r *Result, p *PortConfig, vsid policy.VSID, ca netip.Addr) bool {
	if now := s.now.Load(); now != 0 {
		if s.negative.has(negativeKey(vsid, ca), now) {
			*r = s.drop(ReasonLookupFailed)
			return true
		}
		if !r.again && !s.portCounters(p.Index).misses.allow(now, s.limits.MissRate, s.limits.MissBurst) {
			*r = s.drop(ReasonMissRateLimited)
			return true
		}
	}
	s.mismatch(vsid, ca, netip.Addr{})
	held := s.hold.Load()
	if s.tr != nil {
		s.tr.miss(vsid, ca, held)
	}
	if held {
		*r = holdFor(vsid, ca)
		return true
	}
	return false
}

// floodAllowed is storm control: whether port p may flood one more frame.
func (s *Switch) floodAllowed(p *PortConfig) bool {
	now := s.now.Load()
	return now == 0 || s.portCounters(p.Index).floods.allow(now, s.limits.FloodRate, s.limits.FloodBurst)
}

// portCounters are the counters whose rate limits port i's frames are
// held to: in a trace, a copy of the real switch's buckets, so the trace
// sees their state and consumes nothing.
func (s *Switch) portCounters(i int) *PortCounters {
	if s.tr != nil {
		return s.tr.rates(i)
	}
	return s.Counters.Port(i)
}
