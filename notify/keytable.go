package notify

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
)

// keyTable rate-limits policy-mismatch keys (VSID, CA, PA) to one event per
// window. It is a fixed-size, 3-way set-associative table of atomics: no
// locks, no allocation, bounded memory whatever the number of distinct keys.
// A new key takes a free or expired way, else evicts the least recently
// raised one (counted in evictions), so under a flood of distinct keys an
// evicted key may fire again before its window ends; the per-handle queues
// stay bounded regardless. Races between concurrent callers may, rarely, let
// one duplicate through or delay a key by one window: it is a rate limiter,
// not an exact set.
type keyTable struct {
	buckets   []bucket
	mask      uint64
	seed      uint64
	window    int64
	evictions atomic.Uint64
}

const ways = 3

type way struct {
	key  atomic.Uint64 // 0 = empty
	last atomic.Int64  // hub time of the last admitted event
}

// bucket fills one 64-byte cache line.
type bucket struct {
	ways       [ways]way
	suppressed atomic.Uint64
	_          [8]byte
}

func newKeyTable(keys int, window int64, seed uint64) *keyTable {
	n := 1
	for n*ways < keys {
		n <<= 1
	}
	return &keyTable{buckets: make([]bucket, n), mask: uint64(n - 1), seed: seed, window: window}
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// key hashes a mismatch identity; the result is never 0.
func (t *keyTable) key(vsid uint32, ca, pa netip.Addr) uint64 {
	c, p := ca.As16(), pa.As16()
	h := mix(t.seed ^ uint64(vsid) ^ uint64(ca.BitLen())<<32 ^ uint64(pa.BitLen())<<40)
	h = mix(h ^ binary.LittleEndian.Uint64(c[:8]))
	h = mix(h ^ binary.LittleEndian.Uint64(c[8:]))
	h = mix(h ^ binary.LittleEndian.Uint64(p[:8]))
	h = mix(h ^ binary.LittleEndian.Uint64(p[8:]))
	return h | 1
}

// admit reports whether key k may raise an event at time now (nanoseconds,
// always > 0), and records it if so.
func (t *keyTable) admit(k uint64, now int64) bool {
	b := &t.buckets[k&t.mask]
	for i := range b.ways {
		w := &b.ways[i]
		if w.key.Load() != k {
			continue
		}
		last := w.last.Load()
		if now-last < t.window || !w.last.CompareAndSwap(last, now) {
			b.suppressed.Add(1)
			return false
		}
		return true
	}
	victim, oldest, evict := 0, int64(1<<63-1), true
	for i := range b.ways {
		w := &b.ways[i]
		l := w.last.Load()
		if w.key.Load() == 0 || now-l >= t.window {
			victim, evict = i, false
			break
		}
		if l < oldest {
			victim, oldest = i, l
		}
	}
	if evict {
		t.evictions.Add(1)
	}
	w := &b.ways[victim]
	w.last.Store(now)
	w.key.Store(k)
	return true
}

// forget drops key k, so its next event is admitted at once.
func (t *keyTable) forget(k uint64) {
	b := &t.buckets[k&t.mask]
	for i := range b.ways {
		if w := &b.ways[i]; w.key.Load() == k {
			w.key.CompareAndSwap(k, 0)
		}
	}
}

func (t *keyTable) suppressed() uint64 {
	var n uint64
	for i := range t.buckets {
		n += t.buckets[i].suppressed.Load()
	}
	return n
}
