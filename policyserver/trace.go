package policyserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/trace"
)

// POST /v1/trace runs wnvctl trace --from VM for the caller (the
// dashboard's form): the server reaches each host's provider API at the
// endpoint its agent reports (wnvd host --api-listen) with a short-lived
// credential of its own CA, an observer's for a dry run, an admin's for
// a live probe, which only admins may ask for.

// TraceRequest is POST /v1/trace's body: the VM that sends (From), the
// packet (Destination, Protocol, ports...; not Port or Outer), and Live to
// also send a marked probe.
type TraceRequest struct {
	From string `json:"From"`
	Live bool   `json:"Live"`
	provider.TraceRequest
}

const (
	// maxTraces bounds the traces running at once.
	maxTraces = 4
	// traceTimeout bounds one trace, and liveWait how long a live probe
	// is watched for.
	traceTimeout = 20 * time.Second
	liveWait     = 2 * time.Second
)

func (h *handler) traceRoute(route func(string, http.HandlerFunc)) {
	route("POST /v1/trace", func(w http.ResponseWriter, r *http.Request) {
		var req TraceRequest
		if err := jsonapi.DecodeBody(r.Body, &req); err != nil {
			h.fail(w, r, err)
			return
		}
		rep, err := h.trace(r, req)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		jsonapi.WriteJSON(w, http.StatusOK, rep)
	})
}

func (h *handler) trace(r *http.Request, req TraceRequest) (*trace.Report, error) {
	switch {
	case req.From == "":
		return nil, invalidf("From is missing: name the VM that sends")
	case req.Port != "" || req.Outer != nil:
		return nil, invalidf("Port and Outer are refused: name the VM that sends in From")
	case !req.Destination.IsValid():
		return nil, invalidf("Destination is missing: give the customer address to trace to, such as 10.0.0.11")
	}
	// The agent names a VM's port after the VM.
	req.TraceRequest.Port = req.From
	if err := req.Validate(); err != nil {
		return nil, invalidf("%s", err)
	}
	if z := authzOf(r.Context()); req.Live && z != nil && z.id.Role != pki.Admin {
		return nil, z.forbidden(r, "run live traces", "a live trace sends a probe into the tenant's network, which needs an admin credential; observers run dry traces (without Live)")
	}
	if h.auth == nil {
		return nil, invalidf("this policy server runs without authentication, so it has no credential to reach the hosts' provider APIs with: use wnvctl trace")
	}
	select {
	case h.traces <- struct{}{}:
		defer func() { <-h.traces }()
	default:
		return nil, tooManyf("%d traces are running, the most at once: try again in a moment", maxTraces)
	}
	ctx, cancel := context.WithTimeout(r.Context(), traceTimeout)
	defer cancel()
	vm, err := h.st.VM(ctx, req.From)
	if err != nil {
		return nil, err
	}
	role := pki.Observer
	if req.Live {
		role = pki.Admin
	}
	cfg, err := h.auth.hostAPITLS(role)
	if err != nil {
		return nil, err
	}
	client := func(host string) (*provider.Client, string, error) {
		ep := h.status.endpoint(host)
		if ep == "" {
			return nil, "", fmt.Errorf("host %s reports no provider API: run its wnvd with --api-listen for the policy server to trace through it", host)
		}
		return provider.NewRemoteClientOf(ep, host, cfg), ep, nil
	}
	src := trace.Hop{Host: vm.Host}
	if src.Client, src.Endpoint, err = client(vm.Host); err != nil {
		return nil, invalidf("%s", err)
	}
	t := trace.Tracer{Hosts: h.st.Hosts, Client: client}
	rep, err := t.Run(ctx, src, req.TraceRequest)
	if err != nil {
		return nil, err
	}
	if req.Live {
		if rep.Live, err = trace.RunLive(ctx, rep.Hops, req.TraceRequest, liveWait); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// hostAPIValidity is how long a credential for the hosts' provider APIs is
// valid; it is reissued once half of that has passed.
const hostAPIValidity = time.Hour

type hostAPICred struct {
	cfg     *tls.Config
	reissue time.Time
}

// hostAPITLS is the server's credential of role for the hosts' provider
// APIs: issued on first use and reused until half its validity has passed,
// so that a trace costs no key generation.
func (a *Auth) hostAPITLS(role pki.Role) (*tls.Config, error) {
	a.hostAPIMu.Lock()
	defer a.hostAPIMu.Unlock()
	now := a.now()
	if c, ok := a.hostAPI[role]; ok && now.Before(c.reissue) {
		return c.cfg, nil
	}
	_, certPEM, keyPEM, err := a.pki.CA.IssueKey(pki.Request{Role: role, Name: "policy-server", Validity: hostAPIValidity}, now)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: a.roots, Certificates: []tls.Certificate{pair}}
	if a.hostAPI == nil {
		a.hostAPI = map[pki.Role]hostAPICred{}
	}
	a.hostAPI[role] = hostAPICred{cfg: cfg, reissue: now.Add(hostAPIValidity / 2)}
	return cfg, nil
}
