package main

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/provider/providertest"
)

// --api-listen serves only with a host credential of this host, by default
// the policy agent's.
func TestAPIFlagsOpen(t *testing.T) {
	ca, _, err := pki.NewCA("test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pa := []netip.Addr{netip.MustParseAddr("198.18.0.1")}
	host1 := providertest.Credentials(t, ca, pki.Request{Role: pki.Host, Name: "host1", ProviderAddresses: pa})
	host2 := providertest.Credentials(t, ca, pki.Request{Role: pki.Host, Name: "host2", ProviderAddresses: pa})
	admin := providertest.Credentials(t, ca, pki.Request{Role: pki.Admin, Name: "alice"})
	for _, tc := range []struct {
		api    apiFlags
		policy string
		err    string // a substring; "" to listen
	}{
		{apiFlags{listen: "127.0.0.1:0"}, "", "--api-listen 127.0.0.1:0 needs this host's credential: give --api-credentials DIR"},
		{apiFlags{listen: "127.0.0.1:0", credentials: host2}, "", "the --api-credentials credential is for host host2, not host host1"},
		{apiFlags{listen: "127.0.0.1:0", credentials: admin}, host1, "is for admin alice, not host host1"},
		{apiFlags{listen: "127.0.0.1:0", credentials: t.TempDir()}, "", "--api-credentials: credentials directory"},
		{apiFlags{listen: "127.0.0.1:0", credentials: host1}, host2, ""},
		{apiFlags{listen: "127.0.0.1:0"}, host1, ""},
	} {
		ln, cfg, err := tc.api.open("host1", tc.policy)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v, policy %s: %v; want %s", tc.api, tc.policy, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%+v, policy %s: %v", tc.api, tc.policy, err)
		case tc.err == "" && (cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.MinVersion != tls.VersionTLS13):
			t.Errorf("%+v: TLS config %+v does not require TLS 1.3 with client certificates", tc.api, cfg)
		}
		if ln != nil {
			ln.Close()
		}
	}
	if ln, _, err := (&apiFlags{}).open("host1", host1); ln != nil || err != nil {
		t.Errorf("without --api-listen: %v, %v; want off", ln, err)
	}
}
