package hostagent

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
)

func (f *fakeHost) pas() []netip.Addr {
	var out []netip.Addr
	for _, p := range f.store.ProviderAddresses(policy.ProviderAddressFilter{}) {
		out = append(out, p.ProviderAddress)
	}
	sortAddrs(out)
	return out
}

// TestNatVMsPAsFollowTheVM: the PA of each CA of a Nat VM placed here is
// configured on the host, with its pool's prefix length; it is removed when the VM migrates away or is deleted,
// also when the agent only learns of it after a restart (a PA in the pool
// of a Nat subnet it holds); the host's own PA and one outside every pool
// are never touched.
func TestNatVMsPAsFollowTheVM(t *testing.T) {
	own, foreign := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("203.0.113.9")
	pool := netip.MustParsePrefix("198.18.64.0/24")
	a, b := vm("a", rd1, "h1", 10), vm("b", rd1, "h1", 11)
	a.RewriteAddresses = []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("198.18.64.10"), 24)}
	b.RewriteAddresses = []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("198.18.64.11"), 24)}
	p := pol(rd1, 10)
	p.Subnets[0].Rule, p.Subnets[0].ProviderPrefixes = policyapi.RuleNat, []netip.Prefix{pool}

	h := newHarness(t)
	h.vms = []policyapi.VM{a, b}
	h.policies[rd1] = p
	h.host.ifaces["a"], h.host.ifaces["b"] = true, true
	for _, pa := range []policy.ProviderAddress{{ProviderAddress: own, PrefixLength: 24}, {ProviderAddress: foreign, PrefixLength: 24},
		// Left over from a VM deleted while the agent was down.
		{ProviderAddress: netip.MustParseAddr("198.18.64.99"), PrefixLength: 24}} {
		if _, err := h.host.store.AddProviderAddress(pa); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	want := []netip.Addr{own, netip.MustParseAddr("198.18.64.10"), netip.MustParseAddr("198.18.64.11"), foreign}
	if got := h.host.pas(); !reflect.DeepEqual(got, want) {
		t.Fatalf("host PAs %v, want %v", got, want)
	}
	got := h.host.store.ProviderAddresses(policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{a.RewriteAddresses[0].Addr()}})
	if len(got) != 1 || got[0].PrefixLength != 24 {
		t.Fatalf("VM a's PA on the host: %+v, want prefix length 24", got)
	}

	// a migrates away; b is deleted.
	moved := a
	moved.Host = "h2"
	h.put(moved, &a, 11)
	h.step(WatchEvent{Gen: h.watch.Gen, Event: policyapi.Event{Type: policyapi.EventDelete, Kind: policyapi.KindVM, Revision: 12, Name: "b", RoutingDomainID: rd1, PrevVM: &b}})
	h.vms = []policyapi.VM{moved}
	h.settle()
	if got, want := h.host.pas(), []netip.Addr{own, foreign}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the VMs left, host PAs %v, want %v", got, want)
	}
}

// TestAMigratedVMsPAFoundDuplicateIsAddedAgain: the new host adds the PA
// while the old host still has it, so detection marks it Duplicate; the
// agent keeps looking every InterfaceRetry, removes and adds it again
// (detection runs again) and stops once the PA is usable.
func TestAMigratedVMsPAFoundDuplicateIsAddedAgain(t *testing.T) {
	pa := netip.MustParseAddr("198.18.64.10")
	a := vm("a", rd1, "h1", 10)
	a.RewriteAddresses = []netip.Prefix{netip.PrefixFrom(pa, 24)}
	p := pol(rd1, 10)
	p.Subnets[0].Rule, p.Subnets[0].ProviderPrefixes = policyapi.RuleNat, []netip.Prefix{netip.MustParsePrefix("198.18.64.0/24")}
	h := newHarness(t)
	h.vms = []policyapi.VM{a}
	h.policies[rd1] = p
	h.host.ifaces["a"] = true
	h.start()
	// Detection found the old host's copy.
	if err := h.host.store.SetAddressState(pa, policy.AddressDuplicate); err != nil {
		t.Fatal(err)
	}
	adds := func(rs []Ready) (n int) {
		for _, r := range rs {
			if r.Apply != nil && slices.ContainsFunc(r.Apply.AddPAs, func(x policy.ProviderAddress) bool { return x.ProviderAddress == pa }) {
				if !slices.Contains(r.Apply.RemovePAs, pa) {
					t.Fatalf("PA %s added again without being removed first: %+v", pa, *r.Apply)
				}
				n++
			}
		}
		return n
	}
	h.now = h.now.Add(time.Second)
	if n := adds(h.settle()); n != 1 {
		t.Fatalf("the Duplicate PA was added again %d times, want once", n)
	}
	// Still the old host's: detection fails again, and is tried again.
	if err := h.host.store.SetAddressState(pa, policy.AddressDuplicate); err != nil {
		t.Fatal(err)
	}
	h.now = h.now.Add(time.Second)
	if n := adds(h.settle()); n != 1 {
		t.Fatalf("the PA, Duplicate again, was added again %d times, want once", n)
	}
	// Now the old host let it go.
	if err := h.host.store.SetAddressState(pa, policy.AddressPreferred); err != nil {
		t.Fatal(err)
	}
	h.now = h.now.Add(time.Second)
	h.settle()
	h.now = h.now.Add(time.Second)
	if rs := h.settle(); len(rs) != 0 {
		t.Fatalf("the agent keeps looking at a usable PA: %+v", rs)
	}
	if !h.m.paRecheck.IsZero() {
		t.Fatalf("a recheck is still due at %v", h.m.paRecheck)
	}
}

// TestTheAgentConfiguresItsNatVMsPAs runs the whole agent (driver and
// model) against the fakes: a Nat VM placed on the host gets its PAs on
// the host's wnvd, IPv4 and IPv6 with their pools' lengths, next to the
// host's own PA, and its Nat records are installed.
func TestTheAgentConfiguresItsNatVMsPAs(t *testing.T) {
	a := vm("a", rd1, "h1", 10)
	a.RewriteAddresses = []netip.Prefix{netip.MustParsePrefix("198.18.64.10/24"), netip.MustParsePrefix("fd01:64::a/64")}
	r := rec(rd1, 10, "198.18.64.10")
	r.Rule = policy.TranslationMethodNat
	p := pol(rd1, 10, r)
	p.Subnets[0].Rule, p.Subnets[0].ProviderPrefixes = policyapi.RuleNat, []netip.Prefix{netip.MustParsePrefix("198.18.64.0/24"), netip.MustParsePrefix("fd01:64::/64")}
	s := &fakeServer{vms: []policyapi.VM{a}, policies: map[policy.GUID]policyapi.Policy{rd1: p}, events: make(chan policyapi.Event)}
	w := &fakeWnvd{store: policy.NewStore(), ports: map[string]provider.Port{}}
	runAgent(t, s, w)
	waitFor(t, "VM a's PAs on the host", func() bool {
		return len(w.store.ProviderAddresses(policy.ProviderAddressFilter{})) == 3
	})
	for _, p := range append([]netip.Prefix{netip.MustParsePrefix("198.18.0.1/15")}, a.RewriteAddresses...) {
		got := w.store.ProviderAddresses(policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{p.Addr()}})
		if len(got) != 1 || int(got[0].PrefixLength) != p.Bits() {
			t.Errorf("PA %v on the host: %+v", p, got)
		}
	}
	waitFor(t, "VM a's Nat record", func() bool {
		recs := w.store.LookupRecords(policy.LookupRecordFilter{})
		return len(recs) == 1 && recs[0].Rule == policy.TranslationMethodNat
	})
}
