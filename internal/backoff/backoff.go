// Package backoff is the jittered exponential backoff of every retry and
// reconnect loop of the agent and the policy client.
package backoff

import "time"

// Backoff's n-th wait is drawn from [d/2, d) with d = Min·2ⁿ capped at Max,
// so that clients that lost a server together do not come back in
// lockstep. Rand returns a float64 in [0, 1) (math/rand/v2's Float64; tests
// inject their own). The zero value is not usable; a Backoff is not safe for
// concurrent use.
type Backoff struct {
	Min, Max time.Duration
	Rand     func() float64
	n        int
}

// Next returns the wait before the next attempt and moves on.
func (b *Backoff) Next() time.Duration {
	d := b.Max
	if b.n < 32 && b.Min<<b.n < b.Max {
		d = b.Min << b.n
	}
	b.n++
	return d/2 + time.Duration(b.Rand()*float64(d/2))
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }
