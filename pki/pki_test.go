package pki

import (
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, _, err := NewCA("test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func pool(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// An issued host credential verifies to its name, role and PAs; a tenant
// keeps its display name.
func TestIssueVerifyIdentity(t *testing.T) {
	ca := newTestCA(t)
	pas := []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("fd00:198:18::1")}
	c, _, _, err := ca.IssueKey(Request{Role: Host, Name: "host1", ProviderAddresses: pas}, now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := Verify([]*x509.Certificate{c}, pool(ca), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "host1" || id.Role != Host || !slices.Equal(id.ProviderAddresses, pas) || id.Serial != SerialText(c.SerialNumber) {
		t.Fatalf("identity %+v", id)
	}
	c, _, _, err = ca.IssueKey(Request{Role: Tenant, Name: "{aaaaaaaa-0000-0000-0000-000000000001}", DisplayName: "Blue"}, now)
	if err != nil {
		t.Fatal(err)
	}
	id, err = Verify([]*x509.Certificate{c}, pool(ca), now)
	if err != nil || id.Role != Tenant || id.DisplayName != "Blue" {
		t.Fatalf("tenant identity %+v, %v", id, err)
	}
}

// Expired certificates, certificates of another CA, server certificates
// used as clients, and certificates without a role are refused with a
// reason naming them.
func TestVerifyRefuses(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	good, _, _, err := ca.IssueKey(Request{Role: Admin, Name: "alice", Validity: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify([]*x509.Certificate{good}, pool(ca), now.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "alice") {
		t.Errorf("expired: %v", err)
	}
	foreign, _, _, _ := other.IssueKey(Request{Role: Admin, Name: "mallory"}, now)
	if _, err := Verify([]*x509.Certificate{foreign}, pool(ca), now); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("other CA: %v", err)
	}
	srv, _, _, _ := ca.IssueKey(Request{Role: Server, Name: "srv"}, now)
	if _, err := Verify([]*x509.Certificate{srv}, pool(ca), now); err == nil {
		t.Error("a server certificate was accepted as a client credential")
	}
	if _, err := Verify(nil, pool(ca), now); err == nil {
		t.Error("no certificate accepted")
	}
}

func TestRequestCheck(t *testing.T) {
	for _, r := range []Request{
		{Role: "root", Name: "x"},
		{Role: Host, Name: "host1"},
		{Role: Admin, Name: "a b"},
		{Role: Tenant, Name: "t", ProviderAddresses: []netip.Addr{netip.MustParseAddr("198.18.0.1")}},
		{Role: Observer, Name: ""},
	} {
		if r.Check() == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}

// A CSR's key gets the certificate; the CSR's subject does not decide the
// role.
func TestIssueCSR(t *testing.T) {
	ca := newTestCA(t)
	csr, _, err := NewCSR("whatever")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := ca.IssueCSR(Request{Role: Observer, Name: "bob"}, csr, now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := IdentityOf(c)
	if err != nil || id.Name != "bob" || id.Role != Observer {
		t.Fatalf("%+v %v", id, err)
	}
	if _, _, err := ca.IssueCSR(Request{Role: Observer, Name: "bob"}, []byte("junk"), now); err == nil {
		t.Error("junk CSR accepted")
	}
}

// The server's PKI directory is created once (CA key 0600, admin
// credential 0600) and reused; the admin credential loads as a client TLS
// configuration.
func TestEnsureServerPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	p, err := EnsureServerPKI(dir, nil, []netip.Addr{netip.MustParseAddr("198.18.255.1")}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Created || p.Admin == nil {
		t.Fatal("first start did not create the CA and admin credential")
	}
	for _, f := range []string{"ca-key.pem", "server-key.pem", "admin/key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, st.Mode(), err)
		}
	}
	p2, err := EnsureServerPKI(dir, nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p2.Created || !p2.CA.Cert.Equal(p.CA.Cert) || !p2.Admin.Equal(p.Admin) {
		t.Fatal("second start made a new CA or admin credential")
	}
	cfg, err := CredentialsTLS(p.AdminDir())
	if err != nil || len(cfg.Certificates) != 1 {
		t.Fatalf("admin credentials: %v", err)
	}
	if _, err := CredentialsTLS(t.TempDir()); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("empty credentials dir: %v", err)
	}
	leaf, _ := x509.ParseCertificate(p.Cert.Certificate[0])
	if err := leaf.VerifyHostname("198.18.255.1"); err != nil {
		t.Error(err)
	}
}

// A host's remote provider API is trusted when it presents a host
// credential of the CA naming the address it was dialled by.
func TestVerifyHost(t *testing.T) {
	ca := newTestCA(t)
	pa := netip.MustParseAddr("198.18.0.1")
	host, _, _, err := ca.IssueKey(Request{Role: Host, Name: "host1", ProviderAddresses: []netip.Addr{pa}}, now)
	if err != nil {
		t.Fatal(err)
	}
	dotted, _, _, err := ca.IssueKey(Request{Role: Host, Name: "host2.dc.example", ProviderAddresses: []netip.Addr{pa}}, now)
	if err != nil {
		t.Fatal(err)
	}
	admin, _, _, err := ca.IssueKey(Request{Role: Admin, Name: "alice"}, now)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestCA(t)
	for _, tc := range []struct {
		cert  *x509.Certificate
		roots *x509.CertPool
		addr  string
		err   string // a substring; "" for trusted
	}{
		{host, pool(ca), "198.18.0.1", ""},
		{host, pool(ca), "::ffff:198.18.0.1", ""},
		{host, pool(ca), "host1", ""},
		{host, pool(ca), "HOST1.dc.example", ""},
		{dotted, pool(ca), "host2.dc.example", ""},
		{dotted, pool(ca), "host2", "does not name host2"},
		{host, pool(ca), "198.18.0.2", `credential of host "host1" (provider addresses [198.18.0.1]), which does not name 198.18.0.2`},
		{host, pool(ca), "host2.dc.example", "does not name host2.dc.example"},
		{admin, pool(ca), "alice", "is the credential of admin alice, not of a host"},
		{host, pool(other), "host1", "is not signed by the CA of the credentials"},
		{host, nil, "host1", "names no CA"},
	} {
		_, err := VerifyHost([]*x509.Certificate{tc.cert}, tc.roots, now.Add(time.Hour), tc.addr)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s dialled as %s: %v; want %q", tc.cert.Subject.CommonName, tc.addr, err, tc.err)
		}
	}
}
