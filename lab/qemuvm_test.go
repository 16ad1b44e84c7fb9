package lab

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/lab/qemu"
)

// TestQEMUGuest runs blue2 as a real QEMU guest in the default lab with its
// policy server: reachable both ways from namespace VMs on other hosts (blue1
// in its subnet, blue3 routed), IPv4 and IPv6, isolated from Red; checked
// TCP transfers to and from it; and QEMU's live migration of it to host3
// under a 1 kHz stream.
func TestQEMUGuest(t *testing.T) {
	needRoot(t)
	if err := qemu.Available(); err != nil {
		t.Skip(err)
	}
	topo, err := Default().WithQEMU("blue2")
	if err != nil {
		t.Fatal(err)
	}
	l := upLab(t, topo)
	ctx := context.Background()
	blue2, _ := l.Topology.VM("blue2")

	t.Run("Status", func(t *testing.T) {
		for _, v := range l.Status(ctx).VMs {
			if v.Name == "blue2" && (!v.QEMU || !v.ResponderAlive || v.QEMUPID == 0 || v.Namespace != "") {
				t.Errorf("status of blue2 = %+v, want a running QEMU VM without a namespace", v)
			}
		}
		if namespaceExists(l.Topology.Namespace("blue2")) {
			t.Error("the QEMU VM blue2 has a namespace")
		}
	})

	t.Run("MatrixBothWays", func(t *testing.T) {
		checks, err := l.Matrix(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if n := PrintMatrix(&out, checks); n > 0 {
			t.Errorf("%d reachability checks failed:\n%s", n, out.String())
		}
		// The cells the guest must be in, both ways and both families.
		for _, c := range []struct{ from, to, kind string }{
			{"blue2", "blue1", "same subnet, across hosts"},
			{"blue1", "blue2", "same subnet, across hosts"},
			{"blue2", "blue3", "routed, across hosts"},
			{"blue3", "blue2", "routed, across hosts"},
		} {
			for _, v6 := range []bool{false, true} {
				i := slices.IndexFunc(checks, func(k Check) bool { return k.From == c.from && k.To == c.to && k.Addr.Is6() == v6 })
				if i < 0 {
					t.Errorf("the matrix has no check %s -> %s (IPv6 %v)", c.from, c.to, v6)
				} else if k := checks[i]; k.Kind != c.kind || k.Got != c.to {
					t.Errorf("%s -> %s (IPv6 %v): %+v, want %s answered by %s", c.from, c.to, v6, k, c.kind, c.to)
				}
			}
		}
		// Red's VM with blue2's CAs answers Red; blue2 never does.
		for _, c := range checks {
			if c.Got == "blue2" && c.From != "blue1" && c.From != "blue3" {
				t.Errorf("%s reached blue2 at %v", c.From, c.Addr)
			}
		}
	})

	t.Run("CheckedTCPBothWays", func(t *testing.T) {
		xs := l.Transfers(ctx, 1<<20)
		var out strings.Builder
		if n := PrintTransfers(&out, xs); n > 0 {
			t.Errorf("%d of %d transfers failed:\n%s", n, len(xs), out.String())
		}
		for _, peer := range []string{"blue1", "blue3"} {
			for _, dir := range [][2]string{{peer, "blue2"}, {"blue2", peer}} {
				n := 0
				for _, x := range xs {
					if x.From == dir[0] && x.To == dir[1] && x.OK() {
						n++
					}
				}
				if n != 2 {
					t.Errorf("%d checked transfers %s -> %s, want IPv4 and IPv6", n, dir[0], dir[1])
				}
			}
		}
	})

	t.Run("LiveMigrationWithQEMU", func(t *testing.T) {
		// State the guest must keep: a file in its RAM-backed /tmp.
		if code, err := l.Exec("blue2", []string{"sh", "-c", "echo kept-$$ >/tmp/state"}, nil, &strings.Builder{}, nil); err != nil || code != 0 {
			t.Fatalf("write state in the guest: exit %d, %v", code, err)
		}
		var before strings.Builder
		l.Exec("blue2", []string{"cat", "/tmp/state"}, nil, &before, nil)
		oldPID := l.pid(qemuName("blue2", "host2"))

		r, err := l.MigrateUnderStream(ctx, StreamMigration{VM: "blue2", To: "host3", Sender: "blue1"})
		if err != nil {
			t.Fatal(err)
		}
		g := r.Guest
		if g == nil {
			t.Fatal("no QEMU figures for the migration of a QEMU VM")
		}
		t.Logf("QEMU migration of blue2 host2 -> host3: QEMU total %v, downtime %v (switchover %v), %d MiB; after the call: paused %v, resumed %v, port up %v; %d sent, %d lost, blackout %v from %v, answered from %s then %s",
			g.Total, g.Downtime, g.Switchover.Round(100*time.Microsecond), g.Transferred>>20, r.Paused.Round(time.Millisecond), r.Resumed.Round(time.Millisecond),
			r.Took.Round(time.Millisecond), r.Sent, r.Lost, r.Blackout.Round(100*time.Microsecond), r.BlackoutStart.Round(time.Millisecond), r.AnsweredBefore, r.AnsweredAfter)
		if r.AnsweredBefore != "host2" {
			t.Errorf("the first answers came from %s, want host2", r.AnsweredBefore)
		}
		for _, p := range r.Problems(0) {
			t.Error(p)
		}

		var after strings.Builder
		if code, err := l.Exec("blue2", []string{"cat", "/tmp/state"}, nil, &after, nil); err != nil || code != 0 || after.String() != before.String() || !strings.HasPrefix(after.String(), "kept-") {
			t.Errorf("the guest's /tmp/state was %q before and is %q after the migration (exit %d, %v): want it kept", before.String(), after.String(), code, err)
		}
		if processAlive(oldPID) {
			t.Errorf("the source QEMU (pid %d) still runs", oldPID)
		}
		if h, err := handleAt(l.Topology.Namespace("host2")); err == nil {
			if _, err := h.LinkByName("blue2"); err == nil {
				t.Error("blue2's TAP is still on host2")
			}
			h.Close()
		}
		if ports, err := l.Client("host2").Ports(ctx); err != nil || len(ports) != 0 {
			t.Errorf("host2 ports after blue2 left: %+v, %v; want none", ports, err)
		}
		if v, _ := l.Topology.VM("blue2"); v.Host != "host3" || !l.guestAlive(v) {
			t.Errorf("after the migration the lab places blue2 on %s (QEMU alive %v), want host3", v.Host, l.guestAlive(v))
		}
		// Both ways from its new host, routed and in its subnet.
		reachable(t, l, "blue2", netip.MustParseAddr("fd00:0:0:1::10"), "blue1", 10*time.Second)
		reachable(t, l, "blue3", blue2.V6, "blue2", 10*time.Second)
	})

	if t.Failed() {
		return // the cleanup logs the daemons and guests before it takes the lab down
	}
	v, _ := l.Topology.VM("blue2")
	pid := l.pid(qemuName(v.Name, v.Host))
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if pid == 0 || processAlive(pid) {
		t.Errorf("QEMU of blue2 (pid %d) after Down: alive %v, want stopped", pid, processAlive(pid))
	}
}
