package hostagent_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

var (
	pa1 = netip.MustParseAddr("198.18.0.1")
	pa2 = netip.MustParseAddr("198.18.0.2")
	pa3 = netip.MustParseAddr("198.18.0.3")
)

// stream sends 1 kHz probes for d and migrates at after; it returns the
// probes lost and the blackout: the longest gap between two echoes.
func stream(t *testing.T, p *prober, d, after time.Duration, migrate func()) (sent, lost int, blackout time.Duration) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	migrated := false
	base := uint64(1 << 20)
	for seq := base; time.Since(start) < d; seq++ {
		<-tick.C
		p.send(seq)
		sent++
		if !migrated && time.Since(start) >= after {
			migrated = true
			go migrate()
		}
	}
	// The echoes of the last probes are in flight: wait for the last one
	// (or give up on it after a generous while: it may be lost).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		_, done := p.seen[base+uint64(sent)-1]
		p.mu.Unlock()
		if done {
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var times []time.Time
	for seq := base; seq < base+uint64(sent); seq++ {
		if at, ok := p.seen[seq]; ok {
			times = append(times, at)
		} else {
			lost++
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(times); i++ {
		blackout = max(blackout, times[i].Sub(times[i-1]))
	}
	return sent, lost, blackout
}

func recordPA(t *testing.T, ctx context.Context, c *provider.Client, ca string) netip.Addr {
	t.Helper()
	recs, err := c.LookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr(ca)}})
	if err != nil || len(recs) != 1 {
		t.Fatalf("records of %s: %v, %v", ca, recs, err)
	}
	return recs[0].ProviderAddress
}

func notifications(t *testing.T, ctx context.Context, c *provider.Client, typ string) uint64 {
	t.Helper()
	cs, err := c.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range cs.Notifications {
		if n.Type == typ {
			return n.Raised
		}
	}
	return 0
}

func TestLiveMigrationUnderA1kHzProbeStream(t *testing.T) {
	ctx := t.Context()
	tb, p := hostsAB(t, ctx, 3, false)
	sent, lost, blackout := stream(t, p, 3*time.Second, time.Second, func() {
		if _, err := tb.server.MigrateVM(ctx, "b", "h3"); err != nil {
			t.Error(err)
		}
		tb.moveVM("b", "h2", "h3")
	})
	t.Logf("migration of b from h2 to h3 under a 1 kHz stream from a on h1: %d sent, %d lost, blackout %s", sent, lost, blackout.Round(100*time.Microsecond))
	if pa := recordPA(t, ctx, tb.provider("h1"), "10.0.0.11"); pa != pa3 {
		t.Errorf("h1's record of b points at %s after the migration, want %s", pa, pa3)
	}
	if !p.roundTrip(time.Second) {
		t.Error("a does not reach b after the migration")
	}
	ports, err := tb.provider("h2").Ports(ctx)
	if err != nil || len(ports) != 0 {
		t.Errorf("h2 still has ports %v (%v) after b left", ports, err)
	}
}

func TestOldHostForwardsAndRedirectsASenderThatMissedTheMove(t *testing.T) {
	ctx := t.Context()
	tb, p := hostsAB(t, ctx, 3, true)
	h1 := tb.provider("h1")
	before := notifications(t, ctx, h1, "redirect")
	sent, lost, blackout := stream(t, p, 3*time.Second, time.Second, func() {
		if _, err := tb.server.MigrateVM(ctx, "b", "h3"); err != nil {
			t.Error(err)
		}
		tb.moveVM("b", "h2", "h3")
	})
	t.Logf("migration with a sender that only learns by redirect: %d sent, %d lost, blackout %s", sent, lost, blackout.Round(100*time.Microsecond))
	if pa := recordPA(t, ctx, h1, "10.0.0.11"); pa != pa3 {
		t.Errorf("h1's record of b points at %s after the redirect, want %s", pa, pa3)
	}
	if n := notifications(t, ctx, h1, "redirect"); n <= before {
		t.Errorf("h1 raised %d redirect notifications, want at least one", n-before)
	}
	if !p.roundTrip(time.Second) {
		t.Error("a does not reach b after the migration")
	}
}
