package monitor

// Limiter samples 1 in N of what it is offered and lets at most Rate a
// second through, with a token bucket that holds one second's worth. It is
// the kernel's monitor_admit (fastpath/bpf/datapath.c) in Go, for the slow
// path's workers and for each stream. Time is passed in; a Limiter is not
// safe for concurrent use: each source has its own, as each CPU does in the
// kernel.
type Limiter struct {
	seen   uint64
	tokens uint64 // billionths of a sample
	last   int64  // of the last refill, Unix nanoseconds; 0: never (full)
	// Counts are what it suppressed.
	Counts Counts
}

// Counts count what a stage of the monitor did not pass on.
type Counts struct {
	// Sampled: passed over by the 1-in-N sampling.
	Sampled uint64 `json:"Sampled"`
	// RateLimited: over the rate.
	RateLimited uint64 `json:"RateLimited"`
	// Lost: a reader did not keep up (the kernel's ring buffer was full,
	// or a stream's queue).
	Lost uint64 `json:"Lost"`
}

// Add returns c + o.
func (c Counts) Add(o Counts) Counts {
	return Counts{c.Sampled + o.Sampled, c.RateLimited + o.RateLimited, c.Lost + o.Lost}
}

// Sub returns c - o, for counts since a start.
func (c Counts) Sub(o Counts) Counts {
	return Counts{c.Sampled - o.Sampled, c.RateLimited - o.RateLimited, c.Lost - o.Lost}
}

const nsPerSec = 1_000_000_000

// Admit reports whether the offer at now (Unix nanoseconds), standing for
// weight drops or flows that an earlier stage sampled 1 in weight, passes:
// 1 in sample (0 and 1 pass every one), at most rate a second (at most
// MaxRate).
func (l *Limiter) Admit(now int64, weight, sample, rate uint32) bool {
	l.seen += uint64(max(weight, 1))
	if l.seen < uint64(sample) {
		l.Counts.Sampled++
		return false
	}
	l.seen = 0
	burst := uint64(rate) * nsPerSec
	if elapsed := now - l.last; l.last == 0 || elapsed < 0 || elapsed >= nsPerSec {
		l.tokens = burst
	} else {
		l.tokens += uint64(elapsed) * uint64(rate)
	}
	l.last = now
	l.tokens = min(l.tokens, burst)
	if l.tokens < nsPerSec {
		l.Counts.RateLimited++
		return false
	}
	l.tokens -= nsPerSec
	return true
}
