// Package providertest offers an in-memory provider.Backend around a real
// policy.Store, and a helper that serves it on a temporary Unix socket, for
// tests of provider API clients (wnvctl, host agents) that need no root;
// ServeRemote serves it as a remote host does, on loopback TCP with mutual
// TLS.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// Backend keeps ports in memory and answers next-hop queries from the lookup
// records alone (no routing), which is enough to exercise the API.
type Backend struct {
	store *policy.Store

	mu       sync.Mutex
	ports    map[string]provider.Port
	next     int
	counters provider.Counters
	monitor  *monitor.Hub
}

// NewBackend returns a backend with an empty policy store.
func NewBackend() *Backend {
	return &Backend{store: policy.NewStore(), ports: map[string]provider.Port{}, monitor: monitor.NewHub(nil, nil)}
}

// MonitorHub is the hub of GET /v1/monitor: a test publishes samples to it
// once a stream subscribed (Config().Drops).
func (b *Backend) MonitorHub() *monitor.Hub { return b.monitor }

// HostName names the backend's host on monitor streams.
func (b *Backend) HostName() string { return "test-host" }

func (b *Backend) Store() *policy.Store { return b.store }

func (b *Backend) AttachPort(spec provider.PortSpec) (provider.Port, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.ports[spec.Name]; ok {
		return provider.Port{}, &policy.Error{Kind: policy.ErrExists, Msg: fmt.Sprintf("port %q is already attached: detach it first or pick another Name", spec.Name)}
	}
	b.next++
	p := provider.Port{PortSpec: spec, Index: b.next}
	b.ports[spec.Name] = p
	return p, nil
}

func (b *Backend) DetachPort(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.ports[name]; !ok {
		return &policy.Error{Kind: policy.ErrNotFound, Msg: fmt.Sprintf("port %q is not attached: list ports with wnvctl port get", name)}
	}
	delete(b.ports, name)
	return nil
}

func (b *Backend) Ports() []provider.Port {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]provider.Port, 0, len(b.ports))
	for _, p := range b.ports {
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y provider.Port) int { return x.Index - y.Index })
	return out
}

// NextHop finds the source's and the destination's lookup records; the
// destination may be in any virtual subnet that shares a routing domain with
// the source's, as the customer routes say.
func (b *Backend) NextHop(q provider.NextHopQuery) (provider.NextHop, error) {
	src := b.store.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{q.SourceCustomerAddress}, VirtualSubnetID: []policy.VSID{q.SourceVirtualSubnetID}})
	if len(src) == 0 {
		return provider.NextHop{}, &policy.Error{Kind: policy.ErrNotFound, Msg: fmt.Sprintf("SourceCustomerAddress %s has no lookup record in VirtualSubnetID %d", q.SourceCustomerAddress, q.SourceVirtualSubnetID)}
	}
	domain := map[policy.VSID]bool{q.SourceVirtualSubnetID: true}
	for _, r := range b.store.CustomerRoutes(policy.CustomerRouteFilter{VirtualSubnetID: []policy.VSID{q.SourceVirtualSubnetID}}) {
		for _, s := range b.store.CustomerRoutes(policy.CustomerRouteFilter{RoutingDomainID: []policy.Wildcard{policy.MustParseWildcard(r.RoutingDomainID.String())}}) {
			domain[s.VirtualSubnetID] = true
		}
	}
	for _, d := range b.store.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{q.DestinationCustomerAddress}}) {
		if domain[d.VirtualSubnetID] {
			return provider.NextHop{
				NextHopAddress:    d.CustomerAddress,
				SourceMACAddress:  src[0].MACAddress,
				NextHopMACAddress: d.MACAddress,
				ProviderAddress:   d.ProviderAddress,
				VirtualSubnetID:   d.VirtualSubnetID,
			}, nil
		}
	}
	return provider.NextHop{}, &policy.Error{Kind: policy.ErrNotFound, Msg: fmt.Sprintf("DestinationCustomerAddress %s has no lookup record in the routing domain of VirtualSubnetID %d", q.DestinationCustomerAddress, q.SourceVirtualSubnetID)}
}

// SetCounters sets what Counters returns.
func (b *Backend) SetCounters(c provider.Counters) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counters = c
}

func (b *Backend) Counters() provider.Counters {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counters
}

// Serve serves b's provider API on a fresh Unix socket until the test ends and
// returns the socket's path. The path is kept short: Unix socket paths are
// limited to 108 bytes, which t.TempDir() can exceed.
func Serve(t testing.TB, b provider.Backend) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wnvp")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "wnvd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- provider.Serve(ctx, sock, provider.NewHandler(b)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("provider.Serve: %v", err)
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider API did not come up on %s: %v", sock, errors.Join(err, drain(done)))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// RemoteHost is the host whose credential ServeRemote serves with.
const RemoteHost = "host1"

// ServeRemote serves b's provider API on a loopback TCP port over mutual
// TLS until the test ends, as wnvd host --api-listen does, with a host
// credential of RemoteHost (provider address 127.0.0.1) issued by ca, and
// returns its address. The port is open before it returns.
func ServeRemote(t testing.TB, b provider.Backend, ca *pki.CA) string {
	t.Helper()
	return ServeRemoteAs(t, b, ca, RemoteHost, netip.MustParseAddr("127.0.0.1"))
}

// ServeRemoteAs is ServeRemote with the credential of host name at
// provider address pa.
func ServeRemoteAs(t testing.TB, b provider.Backend, ca *pki.CA, name string, pa netip.Addr) string {
	t.Helper()
	cfg, err := pki.CredentialsServerTLS(Credentials(t, ca, pki.Request{Role: pki.Host, Name: name, ProviderAddresses: []netip.Addr{pa}}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- provider.ServeRemote(ctx, ln, cfg, provider.NewHandler(b)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("provider.ServeRemote: %v", err)
		}
	})
	return ln.Addr().String()
}

// Credentials issues a credential with ca as r asks and writes it to a
// fresh credentials directory, whose path it returns.
func Credentials(t testing.TB, ca *pki.CA, r pki.Request) string {
	t.Helper()
	_, cert, key, err := ca.IssueKey(r, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), string(r.Role)+"-"+r.Name)
	if err := pki.WriteCredentials(dir, ca.PEM, cert, key); err != nil {
		t.Fatal(err)
	}
	return dir
}

func drain(done chan error) error {
	select {
	case err := <-done:
		return err
	default:
		return nil
	}
}
