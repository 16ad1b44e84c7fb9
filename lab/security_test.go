package lab

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// TestSecureLab brings up the default lab (without QEMU) and checks that it
// runs secure end to end: the policy server answers only HTTPS with a
// client certificate (anonymous 401, plain HTTP refused), every host agent
// registered with its own host credential, and the demo's access checks
// (host1 acting for host2, one tenant reading another) are refused.
func TestSecureLab(t *testing.T) {
	needRoot(t)
	l := newTestLabPrefix(t, Default(), "wau")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.Topology.ServerURL(), "https://") {
		t.Fatalf("the lab's policy server URL %s is not HTTPS", l.Topology.ServerURL())
	}
	// Every host agent is registered and alive, with its host credential.
	hosts, err := l.Server().Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if !h.Alive {
			t.Errorf("host %s is not alive", h.Name)
		}
	}
	creds, err := l.Server().Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Topology.Hosts {
		found := false
		for _, c := range creds {
			found = found || (c.Role == string(pki.Host) && c.Name == h.Name && len(c.ProviderAddresses) == 1 && c.ProviderAddresses[0] == h.PA.Addr())
		}
		if !found {
			t.Errorf("no host credential for %s with PA %v among %+v", h.Name, h.PA.Addr(), creds)
		}
	}
	checks, err := l.AccessChecks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sawAnon bool
	for _, c := range checks {
		if !c.OK() {
			t.Errorf("%s (%s) %s: got %d (%s), want %d", c.Who, c.Role, c.Request, c.Got, c.Answer, c.Want)
		}
		sawAnon = sawAnon || (c.Who == "anonymous" && c.Got == http.StatusUnauthorized)
	}
	if !sawAnon {
		t.Error("no anonymous request was refused with 401")
	}
	// Plain HTTP gets no API answer.
	anon, err := l.clientAs("", "underlay")
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.Replace(l.Topology.ServerURL(), "https://", "http://", 1)
	var out []policyapi.VM
	err = newPlainClient(plain, l).Do(ctx, http.MethodGet, "/v1/vms", nil, nil, &out)
	if err == nil {
		t.Errorf("plain HTTP to the lab's policy server answered %v", out)
	}
	anon.CloseIdleConnections()
}

// newPlainClient is a client without TLS, dialing from the underlay.
func newPlainClient(url string, l *Lab) *policyclient.Client {
	return policyclient.NewDialer(url, nil, NamespaceDialer(l.Topology.Namespace("underlay")))
}
