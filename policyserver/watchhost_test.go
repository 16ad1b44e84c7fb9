package policyserver

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/wnv/wnv/policyapi"
)

// A host agent watches the routing domains of its VMs and the VMs placed on
// or taken from its host, whatever their routing domain.
func TestWatchHostSeesItsVMsOfOtherRoutingDomains(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan policyapi.Event, 1024)
	go func() {
		for ev, err := range c.WatchHost(wctx, 0, "host1", rdBlue) {
			if err == nil {
				ch <- ev
			}
		}
	}()
	if ev := <-ch; ev.Type != policyapi.EventProgress {
		t.Fatalf("first event %+v", ev)
	}
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "red2", MACAddress: mac(2), VirtualSubnetID: 6001, Host: "host2", CustomerAddresses: []netip.Addr{addr("10.0.0.6")}}))
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "red1", MACAddress: mac(1), VirtualSubnetID: 6001, Host: "host1", CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))
	must(t)(c.MigrateVM(ctx, "red1", "host3"))
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue2", MACAddress: mac(3), VirtualSubnetID: 5001, Host: "host2", CustomerAddresses: []netip.Addr{addr("10.0.0.7")}}))
	var got []string
	for len(got) < 3 {
		ev := next(t, ch)
		if ev.Kind == policyapi.KindVM {
			got = append(got, ev.Name+" on "+ev.VM.Host)
		}
	}
	// red2 (another host, another routing domain) is filtered out.
	if want := []string{"red1 on host1", "red1 on host3", "blue2 on host2"}; !slices.Equal(got, want) {
		t.Fatalf("VM events %v, want %v", got, want)
	}
}
