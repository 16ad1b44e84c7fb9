package notify

import (
	"net/netip"
	"testing"
)

func caFor(i uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// BenchmarkEventPath measures the whole event path on one core: a policy
// mismatch of a new key -> rate limiter -> handle queue -> encoded into a
// request buffer, as the server fills it.
func BenchmarkEventPath(b *testing.B) {
	h := NewHub(Config{})
	s := h.Subscribe()
	buf := make([]byte, 64*PolicyMismatchSize)
	b.ReportAllocs()
	i := uint32(0)
	for b.Loop() {
		h.PolicyMismatch(5001, caFor(i), pa1)
		i++
		if i%64 == 0 {
			if n, _ := s.Fill(PolicyMismatchType, buf); n != len(buf) {
				b.Fatalf("filled %d bytes, want %d", n, len(buf))
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPolicyMismatchRepeated is the flood case: the same unmatched
// (VSID, CA, PA) on every packet, suppressed by the dedup window.
func BenchmarkPolicyMismatchRepeated(b *testing.B) {
	h := NewHub(Config{})
	h.Subscribe()
	b.ReportAllocs()
	for b.Loop() {
		h.PolicyMismatch(5001, ca1, pa1)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkPolicyMismatchRepeatedParallel floods from every core, each with
// its own few keys, as dataplane workers would.
func BenchmarkPolicyMismatchRepeatedParallel(b *testing.B) {
	h := NewHub(Config{})
	h.Subscribe()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint32(0)
		for pb.Next() {
			h.PolicyMismatch(5001, caFor(i%16), pa1)
			i++
		}
	})
}
