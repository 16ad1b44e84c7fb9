package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider/providertest"
)

// With --host and --credentials, provider API commands manage a remote
// host's wnvd over mutual TLS; its roles decide what they may do.
func TestRemoteHost(t *testing.T) {
	ca, _, err := pki.NewCA("test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := providertest.NewBackend()
	addr := providertest.ServeRemote(t, b, ca)
	admin := providertest.Credentials(t, ca, pki.Request{Role: pki.Admin, Name: "alice"})
	observer := providertest.Credentials(t, ca, pki.Request{Role: pki.Observer, Name: "bob"})
	as := func(cred string, args ...string) (string, error) {
		t.Helper()
		return run(t, append([]string{"--host", addr, "--credentials", cred}, args...)...)
	}

	if _, err := as(admin, "customer-route", "create", "--routing-domain-id", rdID, "--virtual-subnet-id", "5001", "--destination-prefix", "10.0.0.0/24"); err != nil {
		t.Fatal(err)
	}
	newRecord := []string{"lookup-record", "create", "--customer-address", "10.0.0.5", "--virtual-subnet-id", "5001",
		"--mac-address", "00-15-5D-01-02-03", "--provider-address", "198.18.0.2", "--vm-name", "web1"}
	if _, err := as(admin, newRecord...); err != nil {
		t.Fatal(err)
	}
	if rs := b.Store().LookupRecords(policy.LookupRecordFilter{}); len(rs) != 1 || rs[0].VMName != "web1" {
		t.Fatalf("after a remote lookup-record new the host has %+v", rs)
	}

	out, err := as(observer, "-o", "json", "lookup-record", "get")
	var rs []policy.LookupRecord
	if err != nil || json.Unmarshal([]byte(out), &rs) != nil || len(rs) != 1 || rs[0].VMName != "web1" {
		t.Fatalf("observer's get: %v, printed %s", err, out)
	}
	_, err = as(observer, "lookup-record", "delete")
	want := `"bob" (role observer) refused: observers only read; DELETE /v1/lookup-records needs an admin credential`
	if err == nil || err.Error() != want {
		t.Fatalf("observer's remove: %v; want %s", err, want)
	}
	if n := len(b.Store().LookupRecords(policy.LookupRecordFilter{})); n != 1 {
		t.Fatalf("a refused remove left %d records; want 1", n)
	}
}

func TestRemoteHostErrors(t *testing.T) {
	ca, _, err := pki.NewCA("test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin := providertest.Credentials(t, ca, pki.Request{Role: pki.Admin, Name: "alice"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string // the error's beginning
	}{
		{[]string{"--host", closed, "counters"}, "--host " + closed + " needs a client credential: give --credentials DIR"},
		{[]string{"--host", "host1", "--credentials", admin, "counters"}, `--host "host1" is not ADDR:PORT`},
		{[]string{"--host", closed, "--socket", "/x.sock", "--credentials", admin, "counters"}, "give --socket (this machine's wnvd) or --host (another's), not both"},
		{[]string{"--host", closed, "--credentials", empty, "counters"}, "--credentials: credentials directory " + empty + ": " + filepath.Join(empty, "ca.pem") + " is missing"},
		{[]string{"--host", closed, "--credentials", admin, "counters"}, "cannot reach wnvd at " + closed + ": is it running?"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("wnvctl %s: %v; want %s...", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
