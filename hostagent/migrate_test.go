package hostagent_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyserver"
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
	time.Sleep(300 * time.Millisecond)
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

// threeHosts starts h2 and h3 with agents, b on h2 (echoing), and a on h1.
// With staticSender, h1 runs without an agent and is provisioned by hand, so
// it learns nothing by watch: only the old host's forwarding and redirect
// can move its traffic.
func threeHosts(t *testing.T, ctx context.Context, staticSender bool) (*testbed, *prober) {
	tb := newTestbed(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		tb.addHost(h)
	}
	tb.addVMNamespace("a")
	tb.addVMNamespace("b")
	if staticSender {
		tb.spawn("h1", "h1", "host", "--name", "h1", "--underlay", "ul0", "--socket", tb.socket("h1"), "--notify-socket", filepath.Join(tb.dir, "h1.notify"))
	} else {
		tb.startHost("h1", "198.18.0.1/15")
	}
	tb.startHost("h2", "198.18.0.2/15")
	tb.startHost("h3", "198.18.0.3/15")
	tb.blueNetwork(ctx)
	if staticSender {
		_, err := tb.server.RegisterHost(ctx, policyserver.Host{Name: "h1", ProviderAddresses: []netip.Addr{pa1}, TTLSeconds: 3600})
		must(t, err)
	}
	tb.waitHosts(ctx, "h1", "h2", "h3")
	tb.createVM(ctx, "a", "h1", 0x0a, "10.0.0.10")
	tb.createVM(ctx, "b", "h2", 0x0b, "10.0.0.11")
	if staticSender {
		h1 := tb.provider("h1")
		tb.eventually("h1 answers", 10*time.Second, func() error {
			_, err := h1.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa1, PrefixLength: 15})
			return err
		})
		_, err := h1.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-000000000001}"),
			VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")})
		must(t, err)
		for _, r := range []struct {
			ca  string
			mac byte
			pa  netip.Addr
		}{{"10.0.0.10", 0x0a, pa1}, {"10.0.0.11", 0x0b, pa2}} {
			_, err := h1.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: netip.MustParseAddr(r.ca), VirtualSubnetID: 5001,
				MACAddress: [6]byte{0x02, 0x15, 0x5d, 0, 0, r.mac}, ProviderAddress: r.pa, Rule: policy.TranslationMethodEncap})
			must(t, err)
		}
		_, err = h1.AttachPort(ctx, provider.PortSpec{Name: "a", Netns: tb.ns("v-a"), IfName: "eth0", MACAddress: [6]byte{0x02, 0x15, 0x5d, 0, 0, 0x0a},
			VirtualSubnetID: 5001, CustomerAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.10")}})
		must(t, err)
	}
	tb.configureVM("a", netip.MustParsePrefix("10.0.0.10/24"))
	tb.configureVM("b", netip.MustParsePrefix("10.0.0.11/24"))
	tb.echo("b")
	p := tb.prober("a", netip.MustParseAddr("10.0.0.11"))
	tb.waitEcho("a reaches b", p)
	return tb, p
}

func recordPA(t *testing.T, ctx context.Context, c *provider.Client, ca string) netip.Addr {
	t.Helper()
	recs, err := c.LookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: netip.MustParseAddr(ca)})
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
	tb, p := threeHosts(t, ctx, false)
	sent, lost, blackout := stream(t, p, 3*time.Second, time.Second, func() {
		if _, err := tb.server.MigrateVM(ctx, "b", "h3"); err != nil {
			t.Error(err)
		}
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
	tb, p := threeHosts(t, ctx, true)
	h1 := tb.provider("h1")
	before := notifications(t, ctx, h1, "redirect")
	sent, lost, blackout := stream(t, p, 3*time.Second, time.Second, func() {
		if _, err := tb.server.MigrateVM(ctx, "b", "h3"); err != nil {
			t.Error(err)
		}
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
