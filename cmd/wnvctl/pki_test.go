package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyserver"
)

// startSecurePolicyServer runs a policy server with TLS and authorization
// and returns its URL and the admin credentials directory.
func startSecurePolicyServer(t *testing.T) (string, string) {
	t.Helper()
	st := startStore(t)
	p, err := pki.EnsureServerPKI(filepath.Join(t.TempDir(), "pki"), nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	auth, err := policyserver.NewAuth(ctx, st, p, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(policyserver.NewSecureHandler(st, log, auth))
	srv.TLS = p.TLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, p.AdminDir()
}

// The pki commands issue credentials (keys written 0600, never sent), a
// host credential acts only for its host, revocation takes effect, and a
// missing credential is a one-line error before any request.
func TestPKICommands(t *testing.T) {
	s, admin := startSecurePolicyServer(t)
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		t.Helper()
		return psctl(t, s, args...)
	}
	ok := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("wnvctl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	if _, err := run("host", "get"); err == nil || !strings.Contains(err.Error(), "needs a client credential") {
		t.Fatalf("no credential: %v", err)
	}
	ok("--credentials", admin, "tenant", "create", "--customer-id", "{aaaaaaaa-0000-0000-0000-000000000001}", "--name", "Blue")
	h1 := filepath.Join(dir, "host1")
	out := ok("--credentials", admin, "pki", "issue", "host", "host1", "--provider-address", "198.18.0.1", "--out", h1)
	if !strings.Contains(out, "198.18.0.1") || !strings.Contains(out, "host1") {
		t.Fatalf("pki issue printed:\n%s", out)
	}
	if st, err := os.Stat(filepath.Join(h1, "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v %v", st, err)
	}
	out = ok("--credentials", admin, "pki", "issue", "tenant", "Blue", "--out", filepath.Join(dir, "blue"))
	if !strings.Contains(out, "{aaaaaaaa-0000-0000-0000-000000000001} (Blue)") {
		t.Fatalf("tenant credential does not name Blue's CustomerID:\n%s", out)
	}
	if _, err := run("--credentials", h1, "host", "create", "--name", "host2", "--provider-address", "198.18.0.1"); err == nil || !strings.Contains(err.Error(), "host2") {
		t.Fatalf("host1 registering host2: %v", err)
	}
	ok("--credentials", h1, "host", "create", "--name", "host1", "--provider-address", "198.18.0.1")
	out = ok("--credentials", filepath.Join(dir, "blue"), "pki", "whoami")
	if !strings.Contains(out, "tenant") {
		t.Fatalf("whoami printed:\n%s", out)
	}
	ok("--credentials", admin, "pki", "revoke", "host1")
	if _, err := run("--credentials", h1, "host", "get"); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked host1: %v", err)
	}
	out = ok("--credentials", admin, "pki", "get")
	if strings.Count(out, "\n") != 4 { // header, admin, host1, Blue
		t.Fatalf("pki list printed:\n%s", out)
	}
	if _, err := run("--credentials", filepath.Join(dir, "nothing"), "host", "get"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing credentials dir: %v", err)
	}

	out = ok("--credentials", admin, "pki", "issue", "observer", "carol", "--token")
	if !strings.Contains(out, "wnvt_") || !strings.Contains(out, "carol") {
		t.Fatalf("pki issue --token printed:\n%s", out)
	}
	for _, bad := range [][]string{
		{"pki", "issue", "admin", "eve", "--token"},
		{"pki", "issue", "observer", "eve", "--token", "--out", filepath.Join(dir, "eve")},
		{"pki", "issue", "observer", "eve"},
	} {
		if _, err := run(append([]string{"--credentials", admin}, bad...)...); err == nil {
			t.Errorf("wnvctl %s succeeded", strings.Join(bad, " "))
		}
	}
}
