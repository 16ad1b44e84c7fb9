package provider

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
)

// Client calls the provider API of one wnvd, over its Unix socket or, for
// another machine, over mutual TLS (NewRemoteClient). It is safe for
// concurrent use. Its errors are *jsonapi.Error, which errors.Is matches to
// policy.ErrInvalid, ErrNotFound or ErrExists by status, so callers can
// treat them like errors of a local policy.Store; a remote host's refusals
// match policy.ErrUnauthenticated (401) and ErrForbidden (403).
type Client struct {
	api jsonapi.Client
}

// NewClient returns a client for the wnvd listening on socketPath. It does
// not connect until the first call.
func NewClient(socketPath string) *Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns: 4,
	}
	return &Client{api: jsonapi.Client{Base: "http://wnvd", Server: "wnvd at " + socketPath, HTTP: &http.Client{Transport: tr}}}
}

// NewRemoteClient returns a client for the wnvd serving its provider API on
// addr (host:port, wnvd host --api-listen) over mutual TLS. tlsConfig is the
// caller's credential (pki.CredentialsTLS): its certificate is presented,
// and wnvd must present a host credential of its RootCAs that names addr's
// host (pki.VerifyHost). It does not connect until the first call.
func NewRemoteClient(addr string, tlsConfig *tls.Config) *Client {
	host, _, _ := net.SplitHostPort(addr)
	return NewRemoteClientOf(addr, host, tlsConfig)
}

// NewRemoteClientOf is NewRemoteClient of the host named host reached at
// addr: wnvd must present host's credential, whatever addr says (the
// policy server dials the address an agent reported, which its credential
// need not name).
func NewRemoteClientOf(addr, host string, tlsConfig *tls.Config) *Client {
	cfg := &tls.Config{}
	if tlsConfig != nil {
		cfg = tlsConfig.Clone()
	}
	roots := cfg.RootCAs
	cfg.MinVersion = tls.VersionTLS13
	// A host credential is a client certificate, which the standard
	// server-name check refuses: VerifyHost checks it instead.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if _, err := pki.VerifyHost(cs.PeerCertificates, roots, time.Now(), host); err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		}
		return nil
	}
	tr := &http.Transport{TLSClientConfig: cfg, TLSHandshakeTimeout: 10 * time.Second, MaxIdleConns: 4}
	return &Client{api: jsonapi.Client{Base: "https://" + addr, Server: "wnvd at " + addr, HTTP: &http.Client{Transport: tr}}}
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	return c.api.Do(ctx, method, path, query, in, out)
}

func add[T any](c *Client, ctx context.Context, path string, obj T) (T, error) {
	var out T
	err := c.do(ctx, http.MethodPost, path, nil, obj, &out)
	return out, err
}

func list[T any](c *Client, ctx context.Context, method, path string, filter, change any) ([]T, error) {
	var out []T
	err := c.do(ctx, method, path, jsonapi.EncodeQuery(filter), change, &out)
	return out, err
}

// AddLookupRecord creates r. A Rule left out (policy.RuleUnset) is sent as
// absent and gets the API's default, Encap; Nat is only ever sent when asked
// for.
func (c *Client) AddLookupRecord(ctx context.Context, r policy.LookupRecord) (policy.LookupRecord, error) {
	return add(c, ctx, "/v1/lookup-records", r)
}

// LookupRecords lists the records matching f.
func (c *Client) LookupRecords(ctx context.Context, f policy.LookupRecordFilter) ([]policy.LookupRecord, error) {
	return list[policy.LookupRecord](c, ctx, http.MethodGet, "/v1/lookup-records", f, nil)
}

// SetLookupRecords applies ch to the records matching f and returns them.
func (c *Client) SetLookupRecords(ctx context.Context, f policy.LookupRecordFilter, ch policy.LookupRecordChange) ([]policy.LookupRecord, error) {
	return list[policy.LookupRecord](c, ctx, http.MethodPatch, "/v1/lookup-records", f, ch)
}

// RemoveLookupRecords removes the records matching f (all for an empty f)
// and returns them.
func (c *Client) RemoveLookupRecords(ctx context.Context, f policy.LookupRecordFilter) ([]policy.LookupRecord, error) {
	return list[policy.LookupRecord](c, ctx, http.MethodDelete, "/v1/lookup-records", f, nil)
}

// AddCustomerRoute creates r.
func (c *Client) AddCustomerRoute(ctx context.Context, r policy.CustomerRoute) (policy.CustomerRoute, error) {
	return add(c, ctx, "/v1/customer-routes", r)
}

// CustomerRoutes lists the routes matching f.
func (c *Client) CustomerRoutes(ctx context.Context, f policy.CustomerRouteFilter) ([]policy.CustomerRoute, error) {
	return list[policy.CustomerRoute](c, ctx, http.MethodGet, "/v1/customer-routes", f, nil)
}

// SetCustomerRoutes sets the Metric of the routes matching f.
func (c *Client) SetCustomerRoutes(ctx context.Context, f policy.CustomerRouteFilter, metric uint32) ([]policy.CustomerRoute, error) {
	return list[policy.CustomerRoute](c, ctx, http.MethodPatch, "/v1/customer-routes", f, MetricChange{Metric: &metric})
}

