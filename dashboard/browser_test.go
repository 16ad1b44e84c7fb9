package dashboard_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/policyserver"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

// server is a secure policy server on an embedded etcd, and an admin client.
func server(t *testing.T, ctx context.Context) (url string, admin *policyclient.Client, p *pki.ServerPKI) {
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
	p, err = pki.EnsureServerPKI(filepath.Join(dir, "pki"), nil, nil, time.Now())
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
	return srv.URL, admin, p
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
// with an observer token and watches it show the VMs on their hosts, the
// hosts' health as their reports arrive, a trace run from its form, and a
// migration and a drop as they happen.
func TestDashboardInABrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	url, admin, p := server(t, ctx)

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

	// Each host reports its health, with its provider API where the
	// server traces.
	hosts := map[string]*policyclient.Client{}
	eps := map[string]string{}
	for i, h := range []string{"host1", "host2"} {
		pa := netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + i)})
		hosts[h] = hostClient(t, ctx, admin, url, h, pa)
		vm := policyapi.VM{Name: "blue" + string(rune('1'+i)), MACAddress: packet.MAC{0, 0x15, 0x5d, 0, 0, byte(1 + i)},
			CustomerAddresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})}}
		ep := traceHost(t, p.CA, h, pa, vm)
		eps[h] = ep
		report(t, ctx, hosts[h], policyapi.HostStatus{Host: h, Time: time.Now(), Started: time.Now(), Version: "test", FastPath: i == 0, InSync: true, Revision: 3,
			ProviderAddresses: []policyapi.PAStatus{{Address: pa, State: "Preferred"}}, APIEndpoint: ep,
			Ports: []policyapi.PortTraffic{{Port: vm.Name, Traffic: policyapi.Traffic{RxFrames: 10, TxFrames: 10}}}})
	}
	b.WaitFor("host health",
		`#hosts tr[data-host="host1"][data-reporting="yes"][data-fastpath="on"][data-insync="yes"] .pa[data-pa="198.18.0.1"][data-state="Preferred"]`,
		`#hosts tr[data-host="host2"][data-reporting="yes"][data-fastpath="off"] .pa[data-state="Preferred"]`,
		`#traffic tr[data-vm="blue1"][data-host="host1"] .spark`)
	report(t, ctx, hosts["host1"], policyapi.HostStatus{Host: "host1", Time: time.Now(), FastPath: true, InSync: true, Revision: 3, APIEndpoint: eps["host1"],
		ProviderAddresses: []policyapi.PAStatus{{Address: netip.MustParseAddr("198.18.0.1"), State: "Preferred"}},
		Ports:             []policyapi.PortTraffic{{Port: "blue1", Traffic: policyapi.Traffic{RxFrames: 1000, TxFrames: 1000}}}})
	b.WaitFor("blue1's traffic rate", `#traffic tr[data-vm="blue1"] .rate:not([data-rate="0.0"])`)

	// A dry trace from the form names each host's steps.
	b.Do("trace blue1 to blue2", chromedp.SetValue("#trace-from", "blue1"), chromedp.SetValue("#trace-to", "10.0.0.11"))
	b.Submit("#trace-form")
	b.WaitFor("the trace's hops",
		`#trace-result .hop[data-hop="0"][data-host="host1"] tr[data-step="lookup"]`,
		`#trace-result .hop[data-hop="0"] tr[data-step="encapsulate"]`,
		`#trace-result .hop[data-hop="1"][data-host="host2"] tr[data-step="deliver"]`)
	if v := b.Text(`#trace-result .hop[data-hop="1"] .verdict`); !strings.Contains(v, "to-port") {
		t.Errorf("arrival verdict reads %q, want delivery to a port", v)
	}
	// A live probe needs an admin: the observer is told so.
	b.Eval(`document.getElementById("trace-live").checked = true`)
	b.Submit("#trace-form")
	b.WaitFor("live trace refused", "#trace-error:not(:empty)")
	if e := b.Text("#trace-error"); !strings.Contains(e, "admin credential") {
		t.Errorf("a live trace as an observer says %q, want that it needs an admin", e)
	}

	must[policyapi.VM](t)(admin.MigrateVM(ctx, "blue1", "host2"))
	b.WaitFor("migration on the dashboard",
		`#topology tr[data-vm="blue1"][data-host="host2"]`,
		`#migrations tr[data-vm="blue1"]`,
		`#events li.migration`)
	if e := b.Text(`#events li.migration`); !strings.Contains(e, "blue1 from host1 to host2") {
		t.Errorf("migration event reads %q", e)
	}

	report(t, ctx, hosts["host2"], policyapi.HostStatus{Host: "host2", Time: time.Now(), InSync: true, Revision: 4,
		Drops:   []policyapi.DropCounter{{Reason: "spoofed-source", Count: 1}},
		Sampled: []monitor.Event{{Time: time.Now(), Reason: "spoofed-source", Port: "blue1", Src: "10.0.0.99", Dst: "10.0.0.11", Header: "UDP 40000 > 53"}}})
	b.WaitFor("the drop as it happens", `#drops li.drop[data-reason="spoofed-source"][data-host="host2"]`,
		`#hosts tr[data-host="host2"] .drops:not(:empty)`)
	if e := b.Text(`#drops li.drop`); !strings.Contains(e, "port blue1") || !strings.Contains(e, "10.0.0.99 -> 10.0.0.11") {
		t.Errorf("the drop reads %q", e)
	}

	b.Do("log out", chromedp.Click("#logout"))
	b.WaitFor("login page after logging out", "#login")
}

// hostClient is a policy server client with a host credential of name.
func hostClient(t *testing.T, ctx context.Context, admin *policyclient.Client, url, name string, pa netip.Addr) *policyclient.Client {
	t.Helper()
	ic := must[policyapi.IssuedCredential](t)(admin.IssueCredential(ctx, policyapi.IssueRequest{Role: "host", Name: name, ProviderAddresses: []netip.Addr{pa}}))
	cert, err := tls.X509KeyPair([]byte(ic.Certificate), []byte(ic.Key))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ic.CA))
	c := policyclient.New(url, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func report(t *testing.T, ctx context.Context, c *policyclient.Client, s policyapi.HostStatus) {
	t.Helper()
	if err := c.ReportStatus(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// traceHost serves host name's provider API over mutual TLS, as wnvd host
// --api-listen does, with blue1 and blue2's records and vm's port, and
// returns its address.
func traceHost(t *testing.T, ca *pki.CA, name string, pa netip.Addr, vm policyapi.VM) string {
	t.Helper()
	h := providertest.NewTracer(name)
	st := h.Store()
	ok := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ok(st.AddCustomerRoute(policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-0000000000d1}"), VirtualSubnetID: 5001,
		DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}))
	for i := range 2 {
		ok(st.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}), VirtualSubnetID: 5001,
			MACAddress: packet.MAC{0, 0x15, 0x5d, 0, 0, byte(1 + i)}, ProviderAddress: netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + i)}), Rule: policy.TranslationMethodEncap}))
	}
	ok(st.AddProviderAddress(policy.ProviderAddress{ProviderAddress: pa, PrefixLength: 15, AddressState: policy.AddressPreferred}))
	ok(h.AttachPort(provider.PortSpec{Name: vm.Name, MACAddress: vm.MACAddress, VirtualSubnetID: 5001, CustomerAddresses: vm.CustomerAddresses}))
	return providertest.ServeRemoteAs(t, h, ca, name, pa)
}
