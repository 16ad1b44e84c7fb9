package hostagent

import (
	"bytes"
	"context"
	"iter"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
)

// The driver against in-memory fakes of the policy server and wnvd: the
// whole agent runs without root.

type fakeServer struct {
	mu       sync.Mutex
	vms      []policyapi.VM
	gateways []policyapi.Gateway
	policies map[policy.GUID]policyapi.Policy
	keys     []policyapi.RedirectKey
	keyCalls int
	events   chan policyapi.Event
	// oldWatch: a server older than the watch's host filter.
	oldWatch bool
}

func (s *fakeServer) RegisterHost(_ context.Context, h policyapi.Host) (policyapi.Host, error) {
	return h, nil
}
func (s *fakeServer) Heartbeat(_ context.Context, name string) (policyapi.Host, error) {
	return policyapi.Host{Name: name}, nil
}
func (s *fakeServer) Policy(_ context.Context, rd policy.GUID) (policyapi.Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.policies[rd]
	if !ok {
		return p, errNotFound
	}
	return p, nil
}
func (s *fakeServer) Lookup(context.Context, policy.VSID, netip.Addr) (policyapi.LookupAnswer, error) {
	return policyapi.LookupAnswer{}, errNotFound
}
func (s *fakeServer) VM(_ context.Context, name string) (policyapi.VM, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, vm := range s.vms {
		if vm.Name == name {
			return vm, nil
		}
	}
	return policyapi.VM{}, errNotFound
}
func (s *fakeServer) VMs(_ context.Context, f policyapi.VMFilter) ([]policyapi.VM, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []policyapi.VM
	for _, vm := range s.vms {
		if vm.Host == f.Host {
			out = append(out, vm)
		}
	}
	return out, nil
}
func (s *fakeServer) Gateways(context.Context) ([]policyapi.Gateway, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.gateways), nil
}
func (s *fakeServer) Subnet(context.Context, policy.VSID) (policyapi.Subnet, error) {
	return policyapi.Subnet{}, errNotFound
}
func (s *fakeServer) WatchHost(ctx context.Context, rev int64, host string, _ ...policy.GUID) iter.Seq2[policyapi.Event, error] {
	return func(yield func(policyapi.Event, error) bool) {
		if s.oldWatch && host != "" {
			yield(policyapi.Event{}, &policy.Error{Kind: policy.ErrInvalid, Msg: `unknown query parameter "host": use rev`})
			return
		}
		if !yield(policyapi.Event{Type: policyapi.EventProgress, Revision: max(rev, 10)}, nil) {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-s.events:
				if !yield(ev, nil) {
					return
				}
			}
		}
	}
}
func (s *fakeServer) ReportLearned(_ context.Context, _ string, l policyapi.Learned) (policyapi.Learned, error) {
	return l, nil
}
func (s *fakeServer) ForgetLearned(context.Context, string, policy.VSID, netip.Addr) error {
	return nil
}
func (s *fakeServer) RedirectKeys(context.Context, string) ([]policyapi.RedirectKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keyCalls++
	return s.keys, nil
}

// fakeWnvd is wnvd's provider API over a real policy store.
type fakeWnvd struct {
	mu      sync.Mutex
	store   *policy.Store
	ports   map[string]provider.Port
	applies int
	keys    []provider.RedirectKey
	noKeys  bool // an older wnvd: PUT /v1/redirect-keys is not found
}

func (w *fakeWnvd) AddProviderAddress(_ context.Context, a policy.ProviderAddress) (policy.ProviderAddress, error) {
	return w.store.AddProviderAddress(a)
}
func (w *fakeWnvd) ProviderAddresses(_ context.Context, f policy.ProviderAddressFilter) ([]policy.ProviderAddress, error) {
	return w.store.ProviderAddresses(f), nil
}
func (w *fakeWnvd) RemoveProviderAddresses(_ context.Context, f policy.ProviderAddressFilter) ([]policy.ProviderAddress, error) {
	return w.store.RemoveProviderAddresses(f)
}
func (w *fakeWnvd) Ports(context.Context) ([]provider.Port, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []provider.Port
	for _, p := range w.ports {
		out = append(out, p)
	}
	return out, nil
}
func (w *fakeWnvd) LookupRecords(_ context.Context, f policy.LookupRecordFilter) ([]policy.LookupRecord, error) {
	return w.store.LookupRecords(f), nil
}
func (w *fakeWnvd) CustomerRoutes(_ context.Context, f policy.CustomerRouteFilter) ([]policy.CustomerRoute, error) {
	return w.store.CustomerRoutes(f), nil
}
func (w *fakeWnvd) VirtualSubnets(_ context.Context, f policy.VirtualSubnetFilter) ([]policy.VirtualSubnet, error) {
	return w.store.VirtualSubnets(f), nil
}
func (w *fakeWnvd) AddVirtualSubnet(_ context.Context, v policy.VirtualSubnet) (policy.VirtualSubnet, error) {
	return w.store.AddVirtualSubnet(v)
}
func (w *fakeWnvd) SetVirtualSubnets(_ context.Context, f policy.VirtualSubnetFilter, ch policy.VirtualSubnetChange) ([]policy.VirtualSubnet, error) {
	return w.store.SetVirtualSubnets(f, ch)
}
func (w *fakeWnvd) Apply(_ context.Context, b policy.Batch) error {
	w.mu.Lock()
	w.applies++
	w.mu.Unlock()
	return w.store.Apply(b)
}
func (w *fakeWnvd) AttachPort(_ context.Context, spec provider.PortSpec) (provider.Port, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := provider.Port{PortSpec: spec}
	w.ports[spec.Name] = p
	return p, nil
}
func (w *fakeWnvd) DetachPort(_ context.Context, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.ports, name)
	return nil
}
func (w *fakeWnvd) DetachMigratedPort(ctx context.Context, name string) error {
	return w.DetachPort(ctx, name)
}
func (w *fakeWnvd) SetRedirectKeys(_ context.Context, keys []provider.RedirectKey) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.noKeys {
		return 0, errNotFound
	}
	w.keys = keys
	return len(keys), nil
}

