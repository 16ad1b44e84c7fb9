package policyclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wnv/wnv/internal/backoff"
	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// Client calls a policy server over HTTP(S). It is safe for concurrent use.
// Its errors are *jsonapi.Error, which errors.Is matches to policy.ErrInvalid,
// ErrNotFound, ErrExists or ErrUnavailable by status.
type Client struct {
	api jsonapi.Client
}

// New returns a client for the server at baseURL (http://host:port or
// https://host:port). tlsConfig, when not nil, sets the CA to trust and the
// client certificate for mutual TLS (see pki.ClientTLS).
func New(baseURL string, tlsConfig *tls.Config) *Client {
	return NewDialer(baseURL, tlsConfig, nil)
}

// NewDialer is New with the function that opens connections, e.g. one that
// dials inside another network namespace; nil dials as usual.
func NewDialer(baseURL string, tlsConfig *tls.Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	if dial != nil {
		tr.DialContext = dial
	}
	tr.MaxIdleConnsPerHost = 16
	base := strings.TrimRight(baseURL, "/")
	return &Client{api: jsonapi.Client{Base: base, Server: "policy server at " + base, HTTP: &http.Client{Transport: tr}}}
}

// CloseIdleConnections closes kept-alive connections, e.g. before exiting.
func (c *Client) CloseIdleConnections() { c.api.HTTP.CloseIdleConnections() }

// Do sends one request to path; in, when not nil, is the JSON body, and
// out, when not nil, receives the JSON answer. The typed methods use it;
// tests and tools use it for requests the methods do not cover.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	return c.api.Do(ctx, method, path, query, in, out)
}

func call[T any](c *Client, ctx context.Context, method, path string, query url.Values, in any) (T, error) {
	var out T
	err := c.Do(ctx, method, path, query, in, &out)
	return out, err
}

func esc(s string) string { return url.PathEscape(s) }

// Tenants.

func (c *Client) CreateTenant(ctx context.Context, t policyapi.Tenant) (policyapi.Tenant, error) {
	return call[policyapi.Tenant](c, ctx, http.MethodPost, "/v1/tenants", nil, t)
}
func (c *Client) Tenant(ctx context.Context, id policy.GUID) (policyapi.Tenant, error) {
	return call[policyapi.Tenant](c, ctx, http.MethodGet, "/v1/tenants/"+esc(id.String()), nil, nil)
}
func (c *Client) Tenants(ctx context.Context) ([]policyapi.Tenant, error) {
	return call[[]policyapi.Tenant](c, ctx, http.MethodGet, "/v1/tenants", nil, nil)
}
func (c *Client) DeleteTenant(ctx context.Context, id policy.GUID) error {
	return c.Do(ctx, http.MethodDelete, "/v1/tenants/"+esc(id.String()), nil, nil, nil)
}

// Routing domains.

func (c *Client) CreateRoutingDomain(ctx context.Context, rd policyapi.RoutingDomain) (policyapi.RoutingDomain, error) {
	return call[policyapi.RoutingDomain](c, ctx, http.MethodPost, "/v1/routing-domains", nil, rd)
}
func (c *Client) RoutingDomain(ctx context.Context, id policy.GUID) (policyapi.RoutingDomain, error) {
	return call[policyapi.RoutingDomain](c, ctx, http.MethodGet, "/v1/routing-domains/"+esc(id.String()), nil, nil)
}
func (c *Client) RoutingDomains(ctx context.Context) ([]policyapi.RoutingDomain, error) {
	return call[[]policyapi.RoutingDomain](c, ctx, http.MethodGet, "/v1/routing-domains", nil, nil)
}
func (c *Client) DeleteRoutingDomain(ctx context.Context, id policy.GUID) error {
	return c.Do(ctx, http.MethodDelete, "/v1/routing-domains/"+esc(id.String()), nil, nil, nil)
}

// Subnets.

func (c *Client) CreateSubnet(ctx context.Context, s policyapi.Subnet) (policyapi.Subnet, error) {
	return call[policyapi.Subnet](c, ctx, http.MethodPost, "/v1/subnets", nil, s)
}
func (c *Client) Subnet(ctx context.Context, vsid policy.VSID) (policyapi.Subnet, error) {
	return call[policyapi.Subnet](c, ctx, http.MethodGet, "/v1/subnets/"+strconv.FormatUint(uint64(vsid), 10), nil, nil)
}

// Subnets lists the subnets of rd, or all of them for the zero GUID.
func (c *Client) Subnets(ctx context.Context, rd policy.GUID) ([]policyapi.Subnet, error) {
	q := url.Values{}
	if !rd.IsZero() {
		q.Set("routingDomain", rd.String())
	}
	return call[[]policyapi.Subnet](c, ctx, http.MethodGet, "/v1/subnets", q, nil)
}
func (c *Client) DeleteSubnet(ctx context.Context, vsid policy.VSID) error {
	return c.Do(ctx, http.MethodDelete, "/v1/subnets/"+strconv.FormatUint(uint64(vsid), 10), nil, nil, nil)
}

// Hosts.

