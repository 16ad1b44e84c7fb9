package policyclient

import (
	"testing"
	"time"
)

// TestBackoff: pauses grow exponentially from watchRetryMin, never exceed
// watchRetryMax, and jitter spreads each over its upper half.
func TestBackoff(t *testing.T) {
	prevHigh := time.Duration(0)
	for n := range 70 {
		low, high := backoff(n, 0), backoff(n, 0.999999)
		if low < watchRetryMin/2 || high > watchRetryMax || high < low || high < prevHigh {
			t.Fatalf("attempt %d: pause %v..%v (previous up to %v)", n, low, high, prevHigh)
		}
		if high-low < low*99/100 {
			t.Fatalf("attempt %d: jitter %v..%v spans less than half the step", n, low, high)
		}
		prevHigh = high
	}
	if backoff(0, 0) != watchRetryMin/2 || backoff(100, 0.999999) < watchRetryMax*99/100 {
		t.Fatalf("first pause %v, last %v", backoff(0, 0), backoff(100, 0.999999))
	}
}
