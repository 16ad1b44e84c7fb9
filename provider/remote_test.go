package provider_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

// remoteEnv is a seeded backend served as a remote host, with its CA.
type remoteEnv struct {
	*env
	ca   *pki.CA
	addr string
}

func newRemoteEnv(t *testing.T) *remoteEnv {
	ca, _, err := pki.NewCA("test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{b: providertest.NewBackend(), ctx: t.Context()}
	e.seed(t)
	return &remoteEnv{env: e, ca: ca, addr: providertest.ServeRemote(t, e.b, ca)}
}

// client returns a remote client with a credential of r issued by ca.
func (e *remoteEnv) client(t *testing.T, ca *pki.CA, r pki.Request) *provider.Client {
	cfg, err := pki.CredentialsTLS(providertest.Credentials(t, ca, r))
	if err != nil {
		t.Fatal(err)
	}
	return provider.NewRemoteClient(e.addr, cfg)
}

var newRecord = policy.LookupRecord{CustomerAddress: ca2, VirtualSubnetID: 5001, MACAddress: mac2, ProviderAddress: pa2, Rule: policy.TranslationMethodEncap}

// records is the backend's state the tests check for changes.
func (e *remoteEnv) records() []policy.LookupRecord {
	return e.b.Store().LookupRecords(policy.LookupRecordFilter{})
}

func TestRemoteAdmin(t *testing.T) {
	e := newRemoteEnv(t)
	c := e.client(t, e.ca, pki.Request{Role: pki.Admin, Name: "alice"})
	if _, err := c.AddLookupRecord(e.ctx, newRecord); err != nil {
		t.Fatal(err)
	}
	got, err := c.LookupRecords(e.ctx, policy.LookupRecordFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e.records()) || len(got) != 2 {
		t.Fatalf("admin listed %+v; the host has %+v", got, e.records())
	}
}

func TestRemoteObserverReadsOnly(t *testing.T) {
	e := newRemoteEnv(t)
	c := e.client(t, e.ca, pki.Request{Role: pki.Observer, Name: "bob"})
	before := e.records()
	got, err := c.LookupRecords(e.ctx, policy.LookupRecordFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, before) {
		t.Fatalf("observer listed %+v; the host has %+v", got, before)
	}
	_, err = c.AddLookupRecord(e.ctx, newRecord)
	want := `"bob" (role observer) refused: observers only read; POST /v1/lookup-records needs an admin credential`
	if !errors.Is(err, policy.ErrForbidden) || err.Error() != want {
		t.Fatalf("observer's add: %v; want 403 %s", err, want)
	}
	if _, err := c.RemoveLookupRecords(e.ctx, policy.LookupRecordFilter{}); !errors.Is(err, policy.ErrForbidden) {
		t.Fatalf("observer's remove: %v; want 403", err)
	}
	if after := e.records(); !reflect.DeepEqual(after, before) {
		t.Fatalf("refused writes changed the records from %+v to %+v", before, after)
	}
}

func TestRemoteTenantAndHostRefused(t *testing.T) {
	e := newRemoteEnv(t)
	for _, r := range []pki.Request{
		{Role: pki.Tenant, Name: cust.String()},
		{Role: pki.Host, Name: "host2", ProviderAddresses: []netip.Addr{pa2}},
	} {
		c := e.client(t, e.ca, r)
		_, err := c.LookupRecords(e.ctx, policy.LookupRecordFilter{})
		want := "(role " + string(r.Role) + ") refused: a host's provider API serves admins, and observers to read; GET /v1/lookup-records needs an admin credential"
		if !errors.Is(err, policy.ErrForbidden) || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("%s lists: %v; want 403 ...%s", r.Role, err, want)
		}
	}
}

