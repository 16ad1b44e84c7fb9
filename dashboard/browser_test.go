package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (make deps installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, admin := server(t, ctx)

	cid := policy.MustParseGUID("{b1000000-0000-0000-0000-0000000000d1}")
	rd := policy.MustParseGUID("{11111111-2222-3333-4444-0000000000d1}")
	must[policyapi.Tenant](t)(admin.CreateTenant(ctx, policyapi.Tenant{CustomerID: cid, Name: "Blue"}))
	must[policyapi.RoutingDomain](t)(admin.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rd, CustomerID: cid, Name: "blue-net"}))
	must[policyapi.Subnet](t)(admin.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5001, RoutingDomainID: rd,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}))
	for i, h := range []string{"host1", "host2"} {
		must[policyapi.Host](t)(admin.RegisterHost(ctx, policyapi.Host{Name: h, ProviderAddresses: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + i)})}}))
	}
	for i, h := range []string{"host1", "host2"} {
		must[policyapi.VM](t)(admin.CreateVM(ctx, policyapi.VM{Name: "blue" + string(rune('1'+i)), MACAddress: packet.MAC{0, 0x15, 0x5d, 0, 0, byte(1 + i)},
			VirtualSubnetID: 5001, Host: h, CustomerAddresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})}}))
	}
	tok := must[policyapi.IssuedCredential](t)(admin.IssueCredential(ctx, policyapi.IssueRequest{Role: "observer", Name: "browser", Token: true}))

	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,                               // CI runs as root, where Chromium's sandbox cannot start
		chromedp.Flag("ignore-certificate-errors", true), // the lab CA is not the browser's
		chromedp.UserDataDir(t.TempDir()))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	// Every wait polls the page until a deadline of its own, so that a
	// failure can still show what the page shows.
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	waitFor := func(what string, sels ...string) {
		t.Helper()
		for _, sel := range sels {
			q, _ := json.Marshal(sel)
			js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.offsetParent !== null })()`, q)
			deadline := time.Now().Add(30 * time.Second)
			for {
				ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js))
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if ok {
					break
				}
				if time.Now().After(deadline) {
					page, _ := chromedp.Run(bctx, chromedp.OuterHTML("body"))
					t.Fatalf("%s: %s is not shown after 30s; the page shows:\n%s", what, sel, page)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	run("open the dashboard", chromedp.Navigate(url+"/"))
	waitFor("login page", "#login")
	run("log in with a wrong token", chromedp.SendKeys("#token", "wnvt_wrong"), chromedp.Click(`#login-form button`))
	waitFor("login refused", "#login-error:not(:empty)")
	if e := text("#login-error"); !strings.Contains(e, "token refused") {
		t.Errorf("login with a wrong token says %q, want why it was refused", e)
	}

	if _, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("token").value = ""`)); err != nil {
		t.Fatal(err)
	}
	run("log in", chromedp.SendKeys("#token", tok.Token), chromedp.Click(`#login-form button`))
	waitFor("dashboard after login", "#main", "#status.live",
		`#topology [data-tenant="Blue"] tr[data-vm="blue1"][data-host="host1"]`,
		`#topology tr[data-vm="blue2"][data-host="host2"]`,
		`#hosts tr[data-host="host2"]`)
	if who := text("#whoami"); who != "browser (observer)" {
		t.Errorf("whoami shows %q", who)
	}

	must[policyapi.VM](t)(admin.MigrateVM(ctx, "blue1", "host2"))
	waitFor("migration on the dashboard",
		`#topology tr[data-vm="blue1"][data-host="host2"]`,
		`#migrations tr[data-vm="blue1"]`,
		`#events li.migration`)
	if e := text(`#events li.migration`); !strings.Contains(e, "blue1 from host1 to host2") {
		t.Errorf("migration event reads %q", e)
	}
}
