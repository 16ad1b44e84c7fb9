package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/vishvananda/netlink"
	"github.com/wnv/wnv/dashboard/dashboardtest"
	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// reachable probes from one VM to addr until the expected VM answers or
// about timeout passes.
func reachable(t *testing.T, l *Lab, from string, addr netip.Addr, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rep, ok, err := l.ProbeUDP(context.Background(), from, addr, netip.Addr{}, 1, 250*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if ok && rep.Responder == want {
			return
		}
		if time.Now().After(deadline) {
			// Later subtests take the lab down: show the logs now.
			for _, h := range l.Topology.Hosts {
				t.Logf("log of %s:\n%s", h.Name, tail(l.logPath(h.Name), 40))
			}
			t.Logf("log of the policy server:\n%s", tail(l.logPath(serverName), 20))
			t.Fatalf("%s -> %v: answered=%v by %q, want %s within %v", from, addr, ok, rep.Responder, want, timeout)
		}
	}
}

// stream runs a 1 kHz probe stream from one VM to addr for d.
func stream(t *testing.T, l *Lab, from string, addr netip.Addr, d time.Duration) probe.StreamResult {
	t.Helper()
	var r probe.StreamResult
	err := InNamespace(l.Topology.Namespace(from), func() (err error) {
		// A late answer is not a lost one: on a loaded machine the VMs'
		// processes may wait for a CPU long after the network delivered.
		r, err = probe.Stream(context.Background(), netip.AddrPortFrom(addr, probe.Port), probe.StreamOptions{Duration: d, Linger: 2 * time.Second})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPolicyServerLab runs the default lab with its policy server and host
// agents through the scenarios, one after the other on one lab: the
// matrix, a live migration under a 1 kHz stream, the policy server and etcd
// away while VMs talk, and kill -9 of a host's wnvd while the server is away.
func TestPolicyServerLab(t *testing.T) {
	needRoot(t)
	l := upLab(t, Default())
	ctx := context.Background()
	blue1, _ := l.Topology.VM("blue1")
	blue3, _ := l.Topology.VM("blue3")

	t.Run("StatusShowsTheServer", func(t *testing.T) {
		st := l.Status(ctx)
		ps := st.PolicyServer
		if !st.Up || ps == nil || !ps.Alive || ps.Error != "" || ps.VMs != 7 || len(ps.HostsAlive) != 3 {
			t.Fatalf("status = up %v, policy server %+v; want up, the server alive with 7 VMs and 3 live hosts", st.Up, ps)
		}
		for _, v := range st.VMs {
			if v.ServerHost != v.Host {
				t.Errorf("VM %s: the server places it on %q, the lab on %q", v.Name, v.ServerHost, v.Host)
			}
		}
	})

	t.Run("Matrix", func(t *testing.T) { requireMatrix(t, l) })

	t.Run("GreenRewriteOnTheUnderlay", func(t *testing.T) { requireRewrite(t, l, 256<<10) })

	// The dashboard stays open in a browser through the migration below.
	var browser *dashboardtest.Browser
	if dashboardtest.Missing() == "" {
		d, err := l.StartDashboard(ctx, "127.0.0.1:0", "test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		browser = dashboardtest.Open(t, d.URL)
		browser.LogIn(d.Token)
	}
	t.Run("DashboardShowsTheVMsOnTheirHosts", func(t *testing.T) {
		if browser == nil {
			t.Skip(dashboardtest.Missing())
		}
		b := browser.In(t)
		b.WaitFor("dashboard", "#status.live")
		for _, v := range l.Topology.VMs {
			b.WaitFor("the lab's VMs", fmt.Sprintf(`#topology [data-tenant=%q] tr[data-vm=%q][data-host=%q]`, v.Tenant, v.Name, v.Host))
		}
		for _, h := range l.Topology.Hosts {
			b.WaitFor("the lab's hosts", fmt.Sprintf(`#hosts tr[data-host=%q] td.alive`, h.Name))
		}
	})

	t.Run("DashboardShowsHostHealthADropAndATrace", func(t *testing.T) {
		if browser == nil {
			t.Skip(dashboardtest.Missing())
		}
		b := browser.In(t)
		fast := "on"
		if os.Getenv("WNV_FAST_PATH") == "off" {
			fast = "off"
		}
		for _, h := range l.Topology.Hosts {
			b.WaitFor("host health", fmt.Sprintf(`#hosts tr[data-host=%q][data-reporting="yes"][data-insync="yes"][data-fastpath=%q] .pa[data-pa=%q][data-state="Preferred"]`,
				h.Name, fast, h.PA.Addr()))
		}
		// blue1 sends from an address that is not its own: host1 drops it
		// and the dashboard shows the drop.
		h, eth := vmLink(t, l, "blue1")
		defer h.Close()
		spoof := netip.MustParsePrefix("10.0.0.99/24")
		if err := dataplane.AddAddrNoDAD(h, eth, spoof); err != nil {
			t.Fatal(err)
		}
		l.ProbeUDP(ctx, "blue1", netip.MustParseAddr("10.0.0.11"), spoof.Addr(), 3, 300*time.Millisecond)
		h.AddrDel(eth, &netlink.Addr{IPNet: dataplane.IPNet(spoof)})
		b.WaitFor("the spoofed frame's drop", `#drops li.drop[data-reason="spoofed-ca"][data-host="host1"]`)

		b.Do("trace blue1 to blue2", chromedp.SetValue("#trace-from", "blue1"), chromedp.SetValue("#trace-to", "10.0.0.11"))
		b.Submit("#trace-form")
		b.WaitFor("the trace through both hosts",
			`#trace-result .hop[data-hop="0"][data-host="host1"] tr[data-step="lookup"]`,
			`#trace-result .hop[data-hop="0"] tr[data-step="encapsulate"]`,
			`#trace-result .hop[data-hop="1"][data-host="host2"] tr[data-step="deliver"]`)
		if v := b.Text(`#trace-result .hop[data-hop="1"] .verdict`); !strings.Contains(v, "to-port") {
			t.Errorf("the arrival's verdict reads %q, want delivery to blue2's port", v)
		}
	})

	t.Run("LiveMigrationUnderA1kHzStream", func(t *testing.T) {
		r, err := l.MigrateUnderStream(ctx, StreamMigration{VM: "blue2", To: "host3", Sender: "blue1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("blue2 host2 -> host3: port up after %v, %d sent, %d lost, blackout %v, answered from %s then %s, notifications %v",
			r.Took.Round(100*time.Microsecond), r.Sent, r.Lost, r.Blackout.Round(100*time.Microsecond), r.AnsweredBefore, r.AnsweredAfter, r.Notifications)
		if r.AnsweredBefore != "host2" {
			t.Errorf("the first answers came from %s, want host2", r.AnsweredBefore)
		}
		for _, p := range r.Problems(0) {
			t.Error(p)
		}
		if n := r.Notifications["host3"]["ca-added"]; n != 2 {
			t.Errorf("host3 raised %d customer-address-added notifications, want 2 (blue2's CAs)", n)
		}
		recs, err := l.Client("host1").LookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, VirtualSubnetID: []policy.VSID{5001}})
		if err != nil || len(recs) != 1 || recs[0].ProviderAddress != netip.MustParseAddr("198.18.0.3") {
			t.Errorf("host1's record of blue2: %+v, %v; want PA 198.18.0.3", recs, err)
		}
		ports, err := l.Client("host2").Ports(ctx)
		if err != nil || len(ports) != 0 {
			t.Errorf("host2 ports after blue2 left: %+v, %v; want none", ports, err)
		}
		if v, _ := l.Topology.VM("blue2"); v.Host != "host3" {
			t.Errorf("the lab places blue2 on %s after the migration, want host3", v.Host)
		}
	})

	t.Run("DashboardShowsTheMigration", func(t *testing.T) {
		if browser == nil {
			t.Skip(dashboardtest.Missing())
		}
		b := browser.In(t)
		b.WaitFor("the migration", `#topology tr[data-vm="blue2"][data-host="host3"]`, `#migrations tr[data-vm="blue2"]`, `#events li.migration`)
		if e := b.Text(`#events li.migration`); !strings.Contains(e, "blue2 from host2 to host3") {
			t.Errorf("migration event reads %q", e)
		}
		// make screenshot keeps docs/dashboard.png current this way.
		if path := os.Getenv("WNV_DASHBOARD_SCREENSHOT"); path != "" {
			if err := os.WriteFile(path, b.Screenshot(), 0o644); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("GreenMigratesWithItsPAs", func(t *testing.T) { requireRewriteMigration(t, l, "green2", "host2") })

	blue4 := vm("blue4", "Blue", "host2", 5001, "02:00:00:00:50:04", "10.0.0.12", "fd00:0:0:1::12")

	t.Run("L2OnlyLearningAsTheDemoShowsIt", func(t *testing.T) {
		var out strings.Builder
		if failures := l.demoLearning(ctx, &out); len(failures) > 0 {
			t.Fatalf("%v\n%s", failures, out.String())
		}
		t.Log(strings.TrimSpace(out.String()))
		if namespaceExists(l.Topology.Namespace(LearnVM.Name)) {
			t.Errorf("%s's namespace is left after the demo step", LearnVM.Name)
		}
		if _, err := l.Server().VM(ctx, LearnVM.Name); err == nil {
			t.Errorf("VM %s is left at the policy server after the demo step", LearnVM.Name)
		}
	})

	t.Run("ServerAwayWhileVMsTalk", func(t *testing.T) {
		l.StopServer()
		if l.alive(serverName) {
			t.Fatal("the policy server still runs after StopServer")
		}
		// Established traffic goes on: blue1 -> blue3 is routed across hosts.
		r := stream(t, l, "blue1", blue3.V4, time.Second)
		t.Logf("blue1 -> blue3 with the policy server down: %d sent, %d lost, blackout %v", len(r.Echoes), r.Lost(), r.Blackout().Len())
		if r.Lost() > len(r.Echoes)/20 || !slices.Equal(r.Responders(), []string{"blue3"}) {
			gap := r.Blackout()
			t.Errorf("with the policy server down, blue1 -> blue3 lost %d of %d (answered by %v, longest gap %v at %v into the stream), want under 5%% from blue3",
				r.Lost(), len(r.Echoes), r.Responders(), gap.Len(), gap.From.Sub(r.Echoes[0].Sent))
			for _, h := range l.Topology.Hosts {
				if cs, err := l.Client(h.Name).Counters(ctx); err == nil {
					t.Logf("%s: drops %+v, paths %+v", h.Name, cs.Drops, cs.Paths)
				}
			}
		}
		if err := l.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.AddVM(ctx, blue4); err != nil {
			t.Fatal(err)
		}
		reachable(t, l, "blue1", blue4.V4, "blue4", 10*time.Second)
		reachable(t, l, "blue4", blue3.V6, "blue3", 5*time.Second)
		// The agents reopen their watches with a jittered backoff after the
		// server's absence: the next test takes the server away again, so
		// every host must hold blue4's records (not just those one probe
		// fetched on demand) before it does.
		for _, h := range l.Topology.Hosts {
			waitUntil(t, h.Name+" to hold both of blue4's records", func() bool {
				recs, err := l.Client(h.Name).LookupRecords(ctx, policy.LookupRecordFilter{VirtualSubnetID: []policy.VSID{5001}, MACAddress: []packet.MAC{blue4.MAC}})
				return err == nil && len(recs) == 2
			})
		}
	})

	t.Run("KillDashNineWhileServerAway", func(t *testing.T) {
		l.StopServer()
		if err := l.KillHost("host2", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := l.StartHost(ctx, "host2"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// host2 has only its checkpoint: blue4 talks to both other hosts again.
		reachable(t, l, "blue1", blue4.V4, "blue4", 10*time.Second)
		t.Logf("blue4 on host2 answered again %v after wnvd restarted from its checkpoint", time.Since(start).Round(time.Millisecond))
		reachable(t, l, "blue4", blue3.V4, "blue3", 5*time.Second)
		reachable(t, l, "blue4", blue1.V6, "blue1", 5*time.Second)
		if l.alive(serverName) {
			t.Error("the policy server came back during the test")
		}
	})

	t.Run("DownAfterTheServerCrashed", func(t *testing.T) {
		if err := l.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		pid := l.pid(serverName)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := l.Down(); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"underlay", "host1", "host2", "host3"} {
			if p := pidsInNamespace(l.Topology.Namespace(n)); len(p) > 0 {
				t.Errorf("processes left in %s: %v", n, p)
			}
		}
		if left := namespacesWithPrefix(l.Topology.Prefix); len(left) > 0 {
			t.Errorf("namespaces left: %v", left)
		}
		if _, err := os.Stat(l.etcdDir()); !os.IsNotExist(err) {
			t.Errorf("etcd data %s left after Down", l.etcdDir())
		}
	})
}