// RemoveCustomerRoutes removes the routes matching f (all for an empty f).
func (c *Client) RemoveCustomerRoutes(ctx context.Context, f policy.CustomerRouteFilter) ([]policy.CustomerRoute, error) {
	return list[policy.CustomerRoute](c, ctx, http.MethodDelete, "/v1/customer-routes", f, nil)
}

// AddProviderAddress creates a.
func (c *Client) AddProviderAddress(ctx context.Context, a policy.ProviderAddress) (policy.ProviderAddress, error) {
	return add(c, ctx, "/v1/provider-addresses", a)
}

// ProviderAddresses lists the addresses matching f.
func (c *Client) ProviderAddresses(ctx context.Context, f policy.ProviderAddressFilter) ([]policy.ProviderAddress, error) {
	return list[policy.ProviderAddress](c, ctx, http.MethodGet, "/v1/provider-addresses", f, nil)
}

// SetProviderAddresses applies ch to the addresses matching f and returns
// them as changed.
func (c *Client) SetProviderAddresses(ctx context.Context, f policy.ProviderAddressFilter, ch policy.ProviderAddressChange) ([]policy.ProviderAddress, error) {
	return list[policy.ProviderAddress](c, ctx, http.MethodPatch, "/v1/provider-addresses", f, ch)
}

// RemoveProviderAddresses removes the addresses matching f (all for an empty f).
func (c *Client) RemoveProviderAddresses(ctx context.Context, f policy.ProviderAddressFilter) ([]policy.ProviderAddress, error) {
	return list[policy.ProviderAddress](c, ctx, http.MethodDelete, "/v1/provider-addresses", f, nil)
}

// AddProviderRoute creates r.
func (c *Client) AddProviderRoute(ctx context.Context, r policy.ProviderRoute) (policy.ProviderRoute, error) {
	return add(c, ctx, "/v1/provider-routes", r)
}

// ProviderRoutes lists the routes matching f.
func (c *Client) ProviderRoutes(ctx context.Context, f policy.ProviderRouteFilter) ([]policy.ProviderRoute, error) {
	return list[policy.ProviderRoute](c, ctx, http.MethodGet, "/v1/provider-routes", f, nil)
}

// SetProviderRoutes sets the Metric of the routes matching f.
func (c *Client) SetProviderRoutes(ctx context.Context, f policy.ProviderRouteFilter, metric uint32) ([]policy.ProviderRoute, error) {
	return list[policy.ProviderRoute](c, ctx, http.MethodPatch, "/v1/provider-routes", f, MetricChange{Metric: &metric})
}

// RemoveProviderRoutes removes the routes matching f (all for an empty f).
func (c *Client) RemoveProviderRoutes(ctx context.Context, f policy.ProviderRouteFilter) ([]policy.ProviderRoute, error) {
	return list[policy.ProviderRoute](c, ctx, http.MethodDelete, "/v1/provider-routes", f, nil)
}

// Global returns the host-wide setting.
func (c *Client) Global(ctx context.Context) (policy.Global, error) {
	var g policy.Global
	err := c.do(ctx, http.MethodGet, "/v1/global", nil, nil, &g)
	return g, err
}

// SetGlobal replaces the host-wide setting and returns it.
func (c *Client) SetGlobal(ctx context.Context, g policy.Global) (policy.Global, error) {
	var out policy.Global
	err := c.do(ctx, http.MethodPut, "/v1/global", nil, g, &out)
	return out, err
}

// AttachPort attaches a VM port.
func (c *Client) AttachPort(ctx context.Context, spec PortSpec) (Port, error) {
	var out Port
	err := c.do(ctx, http.MethodPost, "/v1/ports", nil, spec, &out)
	return out, err
}

// DetachPort detaches the named port; its interface stays as it is.
func (c *Client) DetachPort(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(name), nil, nil, nil)
}

// DetachMigratedPort detaches the port of a VM that live-migrated to another
// host; for a grace period wnvd forwards packets still arriving for it to
// its new PA.
func (c *Client) DetachMigratedPort(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(name), url.Values{"migrated": {"true"}}, nil, nil)
}

// Ports lists the attached ports by name.
func (c *Client) Ports(ctx context.Context) ([]Port, error) {
	var out []Port
	err := c.do(ctx, http.MethodGet, "/v1/ports", nil, nil, &out)
	return out, err
}

// Port returns the named port.
func (c *Client) Port(ctx context.Context, name string) (Port, error) {
	var out Port
	err := c.do(ctx, http.MethodGet, "/v1/ports/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// NextHop answers Select-NextHop for q.
func (c *Client) NextHop(ctx context.Context, q NextHopQuery) (NextHop, error) {
	var out NextHop
	err := c.do(ctx, http.MethodGet, "/v1/next-hop", jsonapi.EncodeQuery(q), nil, &out)
	return out, err
}

// Counters returns a snapshot of the switch's counters.
func (c *Client) Counters(ctx context.Context) (Counters, error) {
	var out Counters
	err := c.do(ctx, http.MethodGet, "/v1/counters", nil, nil, &out)
	return out, err
}
