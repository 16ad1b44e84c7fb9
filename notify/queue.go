package notify

import "sync"

// queue is one handle's bounded FIFO of encoded records of one type. Records
// are stored already encoded, so delivering is a copy. When full, the oldest
// record is dropped and counted: the newest state is the most useful, and any
// drop means the consumer must resync anyway. Mergeable records (policy
// mismatches) carry a key; a record whose key is already pending is merged.
type queue struct {
	mu      sync.Mutex
	size    int    // bytes per record
	buf     []byte // depth*size
	keys    []uint64
	pending keySet // keys of queued mergeable records
	head, n int
	dropped uint64
	ready   chan struct{} // a token after each push, for the waiting request
}

func newQueue(depth, size int, mergeable bool) *queue {
	q := &queue{size: size, buf: make([]byte, depth*size), ready: make(chan struct{}, 1)}
	if mergeable {
		q.keys = make([]uint64, depth)
		q.pending = newKeySet(depth)
	}
	return q
}

func (q *queue) depth() int { return len(q.buf) / q.size }

// push appends rec (with merge key k, 0 = not mergeable) and reports whether
// it was merged into a pending record and whether an old record was dropped.
func (q *queue) push(rec []byte, k uint64) (merged, dropped bool) {
	q.mu.Lock()
	if k != 0 && q.pending.has(k) {
		q.mu.Unlock()
		return true, false
	}
	d := q.depth()
	if q.n == d {
		q.popKey(q.head)
		q.head = (q.head + 1) % d
		q.n--
		q.dropped++
		dropped = true
	}
	i := (q.head + q.n) % d
	copy(q.buf[i*q.size:(i+1)*q.size], rec)
	if q.keys != nil {
		q.keys[i] = k
		if k != 0 {
			q.pending.add(k)
		}
	}
	q.n++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return false, dropped
}

func (q *queue) popKey(i int) {
	if q.keys != nil && q.keys[i] != 0 {
		q.pending.del(q.keys[i])
		q.keys[i] = 0
	}
}

// fill moves as many whole records as fit into dst, oldest first, and returns
// the bytes written, the records moved and how many remain queued.
func (q *queue) fill(dst []byte) (nbytes, nrec int, pending uint32) {
	q.mu.Lock()
	d := q.depth()
	for q.n > 0 && nbytes+q.size <= len(dst) {
		copy(dst[nbytes:], q.buf[q.head*q.size:(q.head+1)*q.size])
		q.popKey(q.head)
		q.head = (q.head + 1) % d
		q.n--
		nbytes += q.size
		nrec++
	}
	pending = uint32(q.n)
	q.mu.Unlock()
	return nbytes, nrec, pending
}

func (q *queue) droppedCount() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// keySet is a fixed-capacity open-addressing set of non-zero uint64 keys
// (linear probing, backward-shift deletion), so merging never allocates.
type keySet struct {
	slots []uint64
	mask  uint64
}

func newKeySet(maxKeys int) keySet {
	n := 2
	for n < 2*maxKeys {
		n <<= 1
	}
	return keySet{slots: make([]uint64, n), mask: uint64(n - 1)}
}

func (s *keySet) home(k uint64) uint64 { return (k >> 17) & s.mask }

func (s *keySet) has(k uint64) bool {
	for i := s.home(k); ; i = (i + 1) & s.mask {
		switch s.slots[i] {
		case k:
			return true
		case 0:
			return false
		}
	}
}

func (s *keySet) add(k uint64) {
	i := s.home(k)
	for s.slots[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.slots[i] = k
}

func (s *keySet) del(k uint64) {
	i := s.home(k)
	for s.slots[i] != k {
		if s.slots[i] == 0 {
			return
		}
		i = (i + 1) & s.mask
	}
	s.slots[i] = 0
	// Shift later members of the probe run back so lookups still find them.
	for j := (i + 1) & s.mask; s.slots[j] != 0; j = (j + 1) & s.mask {
		h := s.home(s.slots[j])
		// Move slots[j] to the hole at i unless its home lies cyclically in (i, j].
		if (j-h)&s.mask >= (j-i)&s.mask {
			s.slots[i], s.slots[j] = s.slots[j], 0
			i = j
		}
	}
}
