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
	"github.com/wnv/wnv/policyserver"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

// slowPolicyServer places one VM on its host and answers at once, except
// Policy, which waits until release is closed: the read of a routing
// domain's policy is the slowest call to a real server.
type slowPolicyServer struct {
	vm      policyserver.VM
	release chan struct{}
}

func (s *slowPolicyServer) RegisterHost(_ context.Context, h policyserver.Host) (policyserver.Host, error) {
	return h, nil
}

func (s *slowPolicyServer) Heartbeat(_ context.Context, name string) (policyserver.Host, error) {
	return policyserver.Host{Name: name}, nil
}

func (s *slowPolicyServer) Policy(ctx context.Context, rd policy.GUID) (policyserver.Policy, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return policyserver.Policy{}, ctx.Err()
	}
	sub := policyserver.Subnet{VirtualSubnetID: s.vm.VirtualSubnetID, RoutingDomainID: rd, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}
	return policyserver.Policy{RoutingDomainID: rd, Subnets: []policyserver.Subnet{sub}, Records: policyserver.RecordsFor(&s.vm), Routes: policyserver.RoutesFor(&sub)}, nil
}

func (s *slowPolicyServer) Lookup(context.Context, policy.VSID, netip.Addr) (policyserver.LookupAnswer, error) {
	return policyserver.LookupAnswer{}, &policy.Error{Kind: policy.ErrNotFound, Msg: "no record"}
}

func (s *slowPolicyServer) VM(_ context.Context, name string) (policyserver.VM, error) {
	if name != s.vm.Name {
		return policyserver.VM{}, &policy.Error{Kind: policy.ErrNotFound, Msg: "no VM " + name}
	}
	return s.vm, nil
}

func (s *slowPolicyServer) VMs(context.Context, policyserver.VMFilter) ([]policyserver.VM, error) {
	return []policyserver.VM{s.vm}, nil
}

func (s *slowPolicyServer) Subnet(context.Context, policy.VSID) (policyserver.Subnet, error) {
	return policyserver.Subnet{}, &policy.Error{Kind: policy.ErrNotFound, Msg: "no subnet"}
}

// Watch starts the stream and then stays quiet.
func (s *slowPolicyServer) Watch(ctx context.Context, _ int64, _ ...policy.GUID) iter.Seq2[policyserver.Event, error] {
	return func(yield func(policyserver.Event, error) bool) {
		if yield(policyserver.Event{Type: policyserver.EventProgress, Revision: 1}, nil) {
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
	srv := &slowPolicyServer{release: make(chan struct{}), vm: policyserver.VM{
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