// A client without a certificate of the host's CA fails the handshake: the
// server's alert names why, and nothing reaches the API.
func TestRemoteHandshakeRefusals(t *testing.T) {
	e := newRemoteEnv(t)
	before := e.records()
	other, _, err := pki.NewCA("other CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    *provider.Client
		want string
	}{
		{"no certificate", provider.NewRemoteClient(e.addr, &tls.Config{RootCAs: x509Pool(e.ca)}),
			"the server refused this client (tls: certificate required): this client presented no certificate of the server's CA"},
		{"another CA's certificate", e.client(t, other, pki.Request{Role: pki.Admin, Name: "mallory"}),
			// It trusts the other CA too, so the refusal is the server's.
			"the server is not trusted: its certificate \"host1\" (serial "},
	} {
		_, err := tc.c.AddLookupRecord(e.ctx, newRecord)
		if err == nil || !strings.Contains(err.Error(), "TLS with wnvd at "+e.addr+" failed: "+tc.want) {
			t.Errorf("%s: %v; want ...%s", tc.name, err, tc.want)
		}
	}
	// A client trusting the host's CA does not offer it a certificate of
	// another CA; one made to is refused by the server.
	cfg, err := pki.CredentialsTLS(providertest.Credentials(t, other, pki.Request{Role: pki.Admin, Name: "mallory"}))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RootCAs = x509Pool(e.ca)
	_, err = provider.NewRemoteClient(e.addr, cfg).AddLookupRecord(e.ctx, newRecord)
	if want := "(tls: certificate required)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("foreign certificate not offered: %v; want ...%s", err, want)
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cfg.Certificates[0], nil }
	_, err = provider.NewRemoteClient(e.addr, cfg).AddLookupRecord(e.ctx, newRecord)
	want := "TLS with wnvd at " + e.addr + " failed: the server refused this client (tls: unknown certificate authority): this client's certificate is not signed by its CA"
	if err == nil || err.Error() != want {
		t.Errorf("foreign certificate: %v; want %s", err, want)
	}
	if after := e.records(); !reflect.DeepEqual(after, before) {
		t.Fatalf("refused clients changed the records from %+v to %+v", before, after)
	}
}

// The client checks that it reached the host it dialled: a host credential
// of its CA naming that address.
func TestRemoteClientChecksHost(t *testing.T) {
	e := newRemoteEnv(t)
	_, port, _ := net.SplitHostPort(e.addr)
	cfg, err := pki.CredentialsTLS(providertest.Credentials(t, e.ca, pki.Request{Role: pki.Admin, Name: "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	// The credential of host1 names 127.0.0.1, not localhost.
	_, err = provider.NewRemoteClient("localhost:"+port, cfg).Counters(e.ctx)
	want := `TLS with wnvd at localhost:` + port + ` failed: the server is not trusted: its certificate is the credential of host "host1" (provider addresses [127.0.0.1]), which does not name localhost: reach it by its name or one of those addresses`
	if err == nil || err.Error() != want {
		t.Errorf("dialled as localhost: %v; want %s", err, want)
	}
	if _, err := provider.NewRemoteClient(e.addr, cfg).Counters(e.ctx); err != nil {
		t.Errorf("dialled as %s: %v", e.addr, err)
	}
}

func x509Pool(ca *pki.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func TestRemoteUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = provider.NewRemoteClient(addr, &tls.Config{}).Counters(t.Context())
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach wnvd at "+addr+": is it running?") {
		t.Fatalf("closed port: %v", err)
	}
}

func TestAccess(t *testing.T) {
	for _, tc := range []struct {
		role   pki.Role
		method string
		ok     bool
	}{
		{pki.Admin, "POST", true}, {pki.Admin, "DELETE", true}, {pki.Admin, "GET", true},
		{pki.Observer, "GET", true}, {pki.Observer, "HEAD", true},
		{pki.Observer, "POST", false}, {pki.Observer, "PUT", false}, {pki.Observer, "PATCH", false}, {pki.Observer, "DELETE", false},
		{pki.Tenant, "GET", false}, {pki.Host, "GET", false}, {pki.Host, "POST", false},
	} {
		err := provider.Access(pki.Identity{Name: "x", Role: tc.role}, tc.method, "/v1/ports")
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, policy.ErrForbidden) {
			t.Errorf("%s %s: %v; want allowed %v", tc.role, tc.method, err, tc.ok)
		}
	}
}
