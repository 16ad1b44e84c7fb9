package policyserver

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// TestLearnedCAs: a host reports a CA learned on its L2Only VM; the routing
// domain's policy and watch carry its Dynamic record; reports that are not
// the host's own to make, or that claim a Static CA, are refused; forgetting
// and deleting the VM remove it.
func TestLearnedCAs(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "l2", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1", L2Only: true}))
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "static", MACAddress: mac(2), VirtualSubnetID: 5001, Host: "host2", CustomerAddresses: []netip.Addr{addr("10.0.0.6")}}))
	p, err := c.Policy(ctx, rdBlue)
	if err != nil {
		t.Fatal(err)
	}
	l2 := 0
	for _, r := range p.Records {
		if r.Type == policy.L2Only && r.MACAddress == mac(1) && r.ProviderAddress == addr("198.18.0.1") {
			l2++
		}
	}
	if l2 != 2 {
		t.Fatalf("policy records %+v, want the L2Only VM's two L2Only records", p.Records)
	}
	events := make(chan policyapi.Event, 16)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for ev, err := range c.WatchHost(wctx, p.Revision, "host2", rdBlue) {
			if err != nil {
				return
			}
			if ev.Kind == policyapi.KindLearned {
				events <- ev
			}
		}
	}()

	l := policyapi.Learned{VirtualSubnetID: 5001, CustomerAddress: addr("10.0.0.5"), MACAddress: mac(1), ProviderAddress: addr("198.18.0.1")}
	got, err := c.ReportLearned(ctx, "host1", l)
	if err != nil || got.Host != "host1" || got.VMName != "l2" || got.RoutingDomainID != rdBlue {
		t.Fatalf("ReportLearned = %+v, %v", got, err)
	}
	want := policy.LookupRecord{CustomerAddress: addr("10.0.0.5"), VirtualSubnetID: 5001, MACAddress: mac(1), ProviderAddress: addr("198.18.0.1"),
		Rule: policy.TranslationMethodEncap, Type: policy.Dynamic, CustomerID: tenantA, VMName: "l2"}
	ev := <-events
	if ev.Type != policyapi.EventPut || len(ev.Records) != 1 || ev.Records[0] != want {
		t.Fatalf("watch event %+v, want a put of %+v", ev, want)
	}
	p, _ = c.Policy(ctx, rdBlue)
	found := false
	for _, r := range p.Records {
		found = found || r == want
	}
	if !found {
		t.Errorf("policy records %+v lack %+v", p.Records, want)
	}
	if ans, err := c.Lookup(ctx, 5001, addr("10.0.0.5")); err != nil || ans.Record != want {
		t.Errorf("Lookup = %+v, %v, want %+v", ans, err, want)
	}

	for _, bad := range []struct {
		host string
		l    policyapi.Learned
		kind error
	}{
		{"host2", l, policy.ErrForbidden}, // not host2's VM
		{"host1", policyapi.Learned{VirtualSubnetID: 5001, CustomerAddress: addr("10.0.0.7"), MACAddress: mac(1), ProviderAddress: addr("198.18.0.2")}, policy.ErrForbidden}, // not host1's PA
		{"host2", policyapi.Learned{VirtualSubnetID: 5001, CustomerAddress: addr("10.0.0.7"), MACAddress: mac(2), ProviderAddress: addr("198.18.0.2")}, policy.ErrForbidden}, // not an L2Only VM
		{"host1", policyapi.Learned{VirtualSubnetID: 5001, CustomerAddress: addr("10.0.0.6"), MACAddress: mac(1), ProviderAddress: addr("198.18.0.1")}, policy.ErrExists},    // Static CA
		{"host1", policyapi.Learned{VirtualSubnetID: 5001, CustomerAddress: addr("10.9.0.6"), MACAddress: mac(1), ProviderAddress: addr("198.18.0.1")}, policy.ErrInvalid},   // outside the subnet
	} {
		if _, err := c.ReportLearned(ctx, bad.host, bad.l); !errors.Is(err, bad.kind) {
			t.Errorf("ReportLearned(%s, %+v) = %v, want %v", bad.host, bad.l, err, bad.kind)
		}
	}

	if err := c.ForgetLearned(ctx, "host2", 5001, addr("10.0.0.5")); !errors.Is(err, policy.ErrNotFound) {
		t.Errorf("host2 forgetting host1's CA: %v, want not found", err)
	}
	if err := c.ForgetLearned(ctx, "host1", 5001, addr("10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Type != policyapi.EventDelete || len(ev.PrevRecords) != 1 || ev.PrevRecords[0] != want {
		t.Errorf("watch event %+v, want a delete of %+v", ev, want)
	}
	must(t)(c.ReportLearned(ctx, "host1", l))
	<-events
	if err := c.DeleteVM(ctx, "l2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, 5001, addr("10.0.0.5")); !errors.Is(err, policy.ErrNotFound) {
		t.Errorf("after the VM is deleted, Lookup of its learned CA: %v, want not found", err)
	}
}
