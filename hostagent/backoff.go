package hostagent

import "time"

// backoff is a jittered exponential backoff: the n-th wait is drawn from
// [d/2, d) with d = min·2ⁿ capped at max, so that hosts that lost the
// server together do not come back in lockstep. rand is injected (a
// float64 in [0, 1)) so that tests can pin the sequence.
type backoff struct {
	min, max time.Duration
	rand     func() float64
	n        int
}

// next returns the wait before the next attempt and moves on.
func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 32 && b.min<<b.n < b.max {
		d = b.min << b.n
	}
	b.n++
	return d/2 + time.Duration(b.rand()*float64(d/2))
}

// reset starts over after a success.
func (b *backoff) reset() { b.n = 0 }
