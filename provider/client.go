package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/wnv/wnv/policy"
)

// Client calls the provider API of one wnvd over its Unix socket. It is safe
// for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
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
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Error is an error answered by wnvd. Message is its one line; errors.Is
// matches policy.ErrInvalid, ErrNotFound or ErrExists by status, so callers
// can treat it like an error from a local policy.Store.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Is(target error) bool {
	k := policy.KindOfStatus(e.Status)
	return k != nil && target == k
}

// do sends one request; in, when not nil, is the JSON body, and out, when not
// nil, receives the JSON answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: request could not be encoded: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := url.URL{Scheme: "http", Host: "wnvd", Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("cannot reach wnvd at %s: is it running? (%v)", c.socket, op)
		}
		return fmt.Errorf("wnvd at %s did not answer %s %s: %w", c.socket, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("wnvd's answer to %s %s could not be read: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			return &Error{Status: resp.StatusCode, Message: fmt.Sprintf("wnvd answered %s to %s %s without an error message", resp.Status, method, path)}
		}
		return &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("wnvd's answer to %s %s is not the expected JSON: %w", method, path, err)
	}
	return nil
}

func add[T any](c *Client, ctx context.Context, path string, obj T) (T, error) {
	var out T
	err := c.do(ctx, http.MethodPost, path, nil, obj, &out)
	return out, err
}

func list[T any](c *Client, ctx context.Context, method, path string, filter, change any) ([]T, error) {
	var out []T
	err := c.do(ctx, method, path, encodeQuery(filter), change, &out)
	return out, err
}

// AddLookupRecord creates r. Note that Rule 0 is TranslationMethodNat: set
// Rule explicitly.
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
	err := c.do(ctx, http.MethodGet, "/v1/next-hop", encodeQuery(q), nil, &out)
	return out, err
}

// Counters returns a snapshot of the switch's counters.
func (c *Client) Counters(ctx context.Context) (Counters, error) {
	var out Counters
	err := c.do(ctx, http.MethodGet, "/v1/counters", nil, nil, &out)
	return out, err
}