// logBuffer is a slog destination safe for the agent's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func runAgent(t *testing.T, s *fakeServer, w *fakeWnvd) *logBuffer {
	t.Helper()
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	a := New(Config{Host: "h1", ProviderAddresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/15")},
		Log: slog.New(slog.NewTextHandler(logs, nil))}, s, w, filepath.Join(t.TempDir(), "no-notify.sock"))
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	return logs
}

func TestTheAgentInstallsARoutingDomainInOneProviderCallAndHandsOverItsKeys(t *testing.T) {
	recs := []policy.LookupRecord{rec(rd1, 10, "198.18.0.1"), rec(rd1, 11, "198.18.0.2"), rec(rd1, 12, "198.18.0.3")}
	keys := []policyapi.RedirectKey{{LocalPA: netip.MustParseAddr("198.18.0.1"), PeerPA: netip.MustParseAddr("198.18.0.2"), Key: make([]byte, 32)}}
	s := &fakeServer{vms: []policyapi.VM{vm("a", rd1, "h1", 10)}, policies: map[policy.GUID]policyapi.Policy{rd1: pol(rd1, 10, recs...)},
		keys: keys, events: make(chan policyapi.Event)}
	w := &fakeWnvd{store: policy.NewStore(), ports: map[string]provider.Port{}}
	runAgent(t, s, w)
	waitFor(t, "the routing domain installed and the port attached", func() bool {
		_, err := w.Port("a")
		return len(w.store.LookupRecords(policy.LookupRecordFilter{})) == 3 && err == nil
	})
	w.mu.Lock()
	applies := w.applies
	w.mu.Unlock()
	if applies != 1 {
		t.Errorf("a route and 3 records took %d provider calls, want 1", applies)
	}
	waitFor(t, "the redirect keys handed to wnvd", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.keys) == len(keys) && len(keys) > 0 && w.keys[0].PeerPA == keys[0].PeerPA && bytes.Equal(w.keys[0].Key[:], keys[0].Key)
	})
}

func TestAServerWithoutTheHostFilterIsWatchedWhole(t *testing.T) {
	s := &fakeServer{vms: []policyapi.VM{vm("a", rd1, "h1", 10)}, policies: map[policy.GUID]policyapi.Policy{rd1: pol(rd1, 10, rec(rd1, 10, "198.18.0.1"))},
		events: make(chan policyapi.Event), oldWatch: true}
	w := &fakeWnvd{store: policy.NewStore(), ports: map[string]provider.Port{}}
	logs := runAgent(t, s, w)
	waitFor(t, "the routing domain installed", func() bool { return len(w.store.LookupRecords(policy.LookupRecordFilter{})) == 1 })
	if n := logs.count("does not filter watches by host"); n != 1 {
		t.Errorf("the fallback logged %d times, want once", n)
	}
}

func TestAnOlderWnvdWithoutRedirectKeysIsLoggedOnce(t *testing.T) {
	s := &fakeServer{policies: map[policy.GUID]policyapi.Policy{}, keys: []policyapi.RedirectKey{}, events: make(chan policyapi.Event)}
	w := &fakeWnvd{store: policy.NewStore(), ports: map[string]provider.Port{}, noKeys: true}
	logs := runAgent(t, s, w)
	const said = "wnvd takes no redirect keys"
	waitFor(t, "the missing endpoint logged", func() bool { return logs.count(said) == 1 })
	// Hosts come: the keys are fetched again (once for events that come
	// together), not pushed, not logged.
	for i := range 2 {
		s.events <- policyapi.Event{Type: policyapi.EventPut, Kind: policyapi.KindHost, Revision: int64(11 + i), Name: "h2"}
	}
	waitFor(t, "the keys fetched after the host events", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.keyCalls >= 2
	})
	if n := logs.count(said); n != 1 {
		t.Errorf("logged %d times, want once", n)
	}
}

func (w *fakeWnvd) Port(name string) (provider.Port, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.ports[name]
	if !ok {
		return p, errNotFound
	}
	return p, nil
}
