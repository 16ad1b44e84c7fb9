package hostagent_test

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

func drops(t *testing.T, ctx context.Context, c *provider.Client, reason string) uint64 {
	t.Helper()
	cs, err := c.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cs.Drops {
		if d.Reason == reason {
			return d.Count
		}
	}
	return 0
}

func TestAgentInstallsByWatchAndFetchesAMissingRecordWithoutLosingTheFirstPacket(t *testing.T) {
	ctx := t.Context()
	tb, p := hostsAB(t, ctx, 2, false)
	h1 := tb.provider("h1")
	recs, err := h1.LookupRecords(ctx, policy.LookupRecordFilter{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("h1 has records %v (%v); want a's and b's from the watch", recs, err)
	}

	// Lose b's record on h1: the next packet waits while the agent fetches
	// it. Twice in a row: the second mismatch comes within the first's
	// dedup window, and must not be held back by it.
	for i := range 2 {
		if _, err := h1.RemoveLookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.11")}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if !p.roundTrip(2 * time.Second) {
			t.Fatalf("loss %d: the first packet to a destination without a record was lost", i+1)
		}
		t.Logf("loss %d: first packet echoed %s after being held for an on-demand fetch", i+1, time.Since(start).Round(time.Millisecond))
	}
	if n := drops(t, ctx, h1, "miss-timeout"); n != 0 {
		t.Errorf("miss-timeout drops = %d, want 0", n)
	}
	if notifications(t, ctx, h1, "policy-mismatch") == 0 {
		t.Error("no policy mismatch was raised for the missing record")
	}
}

func TestFailStaticAndCheckpointRestoreAfterKill9WhileTheServerIsDown(t *testing.T) {
	ctx := t.Context()
	tb, p := hostsAB(t, ctx, 2, false)
	for _, h := range []string{"h1", "h2"} {
		tb.eventually(h+"'s checkpoint holds its policy", 30*time.Second, func() error {
			c, err := tb.provider(h).Counters(ctx)
			if err != nil {
				return err
			}
			if c.Checkpoint == nil || !c.Checkpoint.Current {
				return fmt.Errorf("checkpoint %+v, want current", c.Checkpoint)
			}
			return nil
		})
	}

	tb.kill("policy", syscall.SIGKILL)
	for i := range 20 {
		if !p.roundTrip(time.Second) {
			t.Fatalf("probe %d of 20 lost with the policy server down: the hosts did not fail static", i+1)
		}
	}

	tb.kill("h2", syscall.SIGKILL)
	restart := time.Now()
	tb.startHost("h2", "198.18.0.2/15")
	tb.waitEcho("a reaches b after kill -9 of h2's wnvd, server down", p)
	t.Logf("b reachable %s after h2's wnvd restarted from its checkpoint alone", time.Since(restart).Round(time.Millisecond))

	// The server comes back: a VM created now becomes reachable.
	tb.startServer()
	tb.addVM("c", "h1", 0x0c)
	tb.eventually("create VM c", 20*time.Second, func() error {
		_, err := tb.server.VM(ctx, "a")
		return err
	})
	tb.createVM(ctx, "c", "h1", 0x0c, "10.0.0.12")
	tb.configureVM("c", netip.MustParsePrefix("10.0.0.12/24"))
	tb.echo("c")
	pc := tb.prober("b", netip.MustParseAddr("10.0.0.12"))
	tb.waitEcho("b reaches the new VM c", pc)
}
