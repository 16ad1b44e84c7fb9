package hostagent_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// TestL2OnlyVMLearnedOnEveryHost: with the policy server, L2Only VM l on h1
// configures its own CA; h1 learns it, the agent reports it, and h2 gets
// its Dynamic record from the watch, so b on h2 reaches it by IP.
func TestL2OnlyVMLearnedOnEveryHost(t *testing.T) {
	ctx := t.Context()
	tb := newTestbedPrefix(t, "wlr")
	tb.addHost("h1")
	tb.addHost("h2")
	tb.addVM("l", "h1", 0x0a)
	tb.addVM("b", "h2", 0x0b)
	tb.startHost("h1", "198.18.0.1/15")
	tb.startHost("h2", "198.18.0.2/15")
	tb.blueNetwork(ctx)
	tb.waitHosts(ctx, "h1", "h2")
	_, err := tb.server.CreateVM(ctx, policyapi.VM{Name: "l", MACAddress: [6]byte{0x02, 0x15, 0x5d, 0, 0, 0x0a}, VirtualSubnetID: 5001, Host: "h1", L2Only: true})
	must(t, err)
	tb.createVM(ctx, "b", "h2", 0x0b, "10.0.0.11")
	tb.configureVM("l", netip.MustParsePrefix("10.0.0.10/24"))
	tb.configureVM("b", netip.MustParsePrefix("10.0.0.11/24"))
	tb.echo("b")
	tb.echo("l")
	tb.waitEcho("l reaches b", tb.prober("l", netip.MustParseAddr("10.0.0.11")))
	for _, h := range []string{"h1", "h2"} {
		tb.eventually(h+" has l's learned record", 30*time.Second, func() error {
			recs, err := tb.provider(h).LookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.10")}})
			if err != nil {
				return err
			}
			if len(recs) != 1 || recs[0].Type != policy.Dynamic || recs[0].Unsynchronized || recs[0].ProviderAddress != netip.MustParseAddr("198.18.0.1") {
				return fmt.Errorf("records %+v, want l's Dynamic record at 198.18.0.1, synchronized", recs)
			}
			return nil
		})
	}
	tb.waitEcho("b reaches l by its learned CA", tb.prober("b", netip.MustParseAddr("10.0.0.10")))
}