// RegisterHost creates or updates h and starts its liveness lease of
// h.TTLSeconds (default 10); keep it with Heartbeat well within the TTL.
func (c *Client) RegisterHost(ctx context.Context, h policyapi.Host) (policyapi.Host, error) {
	return call[policyapi.Host](c, ctx, http.MethodPost, "/v1/hosts", nil, h)
}

// Heartbeat renews the host's liveness lease, starting a new one if it had
// expired.
func (c *Client) Heartbeat(ctx context.Context, name string) (policyapi.Host, error) {
	return call[policyapi.Host](c, ctx, http.MethodPost, "/v1/hosts/"+esc(name)+"/heartbeat", nil, nil)
}
func (c *Client) Host(ctx context.Context, name string) (policyapi.Host, error) {
	return call[policyapi.Host](c, ctx, http.MethodGet, "/v1/hosts/"+esc(name), nil, nil)
}
func (c *Client) Hosts(ctx context.Context) ([]policyapi.Host, error) {
	return call[[]policyapi.Host](c, ctx, http.MethodGet, "/v1/hosts", nil, nil)
}
func (c *Client) DeleteHost(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/hosts/"+esc(name), nil, nil, nil)
}

// VMs.

func (c *Client) CreateVM(ctx context.Context, vm policyapi.VM) (policyapi.VM, error) {
	return call[policyapi.VM](c, ctx, http.MethodPost, "/v1/vms", nil, vm)
}
func (c *Client) VM(ctx context.Context, name string) (policyapi.VM, error) {
	return call[policyapi.VM](c, ctx, http.MethodGet, "/v1/vms/"+esc(name), nil, nil)
}
func (c *Client) VMs(ctx context.Context, f policyapi.VMFilter) ([]policyapi.VM, error) {
	q := url.Values{}
	if f.Host != "" {
		q.Set("host", f.Host)
	}
	if f.VirtualSubnetID != 0 {
		q.Set("vsid", strconv.FormatUint(uint64(f.VirtualSubnetID), 10))
	}
	if !f.RoutingDomainID.IsZero() {
		q.Set("routingDomain", f.RoutingDomainID.String())
	}
	return call[[]policyapi.VM](c, ctx, http.MethodGet, "/v1/vms", q, nil)
}
func (c *Client) DeleteVM(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/vms/"+esc(name), nil, nil, nil)
}

// MigrateVM moves the VM to host and returns it with its new
// ProviderAddress, PreviousHost and MigratedAt.
func (c *Client) MigrateVM(ctx context.Context, name, host string) (policyapi.VM, error) {
	return call[policyapi.VM](c, ctx, http.MethodPost, "/v1/vms/"+esc(name)+"/migrate", nil, policyapi.Migration{Host: host})
}

// Gateways.

func (c *Client) CreateGateway(ctx context.Context, g policyapi.Gateway) (policyapi.Gateway, error) {
	return call[policyapi.Gateway](c, ctx, http.MethodPost, "/v1/gateways", nil, g)
}
func (c *Client) Gateway(ctx context.Context, name string) (policyapi.Gateway, error) {
	return call[policyapi.Gateway](c, ctx, http.MethodGet, "/v1/gateways/"+esc(name), nil, nil)
}
func (c *Client) Gateways(ctx context.Context) ([]policyapi.Gateway, error) {
	return call[[]policyapi.Gateway](c, ctx, http.MethodGet, "/v1/gateways", nil, nil)
}
func (c *Client) DeleteGateway(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/gateways/"+esc(name), nil, nil, nil)
}

// Host-facing reads.

// Policy returns all records and routes of one routing domain at one
// revision.
func (c *Client) Policy(ctx context.Context, rd policy.GUID) (policyapi.Policy, error) {
	return call[policyapi.Policy](c, ctx, http.MethodGet, "/v1/policy", url.Values{"routingDomain": {rd.String()}}, nil)
}

// Lookup returns the record of ca in the routing domain of vsid; it answers
// an error matching policy.ErrNotFound when there is none.
func (c *Client) Lookup(ctx context.Context, vsid policy.VSID, ca netip.Addr) (policyapi.LookupAnswer, error) {
	q := url.Values{"vsid": {strconv.FormatUint(uint64(vsid), 10)}, "ca": {ca.String()}}
	return call[policyapi.LookupAnswer](c, ctx, http.MethodGet, "/v1/lookup", q, nil)
}

