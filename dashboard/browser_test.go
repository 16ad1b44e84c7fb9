package dashboard_test

import (
	"context"
	"io"
	stdlog "log"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wnv/wnv/dashboard/dashboardtest"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/policyserver"
)

// server is a secure policy server on an embedded etcd, and an admin client.
func server(t *testing.T, ctx context.Context) (url string, admin *policyclient.Client) {
	t.Helper()
	dir := t.TempDir()
	ecfg := policyserver.EmbedConfig{DataDir: filepath.Join(dir, "etcd"), UnsafeNoFsync: true}
	e, err := policyserver.StartEmbedded(ctx, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := policyserver.Connect([]string{ecfg.Endpoint()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	p, err := pki.EnsureServerPKI(filepath.Join(dir, "pki"), nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := policyserver.NewStore(cli)
	auth, err := policyserver.NewAuth(ctx, st, p, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(policyserver.NewSecureHandler(st, log, auth))
	srv.TLS = p.TLSConfig()
	// Chromium probes and drops connections: not worth a log line each.
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg, err := pki.CredentialsTLS(p.AdminDir())
	if err != nil {
		t.Fatal(err)
	}
	admin = policyclient.New(srv.URL, cfg)
	t.Cleanup(admin.CloseIdleConnections)
	return srv.URL, admin
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestDashboardInABrowser logs in to the dashboard in headless Chromium
// with an observer token and watches it show the VMs on their hosts and a
// migration as it happens.
func TestDashboardInABrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	url, admin := server(t, ctx)

	cid := policy.MustParseGUID("{b1000000-0000-0000-0000-0000000000d1}")
	rd := policy.MustParseGUID("{11111111-2222-3333-4444-0000000000d1}")
	must[policyapi.Tenant](t)(admin.CreateTenant(ctx, policyapi.Tenant{CustomerID: cid, Name: "Blue"}))
	must[policyapi.RoutingDomain](t)(admin.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rd, CustomerID: cid, Name: "blue-net"}))
	must[policyapi.Subnet](t)(admin.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5001, RoutingDomainID: rd,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}))
	// No agent heartbeats here: the hosts live for the longest TTL, however
	// slowly a loaded machine runs the browser.
	for i, h := range []string{"host1", "host2"} {
		must[policyapi.Host](t)(admin.RegisterHost(ctx, policyapi.Host{Name: h, ProviderAddresses: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + i)})}, TTLSeconds: 3600}))
	}
	for i, h := range []string{"host1", "host2"} {
		must[policyapi.VM](t)(admin.CreateVM(ctx, policyapi.VM{Name: "blue" + string(rune('1'+i)), MACAddress: packet.MAC{0, 0x15, 0x5d, 0, 0, byte(1 + i)},
			VirtualSubnetID: 5001, Host: h, CustomerAddresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})}}))
	}
	tok := must[policyapi.IssuedCredential](t)(admin.IssueCredential(ctx, policyapi.IssueRequest{Role: "observer", Name: "browser", Token: true}))

	b := dashboardtest.Open(t, url+"/")
	b.LogIn("wnvt_wrong")
	b.WaitFor("login refused", "#login-error:not(:empty)")
	if e := b.Text("#login-error"); !strings.Contains(e, "token refused") {
		t.Errorf("login with a wrong token says %q, want why it was refused", e)
	}

	b.LogIn(tok.Token)
	b.WaitFor("dashboard after login", "#main", "#status.live",
		`#topology [data-tenant="Blue"] tr[data-vm="blue1"][data-host="host1"]`,
		`#topology tr[data-vm="blue2"][data-host="host2"]`,
		`#hosts tr[data-host="host2"]`)
	if who := b.Text("#whoami"); who != "browser (observer)" {
		t.Errorf("whoami shows %q", who)
	}

	must[policyapi.VM](t)(admin.MigrateVM(ctx, "blue1", "host2"))
	b.WaitFor("migration on the dashboard",
		`#topology tr[data-vm="blue1"][data-host="host2"]`,
		`#migrations tr[data-vm="blue1"]`,
		`#events li.migration`)
	if e := b.Text(`#events li.migration`); !strings.Contains(e, "blue1 from host1 to host2") {
		t.Errorf("migration event reads %q", e)
	}

	b.Do("log out", chromedp.Click("#logout"))
	b.WaitFor("login page after logging out", "#login")
}
