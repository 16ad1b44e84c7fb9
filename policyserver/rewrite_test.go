package policyserver

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

var rdGreen = policy.MustParseGUID("{11111111-2222-3333-4444-000000000003}")

// natSubnet creates routing domain green with Nat subnet 7001
// (10.0.0.0/24 + fd00:0:0:7::/64, pools pool4 and fd01:7::/120) after
// provision, and the routing domain unless it exists.
func natSubnet(t *testing.T, c *policyclient.Client, pool4 string) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := c.RoutingDomain(ctx, rdGreen); err != nil {
		must(t)(c.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rdGreen, CustomerID: tenantA, Name: "green"}))
	}
	sn, err := c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 7001, RoutingDomainID: rdGreen, Rule: "nat",
		Prefixes:         []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00:0:0:7::/64")},
		ProviderPrefixes: []netip.Prefix{netip.MustParsePrefix(pool4), netip.MustParsePrefix("fd01:7::/120")}})
	if err != nil {
		t.Fatal(err)
	}
	if sn.Rule != policyapi.RuleNat {
		t.Fatalf("Rule = %q, want Nat", sn.Rule)
	}
}

func natVM(name string, i int, host string, cas ...string) policyapi.VM {
	vm := policyapi.VM{Name: name, MACAddress: mac(i), VirtualSubnetID: 7001, Host: host}
	for _, ca := range cas {
		vm.CustomerAddresses = append(vm.CustomerAddresses, addr(ca))
	}
	return vm
}