// A broken watch stream is reconnected after a jittered exponential
// backoff between these bounds, back to the lower one once a stream
// delivered something.
const (
	watchRetryMin = 200 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// Watch streams the changes after revision rev (0: from now) of the given
// routing domains (all when none). The stream reconnects by itself, with
// jittered exponential backoff, after a broken connection, a 5xx answer
// (etcd away) or a 429 (too many streams of this client, until one ends),
// resuming after the last revision seen, and yields that error with a zero
// Event so the caller can log it; another 4xx answer ends the stream with
// its error. An EventResync ends it too: re-read the policy and watch again
// from its revision. It ends when ctx is done or the caller stops iterating.
func (c *Client) Watch(ctx context.Context, rev int64, rds ...policy.GUID) iter.Seq2[policyapi.Event, error] {
	return c.WatchHost(ctx, rev, "", rds...)
}

// WatchHost is Watch of the routing domains rds that also streams the VM
// events placing a VM on host or taking one away, whatever its routing
// domain: a host agent's watch. With no rds it streams only those and the
// host and liveness events.
func (c *Client) WatchHost(ctx context.Context, rev int64, host string, rds ...policy.GUID) iter.Seq2[policyapi.Event, error] {
	return func(yield func(policyapi.Event, error) bool) {
		retry := backoff.Backoff{Min: watchRetryMin, Max: watchRetryMax, Rand: rand.Float64}
		for ctx.Err() == nil {
			q := url.Values{"rev": {strconv.FormatInt(rev, 10)}}
			if host != "" {
				q.Set("host", host)
			}
			for _, rd := range rds {
				q.Add("routingDomain", rd.String())
			}
			resp, err := c.api.Request(ctx, http.MethodGet, "/v1/watch", q, nil)
			var se *jsonapi.Error
			if errors.As(err, &se) && se.Status < 500 && se.Status != http.StatusTooManyRequests {
				yield(policyapi.Event{}, err)
				return
			}
			if err == nil {
				var ended, delivered bool
				rev, ended, delivered, err = c.readStream(resp.Body, rev, yield)
				resp.Body.Close()
				if ended {
					return
				}
				if delivered {
					retry.Reset()
				}
			}
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = fmt.Errorf("policy server at %s closed the watch stream", c.api.Base)
			}
			if !yield(policyapi.Event{}, err) {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(retry.Next()):
			}
		}
	}
}

// readStream yields the events of one watch response and returns the last
// revision seen completely; ended is true when the caller stopped or a
// resync came; delivered is true when a change came after the stream's
// first progress event (the server is healthy, not accepting and dropping).
// One etcd revision may carry several events (a host's new PA rewrites its
// VMs in one Txn), so a revision counts as complete only once a later one or
// a progress event arrives, and a resumed stream repeats the events of a
// revision cut short: apply events as levels, not edges.
func (c *Client) readStream(body io.Reader, done int64, yield func(policyapi.Event, error) bool) (rev int64, ended, delivered bool, err error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	last := done
	for n := 0; sc.Scan(); n++ {
		var ev policyapi.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return done, false, delivered, fmt.Errorf("policy server at %s sent a watch line that is not an event: %w", c.api.Base, err)
		}
		switch {
		case ev.Type == policyapi.EventProgress:
			done, last = max(done, ev.Revision), max(last, ev.Revision)
		case ev.Type != policyapi.EventResync && ev.Revision > last:
			done, last = last, ev.Revision
		}
		delivered = delivered || n > 0
		if !yield(ev, nil) || ev.Type == policyapi.EventResync {
			return done, true, delivered, nil
		}
	}
	return done, false, delivered, sc.Err()
}

// RedirectKeys returns the pairwise redirect keys of host's PAs with every
// other host's (the host itself or an admin only).
func (c *Client) RedirectKeys(ctx context.Context, host string) ([]policyapi.RedirectKey, error) {
	return call[[]policyapi.RedirectKey](c, ctx, http.MethodGet, "/v1/hosts/"+esc(host)+"/redirect-keys", nil, nil)
}

// ReportLearned reports a CA host learned on an L2Only VM's port.
func (c *Client) ReportLearned(ctx context.Context, host string, l policyapi.Learned) (policyapi.Learned, error) {
	return call[policyapi.Learned](c, ctx, http.MethodPost, "/v1/hosts/"+esc(host)+"/learned", nil, l)
}

// ForgetLearned reports that host forgot the CA it learned (aged out).
func (c *Client) ForgetLearned(ctx context.Context, host string, vsid policy.VSID, ca netip.Addr) error {
	return c.Do(ctx, http.MethodDelete, "/v1/hosts/"+esc(host)+"/learned/"+strconv.FormatUint(uint64(vsid), 10)+"/"+esc(ca.String()), nil, nil, nil)
}

// Credentials (admin only, except WhoAmI).

// IssueCredential asks the server's CA for a credential.
func (c *Client) IssueCredential(ctx context.Context, r policyapi.IssueRequest) (policyapi.IssuedCredential, error) {
	return call[policyapi.IssuedCredential](c, ctx, http.MethodPost, "/v1/pki/credentials", nil, r)
}
func (c *Client) Credentials(ctx context.Context) ([]policyapi.Credential, error) {
	return call[[]policyapi.Credential](c, ctx, http.MethodGet, "/v1/pki/credentials", nil, nil)
}

// Revoke revokes a credential by serial or every one of a name.
func (c *Client) Revoke(ctx context.Context, r policyapi.Revocation) ([]policyapi.Credential, error) {
	return call[[]policyapi.Credential](c, ctx, http.MethodPost, "/v1/pki/revocations", nil, r)
}

// WhoAmI returns the identity the server authenticated this client as.
func (c *Client) WhoAmI(ctx context.Context) (policyapi.Credential, error) {
	return call[policyapi.Credential](c, ctx, http.MethodGet, "/v1/pki/whoami", nil, nil)
}
