package backoff

import (
	"slices"
	"testing"
	"time"
)

func TestWaitsAreJitteredExponentialCappedAndReset(t *testing.T) {
	draws := []float64{0, 0.5, 0.999, 0, 0.5, 0, 0.25}
	i := 0
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Rand: func() float64 { i++; return draws[i-1] }}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	// [d/2, d) of d = 100ms, 200ms, 400ms, 800ms, 1s, 1s.
	want := []time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 399800 * time.Microsecond, 400 * time.Millisecond, 750 * time.Millisecond, 500 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	b.Reset()
	if d := b.Next(); d != 62500*time.Microsecond {
		t.Fatalf("after a reset the wait is %v, want 62.5ms", d)
	}
}