// TestRewriteAllocation: a VM in a Nat subnet gets a PA per CA, of the
// CA's family, from the subnet's pool; its records have Rule Nat and those
// PAs; the PAs stay with it across a migration, are freed when it is
// deleted (and can be given again), and a new server on the same etcd
// knows them (a restart gives no PA twice).
func TestRewriteAllocation(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	natSubnet(t, c, "198.18.64.0/30") // two host addresses
	ctx := ctxT(t)

	a, err := c.CreateVM(ctx, natVM("g1", 71, "host1", "10.0.0.5", "fd00:0:0:7::5"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.RewriteAddresses) != 2 || !netip.MustParsePrefix("198.18.64.0/30").Contains(a.RewriteAddresses[0].Addr()) ||
		a.RewriteAddresses[0].Bits() != 30 || !netip.MustParsePrefix("fd01:7::/120").Contains(a.RewriteAddresses[1].Addr()) {
		t.Fatalf("RewriteAddresses = %v, want one of 198.18.64.0/30 and one of fd01:7::/120", a.RewriteAddresses)
	}
	for _, pa := range a.RewriteAddresses {
		if pa.Addr() == pa.Masked().Addr() || pa.Addr() == addr("198.18.64.3") {
			t.Fatalf("PA %s is a network or broadcast address", pa)
		}
	}
	p, err := c.Policy(ctx, rdGreen)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range p.Records {
		if r.Rule != policy.TranslationMethodNat || r.ProviderAddress != a.RewriteAddresses[i].Addr() {
			t.Fatalf("record %d = %+v, want Rule Nat at PA %s", i, r, a.RewriteAddresses[i].Addr())
		}
	}

	// A restarted server (a new one on the same etcd) knows the allocated PA.
	srv := httptest.NewServer(NewHandler(NewStore(cli), quiet))
	t.Cleanup(srv.Close)
	c2 := policyclient.New(srv.URL, nil)
	t.Cleanup(c2.CloseIdleConnections)
	b, err := c2.CreateVM(ctx, natVM("g2", 72, "host2", "10.0.0.6"))
	if err != nil {
		t.Fatal(err)
	}
	if b.RewriteAddresses[0].Addr() == a.RewriteAddresses[0].Addr() {
		t.Fatalf("g2 got g1's PA %s", b.RewriteAddresses[0])
	}

	// The pool of two is full.
	_, err = c2.CreateVM(ctx, natVM("g3", 73, "host1", "10.0.0.7"))
	if err == nil || !strings.Contains(err.Error(), "198.18.64.0/30 of VirtualSubnetID 7001 is exhausted") {
		t.Fatalf("third VM in a pool of two: err = %v, want exhausted", err)
	}
	if _, err := c2.VM(ctx, "g3"); err == nil {
		t.Fatal("refused VM g3 exists")
	}

	// A migration keeps the PAs; the records stay Nat.
	m, err := c.MigrateVM(ctx, "g1", "host3")
	if err != nil {
		t.Fatal(err)
	}
	if m.ProviderAddress != addr("198.18.0.3") || fmt.Sprint(m.RewriteAddresses) != fmt.Sprint(a.RewriteAddresses) {
		t.Fatalf("migrated VM = %+v, want host3's PA and the same RewriteAddresses %v", m, a.RewriteAddresses)
	}

	// Delete frees the PA for the next VM.
	if err := c.DeleteVM(ctx, "g2"); err != nil {
		t.Fatal(err)
	}
	d, err := c.CreateVM(ctx, natVM("g3", 73, "host1", "10.0.0.7"))
	if err != nil {
		t.Fatalf("after deleting g2: %v", err)
	}
	if d.RewriteAddresses[0].Addr() != b.RewriteAddresses[0].Addr() {
		t.Fatalf("g3 got %s, want g2's freed PA %s", d.RewriteAddresses[0], b.RewriteAddresses[0])
	}
	// A host cannot register a PA a VM holds.
	_, err = c.RegisterHost(ctx, policyapi.Host{Name: "host9", ProviderAddresses: []netip.Addr{d.RewriteAddresses[0].Addr()}})
	if err == nil || !strings.Contains(err.Error(), "ProviderAddresses "+d.RewriteAddresses[0].Addr().String()) {
		t.Fatalf("host with a VM's PA: err = %v", err)
	}
	// After every VM is gone, the PA index holds only the hosts' PAs.
	for _, n := range []string{"g1", "g3"} {
		if err := c.DeleteVM(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range snapshot(t, cli) {
		if strings.HasPrefix(k, Prefix+"idx/pa/") && strings.HasPrefix(v, "vm/") {
			t.Errorf("PA %s still allocated to %s after its VM was deleted", k, v)
		}
	}
}

// TestRewriteConcurrentCreates: VMs created at once in one Nat subnet,
// through two servers, all get distinct PAs.
func TestRewriteConcurrentCreates(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	c2 := serve(t, cli)
	provision(t, c)
	natSubnet(t, c, "198.18.64.0/27") // 30 host addresses
	ctx := ctxT(t)
	const n = 24
	var wg sync.WaitGroup
	vms := make([]policyapi.VM, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			cl := []*policyclient.Client{c, c2}[i%2]
			vms[i], errs[i] = cl.CreateVM(ctx, natVM(fmt.Sprintf("g%d", i), 100+i, fmt.Sprintf("host%d", 1+i%3), fmt.Sprintf("10.0.0.%d", 10+i)))
		})
	}
	wg.Wait()
	seen := map[netip.Addr]string{}
	for i, vm := range vms {
		if errs[i] != nil {
			t.Fatalf("VM g%d: %v", i, errs[i])
		}
		pa := vm.RewriteAddresses[0].Addr()
		if o, dup := seen[pa]; dup {
			t.Fatalf("PA %s given to %s and %s", pa, o, vm.Name)
		}
		seen[pa] = vm.Name
	}
	p, err := c.Policy(ctx, rdGreen)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != n {
		t.Fatalf("%d records, want %d", len(p.Records), n)
	}
	for _, r := range p.Records {
		if seen[r.ProviderAddress] != r.VMName {
			t.Fatalf("record %+v: PA belongs to %q", r, seen[r.ProviderAddress])
		}
	}
}

// TestRewriteSubnetErrors: what a Nat subnet refuses, each with a one-line
// error naming the field, and a refusal leaves no subnet behind.
func TestRewriteSubnetErrors(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	must(t)(c.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rdGreen, CustomerID: tenantA, Name: "green"}))
	v4 := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	pp := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	for _, tc := range []struct {
		sn   policyapi.Subnet
		want string
	}{
		{policyapi.Subnet{Rule: "Nat", Prefixes: v4}, "ProviderPrefixes is empty but Rule is Nat"},
		{policyapi.Subnet{Rule: "Nat", Prefixes: v4, ProviderPrefixes: pp("fd01:7::/120")}, "ProviderPrefixes fd01:7::/120 is of the wrong family"},
		{policyapi.Subnet{Rule: "Nat", Prefixes: pp("10.0.0.0/24", "fd00::/64"), ProviderPrefixes: pp("198.18.64.0/24")}, "ProviderPrefixes has no IPv6 pool for Prefixes fd00::/64"},
		{policyapi.Subnet{Rule: "Nat", Prefixes: v4, ProviderPrefixes: pp("198.18.0.0/24")}, "ProviderPrefixes 198.18.0.0/24 holds PA 198.18.0.1 of host host1"},
		{policyapi.Subnet{Rule: "Nat", Prefixes: v4, ProviderPrefixes: pp("198.18.64.1/24")}, "ProviderPrefixes 198.18.64.1/24 has host bits set"},
		{policyapi.Subnet{Rule: "Nat", Prefixes: v4, ProviderPrefixes: pp("198.18.64.0/31")}, "ProviderPrefixes 198.18.64.0/31 is too small"},
		{policyapi.Subnet{Rule: "Nat", Prefixes: v4, ProviderPrefixes: pp("198.18.64.0/24", "198.18.65.0/24")}, "ProviderPrefixes 198.18.65.0/24 is a second IPv4 pool"},
		{policyapi.Subnet{Prefixes: v4, ProviderPrefixes: pp("198.18.64.0/24")}, "ProviderPrefixes 198.18.64.0/24 is given but Rule is Encap"},
		{policyapi.Subnet{Rule: "Rewrite", Prefixes: v4}, `Rule "Rewrite" is not supported`},
	} {
		tc.sn.VirtualSubnetID, tc.sn.RoutingDomainID = 7001, rdGreen
		_, err := c.CreateSubnet(ctx, tc.sn)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("CreateSubnet(%+v) = %v, want one line with %q", tc.sn, err, tc.want)
		}
	}
	if _, err := c.Subnet(ctx, 7001); err == nil {
		t.Fatal("a refused subnet exists")
	}

	natSubnet(t, c, "198.18.64.0/24")
	// A host may not register a PA inside a Nat pool.
	_, err := c.RegisterHost(ctx, policyapi.Host{Name: "host9", ProviderAddresses: []netip.Addr{addr("198.18.64.77")}})
	if err == nil || !strings.Contains(err.Error(), "ProviderAddresses 198.18.64.77 is in ProviderPrefixes 198.18.64.0/24 of VirtualSubnetID 7001") {
		t.Fatalf("host PA in a pool: err = %v", err)
	}
	// An L2Only VM cannot be a Nat VM.
	vm := natVM("g1", 1, "host1")
	vm.L2Only = true
	if _, err := c.CreateVM(ctx, vm); err == nil || !strings.Contains(err.Error(), "L2Only is set but VirtualSubnetID 7001 uses Rule Nat") {
		t.Fatalf("L2Only VM in a Nat subnet: err = %v", err)
	}
	// The rule of a subnet with VMs cannot change: there is no update, and
	// the subnet cannot be deleted (to recreate it) while it has VMs.
	must(t)(c.CreateVM(ctx, natVM("g1", 1, "host1", "10.0.0.5")))
	if err := c.DeleteSubnet(ctx, 7001); err == nil || !strings.Contains(err.Error(), "still has VM g1") {
		t.Fatalf("deleting a Nat subnet with a VM: err = %v", err)
	}
}

// TestFreeIn: the search wraps around the pool, skips the network and
// broadcast addresses, and reports a full pool.
func TestFreeIn(t *testing.T) {
	pool := netip.MustParsePrefix("10.9.0.0/29") // hosts .1 .. .6
	taken := map[netip.Addr]bool{}
	for range 6 {
		a, ok := freeIn(pool, "x", len(taken), func(a netip.Addr) bool { return taken[a] })
		if !ok || a.Compare(addr("10.9.0.1")) < 0 || a.Compare(addr("10.9.0.6")) > 0 || taken[a] {
			t.Fatalf("freeIn with %v taken = %s, %v", taken, a, ok)
		}
		taken[a] = true
	}
	if a, ok := freeIn(pool, "x", len(taken), func(a netip.Addr) bool { return taken[a] }); ok {
		t.Fatalf("full pool gave %s", a)
	}
	six := netip.MustParsePrefix("fd01::/64")
	if a, ok := freeIn(six, "y", 0, func(netip.Addr) bool { return false }); !ok || !six.Contains(a) || a == six.Addr() {
		t.Fatalf("IPv6 pool gave %s, %v", a, ok)
	}
}
