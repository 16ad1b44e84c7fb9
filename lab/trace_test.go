package lab

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
)

// liveTrace is the part of wnvctl trace -o json this test reads.
type liveTrace struct {
	Hops []struct {
		Host  string
		Trace struct {
			Packet *struct {
				Verdict, Reason string
				FastPath        bool
			}
			Installed bool
		}
	}
	Live *struct {
		Mark, Injected, DiedAt, Reason string
		Delivered                      bool
	}
}

func (l *Lab) traceLive(t *testing.T, from, to string, live bool) liveTrace {
	t.Helper()
	args := []string{"-o", "json", "--socket", l.socket("host1"), "trace", "--port", from, "--to", to, "--dest-host", l.socket("host2")}
	if live {
		args = append(args, "--live")
	}
	out, err := exec.Command(l.Wnvctl, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wnvctl trace: %v\n%s", err, out)
	}
	var tr liveTrace
	if err := json.Unmarshal(out, &tr); err != nil || live != (tr.Live != nil) || len(tr.Hops) != 2 {
		t.Fatalf("wnvctl trace --live -o json: %v\n%s", err, out)
	}
	return tr
}

// TestTraceLiveFindsTheRemovedRecord sends a live probe from blue1 (host1)
// to blue2 (host2): delivered while policy is whole, and once host2 loses
// blue1's lookup record, dropped on host2 as policy-mismatch, which the dry
// run of the arrival names too.
func TestTraceLiveFindsTheRemovedRecord(t *testing.T) {
	needRoot(t)
	l := newTestLabPrefix(t, staticDefault(), "wtr")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := l.Up(ctx); err != nil {
		t.Fatalf("Up: %v", err)
	}

	// Real traffic installs the flow's decision in the kernel, which the
	// dry run then reports.
	if _, _, err := l.ProbeUDP(ctx, "blue1", netip.MustParseAddr("10.0.0.11"), netip.Addr{}, 2, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	tr := l.traceLive(t, "blue1", "10.0.0.11", false)
	if fast := os.Getenv("WNV_FAST_PATH") != "off"; tr.Hops[0].Trace.Packet == nil || tr.Hops[0].Trace.Packet.FastPath != fast || tr.Hops[0].Trace.Installed != fast {
		t.Errorf("after traffic, fast path on: %v: the source's trace says %+v", fast, tr.Hops[0].Trace)
	}

	tr = l.traceLive(t, "blue1", "10.0.0.11", true)
	if !tr.Live.Delivered || tr.Live.DiedAt != "" || tr.Live.Injected != "to-underlay" || tr.Hops[1].Trace.Packet.Verdict != "to-port" {
		t.Fatalf("with whole policy: %+v %+v", tr.Hops, *tr.Live)
	}

	if _, err := l.Client("host2").RemoveLookupRecords(ctx, policy.LookupRecordFilter{
		CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.10")}, VirtualSubnetID: []policy.VSID{5001}}); err != nil {
		t.Fatal(err)
	}
	tr = l.traceLive(t, "blue1", "10.0.0.11", true)
	if tr.Live.DiedAt == "" || tr.Live.DiedAt != tr.Hops[1].Host || tr.Live.Reason != "policy-mismatch" || tr.Live.Delivered {
		t.Errorf("after host2 lost blue1's record: live %+v, want died on host2 (%s) of policy-mismatch", *tr.Live, tr.Hops[1].Host)
	}
	if p := tr.Hops[1].Trace.Packet; p == nil || p.Verdict != "drop" || p.Reason != "policy-mismatch" {
		t.Errorf("the dry run of the arrival: %+v, want a policy-mismatch drop", p)
	}
}
