package hostagent_test

import (
	"context"
	"iter"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/wnv/wnv/hostagent"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

// slowPolicyServer places one VM on its host and answers at once, except
// Policy, which waits until release is closed: the read of a routing
// domain's policy is the slowest call to a real server.
type slowPolicyServer struct {
	vm      policyapi.VM
	release chan struct{}
}

func (s *slowPolicyServer) ReportLearned(_ context.Context, _ string, l policyapi.Learned) (policyapi.Learned, error) {
	return l, nil
}
func (s *slowPolicyServer) ForgetLearned(context.Context, string, policy.VSID, netip.Addr) error {
	return nil
}
func (s *slowPolicyServer) RegisterHost(_ context.Context, h policyapi.Host) (policyapi.Host, error) {
	return h, nil
}

func (s *slowPolicyServer) Heartbeat(_ context.Context, name string) (policyapi.Host, error) {
	return policyapi.Host{Name: name}, nil
}

func (s *slowPolicyServer) Policy(ctx context.Context, rd policy.GUID) (policyapi.Policy, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return policyapi.Policy{}, ctx.Err()
	}
	sub := policyapi.Subnet{VirtualSubnetID: s.vm.VirtualSubnetID, RoutingDomainID: rd, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}
	rec := policy.LookupRecord{CustomerAddress: s.vm.CustomerAddresses[0], VirtualSubnetID: s.vm.VirtualSubnetID, MACAddress: s.vm.MACAddress,
		ProviderAddress: s.vm.ProviderAddress, Rule: policy.TranslationMethodEncap, CustomerID: s.vm.CustomerID, VMName: s.vm.Name}
	route := policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: sub.VirtualSubnetID, DestinationPrefix: sub.Prefixes[0], CustomerID: s.vm.CustomerID}
	return policyapi.Policy{RoutingDomainID: rd, Subnets: []policyapi.Subnet{sub}, Records: []policy.LookupRecord{rec}, Routes: []policy.CustomerRoute{route}}, nil
}

func (s *slowPolicyServer) Lookup(context.Context, policy.VSID, netip.Addr) (policyapi.LookupAnswer, error) {
	return policyapi.LookupAnswer{}, &policy.Error{Kind: policy.ErrNotFound, Msg: "no record"}
}

func (s *slowPolicyServer) VM(_ context.Context, name string) (policyapi.VM, error) {
	if name != s.vm.Name {
		return policyapi.VM{}, &policy.Error{Kind: policy.ErrNotFound, Msg: "no VM " + name}
	}
	return s.vm, nil
}

func (s *slowPolicyServer) VMs(context.Context, policyapi.VMFilter) ([]policyapi.VM, error) {
	return []policyapi.VM{s.vm}, nil
}

func (s *slowPolicyServer) Gateways(context.Context) ([]policyapi.Gateway, error) {
	return nil, nil
}
func (s *slowPolicyServer) Subnet(context.Context, policy.VSID) (policyapi.Subnet, error) {
	return policyapi.Subnet{}, &policy.Error{Kind: policy.ErrNotFound, Msg: "no subnet"}
}

func (s *slowPolicyServer) RedirectKeys(context.Context, string) ([]policyapi.RedirectKey, error) {
	return nil, &policy.Error{Kind: policy.ErrNotFound, Msg: "no redirect keys"}
}

// WatchHost starts the stream and then stays quiet.
func (s *slowPolicyServer) WatchHost(ctx context.Context, _ int64, _ string, _ ...policy.GUID) iter.Seq2[policyapi.Event, error] {
	return func(yield func(policyapi.Event, error) bool) {
		if yield(policyapi.Event{Type: policyapi.EventProgress, Revision: 1}, nil) {
			<-ctx.Done()
		}
	}
}

// waitUntil waits for cond, failing the test with what after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// A VM placed on the host (a live migration's destination) gets its port
// while the policy of its routing domain is still being read; the policy's
// records follow once the read answers.
func TestThePortOfAPlacedVMDoesNotWaitForItsPolicy(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := &slowPolicyServer{release: make(chan struct{}), vm: policyapi.VM{
		Name: "blue2", MACAddress: packet.MAC{0x02, 0, 0, 0, 0x50, 0x02}, CustomerAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.11")},
		VirtualSubnetID: 5001, Host: "h1", RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-555555555555}"),
		CustomerID: policy.MustParseGUID("{66666666-7777-8888-9999-000000000000}"), ProviderAddress: netip.MustParseAddr("198.18.0.1")}}
	b := providertest.NewBackend()
	ag := hostagent.New(hostagent.Config{Host: "h1"}, srv, provider.NewClient(providertest.Serve(t, b)), filepath.Join(t.TempDir(), "no-notify.sock"))
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()

	waitUntil(t, 5*time.Second, "the port of blue2 attached while its routing domain's policy is being read", func() bool { return len(b.Ports()) == 1 })
	if recs := b.Store().LookupRecords(policy.LookupRecordFilter{}); len(recs) != 0 {
		t.Fatalf("records %v installed before the policy was read", recs)
	}
	close(srv.release)
	waitUntil(t, 5*time.Second, "blue2's record installed once the policy is read", func() bool {
		return len(b.Store().LookupRecords(policy.LookupRecordFilter{})) == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
