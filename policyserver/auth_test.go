package policyserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// secure is a policy server with TLS and authorization on an embedded etcd.
type secure struct {
	t     *testing.T
	url   string
	pki   *pki.ServerPKI
	admin *policyclient.Client
	cli   *clientv3.Client
}

func serveSecure(t *testing.T, cli *clientv3.Client) *secure {
	t.Helper()
	p, err := pki.EnsureServerPKI(filepath.Join(t.TempDir(), "pki"), nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st := NewStore(cli)
	auth, err := NewAuth(ctx, st, p, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NewSecureHandler(st, quiet, auth))
	srv.TLS = p.TLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s := &secure{t: t, url: srv.URL, pki: p, cli: cli}
	cfg, err := pki.CredentialsTLS(p.AdminDir())
	if err != nil {
		t.Fatal(err)
	}
	s.admin = s.client(cfg)
	return s
}

func (s *secure) client(cfg *tls.Config) *policyclient.Client {
	c := policyclient.New(s.url, cfg)
	s.t.Cleanup(c.CloseIdleConnections)
	return c
}

// anonymous trusts the server but presents no certificate.
func (s *secure) anonymous() *policyclient.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.pki.CA.Cert)
	return s.client(&tls.Config{RootCAs: pool})
}

// issue asks the server (as admin) for a credential and returns a client
// presenting it.
func (s *secure) issue(role, name string, pas ...string) (*policyclient.Client, policyapi.Credential) {
	s.t.Helper()
	req := policyapi.IssueRequest{Role: role, Name: name}
	for _, p := range pas {
		req.ProviderAddresses = append(req.ProviderAddresses, netip.MustParseAddr(p))
	}
	ic, err := s.admin.IssueCredential(ctxT(s.t), req)
	if err != nil {
		s.t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(ic.Certificate), []byte(ic.Key))
	if err != nil {
		s.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ic.CA))
	return s.client(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}), ic.Credential
}

var (
	cidBlue = policy.MustParseGUID("{b1000000-0000-0000-0000-000000000001}")
	cidRed  = policy.MustParseGUID("{7ed00000-0000-0000-0000-000000000001}")
)

// provisionTenants creates tenants Blue (rdBlue, 5001) and Red (rdRed,
// 6001), hosts host1..host3 (198.18.0.1..3), blue1 on host1 and red1 on
// host2.
func provisionTenants(t *testing.T, c *policyclient.Client) {
	t.Helper()
	ctx := ctxT(t)
	for _, x := range []struct {
		cid, rd policy.GUID
		name    string
		vsid    policy.VSID
	}{{cidBlue, rdBlue, "Blue", 5001}, {cidRed, rdRed, "Red", 6001}} {
		must(t)(c.CreateTenant(ctx, policyapi.Tenant{CustomerID: x.cid, Name: x.name}))
		must(t)(c.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: x.rd, CustomerID: x.cid, Name: x.name}))
		must(t)(c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: x.vsid, RoutingDomainID: x.rd, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}))
	}
	for i, n := range []string{"host1", "host2", "host3"} {
		must(t)(c.RegisterHost(ctx, policyapi.Host{Name: n, ProviderAddresses: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)})}, TTLSeconds: 30}))
	}
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), CustomerAddresses: []netip.Addr{addr("10.0.0.5")}, VirtualSubnetID: 5001, Host: "host1"}))
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "red1", MACAddress: mac(2), CustomerAddresses: []netip.Addr{addr("10.0.0.5")}, VirtualSubnetID: 6001, Host: "host2"}))
}

// snapshot is what refusals must leave unchanged.
type authSnapshot struct {
	Hosts []policyapi.Host
	VMs   []policyapi.VM
	Ts    []policyapi.Tenant
}

func (s *secure) snapshot() authSnapshot {
	s.t.Helper()
	ctx := ctxT(s.t)
	hs, err := s.admin.Hosts(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := range hs {
		hs[i].Alive = false
	}
	vms, err := s.admin.VMs(ctx, policyapi.VMFilter{})
	if err != nil {
		s.t.Fatal(err)
	}
	ts, err := s.admin.Tenants(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	return authSnapshot{hs, vms, ts}
}

func (s *secure) unchanged(before authSnapshot) {
	s.t.Helper()
	if after := s.snapshot(); !reflect.DeepEqual(before, after) {
		s.t.Fatalf("a refused request changed the state:\nbefore %+v\nafter  %+v", before, after)
	}
}

// refused asserts err is the API's refusal with status (401/403) and one
// line naming what it should.
func refused(t *testing.T, what string, err error, status int, mentions ...string) {
	t.Helper()
	var se *jsonapi.Error
	if !errors.As(err, &se) || se.Status != status {
		t.Errorf("%s: got %v, want HTTP %d", what, err, status)
		return
	}
	if strings.Contains(se.Message, "\n") {
		t.Errorf("%s: the error is not one line: %q", what, se.Message)
	}
	for _, m := range mentions {
		if !strings.Contains(se.Message, m) {
			t.Errorf("%s: %q does not mention %q", what, se.Message, m)
		}
	}
}

// An anonymous client (TLS, no certificate) is refused everything with 401
// and changes nothing; so is one with a certificate of another CA.
func TestAnonymousRefused(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	provisionTenants(t, s.admin)
	before := s.snapshot()
	ctx := ctxT(t)
	for _, c := range []struct {
		name string
		c    *policyclient.Client
		says string
	}{{"anonymous", s.anonymous(), "anonymous"}, {"foreign CA", s.foreign(), "not signed"}} {
		_, err := c.c.VMs(ctx, policyapi.VMFilter{})
		refused(t, c.name+" list VMs", err, http.StatusUnauthorized, c.says)
		_, err = c.c.RegisterHost(ctx, policyapi.Host{Name: "host2", ProviderAddresses: []netip.Addr{addr("198.18.0.66")}})
		refused(t, c.name+" register", err, http.StatusUnauthorized)
		_, err = c.c.MigrateVM(ctx, "red1", "host1")
		refused(t, c.name+" migrate", err, http.StatusUnauthorized)
		for _, err := range c.c.Watch(ctx, 0) {
			refused(t, c.name+" watch", err, http.StatusUnauthorized)
			break
		}
		_, err = c.c.IssueCredential(ctx, policyapi.IssueRequest{Role: "admin", Name: "eve"})
		refused(t, c.name+" issue", err, http.StatusUnauthorized)
	}
	s.unchanged(before)
}

// foreign presents a valid-looking admin certificate of another CA.
func (s *secure) foreign() *policyclient.Client {
	other, _, err := pki.NewCA("other", time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	_, certPEM, keyPEM, err := other.IssueKey(pki.Request{Role: pki.Admin, Name: "mallory"}, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	pool := x509.NewCertPool()
	pool.AddCert(s.pki.CA.Cert)
	return s.client(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
}

// A host acts only for itself with the PAs of its certificate, creates and
// migrates no VM, and reads only the routing domains of its VMs.
func TestHostRole(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	provisionTenants(t, s.admin)
	h1, _ := s.issue("host", "host1", "198.18.0.1")
	ctx := ctxT(t)
	before := s.snapshot()

	_, err := h1.RegisterHost(ctx, policyapi.Host{Name: "host2", ProviderAddresses: []netip.Addr{addr("198.18.0.1")}})
	refused(t, "register another host", err, 403, "host", "host1", "host2")
	_, err = h1.RegisterHost(ctx, policyapi.Host{Name: "host1", ProviderAddresses: []netip.Addr{addr("198.18.0.9")}})
	refused(t, "register with a PA not in the certificate", err, 403, "198.18.0.9")
	_, err = h1.Heartbeat(ctx, "host2")
	refused(t, "heartbeat another host", err, 403, "host2")
	_, err = h1.MigrateVM(ctx, "red1", "host1")
	refused(t, "migrate a VM", err, 403, "migrate VMs")
	_, err = h1.CreateVM(ctx, policyapi.VM{Name: "evil", MACAddress: mac(9), CustomerAddresses: []netip.Addr{addr("10.0.0.9")}, VirtualSubnetID: 6001, Host: "host1"})
	refused(t, "create a VM", err, 403, "create VMs")
	err = h1.DeleteHost(ctx, "host2")
	refused(t, "delete a host", err, 403)
	_, err = h1.Policy(ctx, rdRed)
	refused(t, "policy of a routing domain without its VMs", err, 403, rdRed.String())
	_, err = h1.Lookup(ctx, 6001, addr("10.0.0.5"))
	refused(t, "lookup in a routing domain without its VMs", err, 403)
	_, err = h1.VM(ctx, "red1")
	refused(t, "read a VM of another routing domain (not found for a host)", err, 404, "host1")
	for _, err := range h1.Watch(ctx, 0, rdRed) {
		refused(t, "watch a routing domain without its VMs", err, 403)
		break
	}
	for _, err := range h1.WatchHost(ctx, 0, "host2") {
		refused(t, "watch another host's VMs", err, 403, "host2")
		break
	}
	_, err = h1.RedirectKeys(ctx, "host2")
	refused(t, "another host's redirect keys", err, 403)
	s.unchanged(before)

	// What it may do.
	if _, err := h1.RegisterHost(ctx, policyapi.Host{Name: "host1", ProviderAddresses: []netip.Addr{addr("198.18.0.1")}, TTLSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Heartbeat(ctx, "host1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Policy(ctx, rdBlue); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Lookup(ctx, 5001, addr("10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	vms, err := h1.VMs(ctx, policyapi.VMFilter{})
	if err != nil || len(vms) != 1 || vms[0].Name != "blue1" {
		t.Fatalf("host1 lists %v, %v; want blue1 only", vms, err)
	}
	ts, err := h1.Tenants(ctx)
	if err != nil || len(ts) != 1 || ts[0].CustomerID != cidBlue {
		t.Fatalf("host1 lists tenants %v, %v; want Blue only", ts, err)
	}
	// A gateway of Red placed on host1 makes Red's routing domain its
	// business; a VM of Red that migrated away from it does too.
	must(t)(s.admin.CreateGateway(ctx, policyapi.Gateway{Name: "gw-red", VirtualSubnetID: 6001, MACAddress: mac(7), CustomerAddress: addr("10.0.0.254"), Host: "host1"}))
	if _, err := h1.Policy(ctx, rdRed); err != nil {
		t.Fatalf("host1 with Red's gateway reads Red's policy: %v", err)
	}
	h3, _ := s.issue("host", "host3", "198.18.0.3")
	if _, err := h3.Policy(ctx, rdRed); err == nil {
		t.Fatal("host3 without Red's VMs reads Red's policy")
	}
	must(t)(s.admin.MigrateVM(ctx, "red1", "host3"))
	h2, _ := s.issue("host", "host2", "198.18.0.2")
	if _, err := h2.Policy(ctx, rdRed); err != nil {
		t.Fatalf("host2, which red1 just left, reads Red's policy: %v", err)
	}
	if _, err := h3.Policy(ctx, rdRed); err != nil {
		t.Fatalf("host3, where red1 now is, reads Red's policy: %v", err)
	}
}

// A host's unfiltered watch carries only its routing domains, and learns a
// routing domain when a VM of it is placed on the host.
func TestHostWatchFiltered(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	provisionTenants(t, s.admin)
	h1, _ := s.issue("host", "host1", "198.18.0.1")
	ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
	defer cancel()
	events := make(chan policyapi.Event, 64)
	started := make(chan struct{})
	go func() {
		for ev, err := range h1.Watch(ctx, 0) {
			if err != nil {
				continue
			}
			if ev.Type == policyapi.EventProgress {
				select {
				case <-started:
				default:
					close(started)
				}
				continue
			}
			if ev.Kind == policyapi.KindVM {
				events <- ev
			}
		}
	}()
	<-started
	vm := func(name string, vsid policy.VSID, host string, i int) {
		must(t)(s.admin.CreateVM(ctx, policyapi.VM{Name: name, MACAddress: mac(i), CustomerAddresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}, VirtualSubnetID: vsid, Host: host}))
	}
	vm("red2", 6001, "host3", 20)  // not host1's business
	vm("blue2", 5001, "host2", 21) // its routing domain
	vm("red3", 6001, "host1", 22)  // placed on it: Red becomes its business
	vm("red4", 6001, "host3", 23)
	var got []string
	for len(got) < 3 {
		select {
		case ev := <-events:
			got = append(got, ev.Name)
		case <-ctx.Done():
			t.Fatalf("host1 saw %v, want blue2, red3, red4", got)
		}
	}
	if want := []string{"blue2", "red3", "red4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("host1 saw %v, want %v (never red2)", got, want)
	}
}

// A tenant sees and changes only its own tenant.
func TestTenantRole(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	provisionTenants(t, s.admin)
	blue, cred := s.issue("tenant", "Blue")
	if cred.Name != cidBlue.String() || cred.DisplayName != "Blue" {
		t.Fatalf("tenant credential %+v does not name Blue's CustomerID", cred)
	}
	ctx := ctxT(t)
	before := s.snapshot()
	_, err := blue.VM(ctx, "red1")
	refused(t, "read Red's VM", err, 403, "tenant", cidBlue.String())
	_, err = blue.Policy(ctx, rdRed)
	refused(t, "read Red's policy", err, 403)
	_, err = blue.RoutingDomain(ctx, rdRed)
	refused(t, "read Red's routing domain", err, 403)
	_, err = blue.Tenant(ctx, cidRed)
	refused(t, "read Red", err, 403)
	_, err = blue.CreateVM(ctx, policyapi.VM{Name: "x", MACAddress: mac(9), CustomerAddresses: []netip.Addr{addr("10.0.0.9")}, VirtualSubnetID: 6001, Host: "host1"})
	refused(t, "create a VM in Red's subnet", err, 403, "6001")
	refused(t, "delete Red's VM", blue.DeleteVM(ctx, "red1"), 403)
	_, err = blue.MigrateVM(ctx, "red1", "host1")
	refused(t, "migrate Red's VM", err, 403)
	_, err = blue.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: policy.MustParseGUID("{11111111-0000-0000-0000-0000000000ff}"), CustomerID: cidRed})
	refused(t, "create a routing domain for Red", err, 403)
	_, err = blue.Hosts(ctx)
	refused(t, "list hosts", err, 403, "list hosts")
	_, err = blue.RegisterHost(ctx, policyapi.Host{Name: "host9", ProviderAddresses: []netip.Addr{addr("198.18.0.9")}})
	refused(t, "register a host", err, 403)
	_, err = blue.CreateTenant(ctx, policyapi.Tenant{CustomerID: policy.MustParseGUID("{99999999-0000-0000-0000-000000000001}"), Name: "x"})
	refused(t, "create a tenant", err, 403)
	for _, err := range blue.Watch(ctx, 0, rdRed) {
		refused(t, "watch Red", err, 403)
		break
	}
	s.unchanged(before)

	vms, err := blue.VMs(ctx, policyapi.VMFilter{})
	if err != nil || len(vms) != 1 || vms[0].Name != "blue1" {
		t.Fatalf("Blue lists %v, %v", vms, err)
	}
	rds, err := blue.RoutingDomains(ctx)
	if err != nil || len(rds) != 1 || rds[0].RoutingDomainID != rdBlue {
		t.Fatalf("Blue lists routing domains %v, %v", rds, err)
	}
	if _, err := blue.CreateVM(ctx, policyapi.VM{Name: "blue2", MACAddress: mac(3), CustomerAddresses: []netip.Addr{addr("10.0.0.6")}, VirtualSubnetID: 5001, Host: "host2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := blue.MigrateVM(ctx, "blue1", "host3"); err != nil {
		t.Fatal(err)
	}
	if err := blue.DeleteVM(ctx, "blue2"); err != nil {
		t.Fatal(err)
	}
	if _, err := blue.Policy(ctx, rdBlue); err != nil {
		t.Fatal(err)
	}
	// Its watch without a filter carries only Blue's changes.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got := make(chan string, 16)
	// The changes start once, at the stream's first progress event (a
	// loaded machine may see more of them before blue9 arrives).
	var changes sync.WaitGroup
	started := false
	defer changes.Wait()
	for ev, err := range blue.Watch(wctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == policyapi.EventProgress && ev.Revision > 0 && !started {
			started = true
			changes.Go(func() {
				must(t)(s.admin.CreateVM(ctx, policyapi.VM{Name: "red9", MACAddress: mac(10), CustomerAddresses: []netip.Addr{addr("10.0.0.10")}, VirtualSubnetID: 6001, Host: "host2"}))
				must(t)(s.admin.RegisterHost(ctx, policyapi.Host{Name: "host4", ProviderAddresses: []netip.Addr{addr("198.18.0.4")}}))
				must(t)(s.admin.CreateVM(ctx, policyapi.VM{Name: "blue9", MACAddress: mac(11), CustomerAddresses: []netip.Addr{addr("10.0.0.11")}, VirtualSubnetID: 5001, Host: "host2"}))
			})
			continue
		}
		if ev.Type == policyapi.EventProgress {
			continue
		}
		got <- string(ev.Kind) + " " + ev.Name
		if ev.Name == "blue9" {
			break
		}
	}
	close(got)
	for g := range got {
		if g != "vm blue9" {
			t.Errorf("Blue's watch carried %s", g)
		}
	}
}

// An observer reads everything and writes nothing; redirect keys and
// credentials are not for it.
func TestObserverRole(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	provisionTenants(t, s.admin)
	obs, _ := s.issue("observer", "bob")
	ctx := ctxT(t)
	before := s.snapshot()
	if vms, err := obs.VMs(ctx, policyapi.VMFilter{}); err != nil || len(vms) != 2 {
		t.Fatalf("observer lists %v, %v", vms, err)
	}
	if _, err := obs.Hosts(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Policy(ctx, rdRed); err != nil {
		t.Fatal(err)
	}
	_, err := obs.CreateTenant(ctx, policyapi.Tenant{CustomerID: policy.MustParseGUID("{99999999-0000-0000-0000-000000000001}"), Name: "x"})
	refused(t, "observer creates a tenant", err, 403, "observer", "bob", "create tenants")
	refused(t, "observer deletes a VM", obs.DeleteVM(ctx, "red1"), 403)
	_, err = obs.MigrateVM(ctx, "red1", "host1")
	refused(t, "observer migrates", err, 403)
	_, err = obs.Heartbeat(ctx, "host1")
	refused(t, "observer heartbeats", err, 403)
	_, err = obs.RedirectKeys(ctx, "host1")
	refused(t, "observer reads redirect keys", err, 403)
	_, err = obs.IssueCredential(ctx, policyapi.IssueRequest{Role: "admin", Name: "bob2"})
	refused(t, "observer issues itself an admin credential", err, 403)
	s.unchanged(before)
}

// A revoked credential is refused with 401 at once by the server that
// revoked it, and by another replica on the same etcd as soon as its
// revocation watch delivers; an expired one is refused too.
func TestRevokedAndExpired(t *testing.T) {
	cli := startEtcd(t)
	s := serveSecure(t, cli)
	provisionTenants(t, s.admin)
	obs, cred := s.issue("observer", "bob")
	ctx := ctxT(t)
	if _, err := obs.Hosts(ctx); err != nil {
		t.Fatal(err)
	}
	// A replica with the same CA.
	st := NewStore(cli)
	auth2, err := NewAuth(ctx, st, s.pki, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewUnstartedServer(NewSecureHandler(st, quiet, auth2))
	srv2.TLS = s.pki.TLSConfig()
	srv2.StartTLS()
	defer srv2.Close()

	// A watch open before the revocation ends at its next event; the client
	// reconnects by itself and is refused, which ends its Watch.
	watchEnd := make(chan error, 1)
	opened := make(chan struct{})
	go func() {
		var last error
		for ev, err := range obs.Watch(ctx, 0) {
			if ev.Type == policyapi.EventProgress && last == nil {
				select {
				case <-opened:
				default:
					close(opened)
				}
			}
			if err != nil {
				last = err // a broken stream comes first, then the refusal
			}
		}
		watchEnd <- last
	}()
	<-opened
	revoked, err := s.admin.Revoke(ctx, policyapi.Revocation{Name: "bob"})
	if err != nil || len(revoked) != 1 || revoked[0].Serial != cred.Serial {
		t.Fatalf("revoke bob: %v, %v", revoked, err)
	}
	_, err = obs.Hosts(ctx)
	refused(t, "revoked credential", err, 401, "revoked", cred.Serial)
	must(t)(s.admin.RegisterHost(ctx, policyapi.Host{Name: "host9", ProviderAddresses: []netip.Addr{addr("198.18.0.9")}}))
	refused(t, "revoked credential's open watch", <-watchEnd, 401, "revoked")
	for !auth2.isRevoked(cred.Serial) {
		if ctx.Err() != nil {
			t.Fatal("the replica never learned the revocation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	list, err := s.admin.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, c := range list {
		if c.Serial == cred.Serial {
			seen = c.Revoked
		}
	}
	if !seen {
		t.Errorf("pki list does not show bob revoked: %+v", list)
	}
	// Expired: issued by the same CA, valid for a nanosecond.
	c, certPEM, keyPEM, err := s.pki.CA.IssueKey(pki.Request{Role: pki.Admin, Name: "late", Validity: time.Nanosecond}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(c.NotAfter.Add(time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
	kp, _ := tls.X509KeyPair(certPEM, keyPEM)
	late := s.client(&tls.Config{RootCAs: s.pki.Pool(), Certificates: []tls.Certificate{kp}})
	_, err = late.Hosts(ctx)
	refused(t, "expired credential", err, 401, "expired")
	// Unknown tenants get no credential.
	_, err = s.admin.IssueCredential(ctx, policyapi.IssueRequest{Role: "tenant", Name: "Green"})
	if !errors.Is(err, policy.ErrNotFound) {
		t.Errorf("credential for an unknown tenant: %v", err)
	}
	_, err = s.admin.IssueCredential(ctx, policyapi.IssueRequest{Role: "host", Name: "host9"})
	if !errors.Is(err, policy.ErrInvalid) {
		t.Errorf("host credential without PAs: %v", err)
	}
}

// Both ends of a PA pair derive the same redirect key; only same-family
// pairs get one; a host reads only its own keys; the master secret is
// created once and is in no watch event.
func TestRedirectKeys(t *testing.T) {
	cli := startEtcd(t)
	s := serveSecure(t, cli)
	ctx := ctxT(t)
	must(t)(s.admin.RegisterHost(ctx, policyapi.Host{Name: "host1", ProviderAddresses: []netip.Addr{addr("198.18.0.1"), addr("fd00:198::1")}}))
	must(t)(s.admin.RegisterHost(ctx, policyapi.Host{Name: "host2", ProviderAddresses: []netip.Addr{addr("198.18.0.2")}}))
	must(t)(s.admin.RegisterHost(ctx, policyapi.Host{Name: "host3", ProviderAddresses: []netip.Addr{addr("fd00:198::3")}}))
	h1, _ := s.issue("host", "host1", "198.18.0.1", "fd00:198::1")
	h2, _ := s.issue("host", "host2", "198.18.0.2")
	k1, err := h1.RedirectKeys(ctx, "host1")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := h2.RedirectKeys(ctx, "host2")
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 2 || len(k2) != 1 {
		t.Fatalf("host1 has %d keys (want 2: one per same-family peer PA), host2 %d (want 1)", len(k1), len(k2))
	}
	var k12 []byte
	for _, k := range k1 {
		if k.LocalPA == addr("198.18.0.1") && k.PeerPA == addr("198.18.0.2") {
			k12 = k.Key
		}
		if k.LocalPA.Is4() != k.PeerPA.Is4() {
			t.Errorf("key across families: %v", k)
		}
	}
	if len(k12) != 32 || string(k12) != string(k2[0].Key) || k2[0].LocalPA != addr("198.18.0.2") || k2[0].PeerPA != addr("198.18.0.1") {
		t.Fatalf("host1's key for host2 %x, host2's for host1 %+v: not the same 32 bytes", k12, k2)
	}
	again, err := s.admin.RedirectKeys(ctx, "host2")
	if err != nil || string(again[0].Key) != string(k12) {
		t.Fatalf("the key changed on a second read: %v", err)
	}
	_, err = h2.RedirectKeys(ctx, "host1")
	refused(t, "host2 reads host1's keys", err, 403)
	resp, err := cli.Get(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), "secret") || strings.Contains(string(kv.Key), "pki") {
			t.Errorf("%s is under the watched prefix %s", kv.Key, Prefix)
		}
	}
	a, b := addr("198.18.0.7"), addr("198.18.0.8")
	if string(RedirectKey([]byte("m"), a, b)) != string(RedirectKey([]byte("m"), b, a)) || string(RedirectKey([]byte("m"), a, b)) == string(RedirectKey([]byte("n"), a, b)) {
		t.Error("RedirectKey is not symmetric or ignores the master")
	}
}

// Every route of the handler has an access rule: newHandler panics at
// start-up otherwise.
func TestAccessTableCoversRoutes(t *testing.T) {
	defer func() {
		if r := recover(); r != nil {
			t.Fatal(r)
		}
	}()
	NewHandler(nil, quiet)
}
