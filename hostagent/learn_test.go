package hostagent

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// TestLearnedCAReportedAndKept: a CA the host learned on an L2Only VM's port
// is reported to the policy server and stays installed (not removed as
// unknown to the server) until the server's record, from the watch,
// confirms it; a forgotten CA is reported too; a port's own CA is not.
func TestLearnedCAReportedAndKept(t *testing.T) {
	h := newHarness(t)
	v := vm("a", rd1, "h1", 10)
	v.L2Only = true
	h.vms = []policyapi.VM{v}
	l2 := rec(rd1, 10, "198.18.0.1")
	l2.CustomerAddress, l2.Type, l2.VMName = netip.IPv4Unspecified(), policy.L2Only, "a"
	h.policies[rd1] = pol(rd1, 5, rec(rd1, 10, "198.18.0.1"), l2)
	h.start()

	learned := policyapi.Learned{VirtualSubnetID: vsidOf(rd1), CustomerAddress: ca(rd1, 77), MACAddress: v.MACAddress, ProviderAddress: l2.ProviderAddress}
	r := learnedRecord(v, learned)
	if _, err := h.host.store.AddLookupRecord(r); err != nil { // what wnvd does
		t.Fatal(err)
	}
	h.step(CALearned{VSID: learned.VirtualSubnetID, CA: learned.CustomerAddress, PA: learned.ProviderAddress, MAC: learned.MACAddress})
	h.step(CALearned{VSID: learned.VirtualSubnetID, CA: ca(rd1, 10), PA: learned.ProviderAddress, MAC: learned.MACAddress}) // the port's own
	var reported []policyapi.Learned
	h.m.dirty = true
	for _, rd := range h.settle() {
		reported = append(reported, rd.Report...)
	}
	if len(reported) != 1 || reported[0] != learned {
		t.Fatalf("reported %+v, want %+v only", reported, learned)
	}
	got := h.host.store.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{learned.CustomerAddress}})
	if len(got) != 1 || !got[0].Unsynchronized {
		t.Fatalf("the learned record after reconciling: %+v, want it kept, Unsynchronized", got)
	}
	// The server's record arrives: it replaces the host's and confirms it.
	srv := r
	srv.Unsynchronized = false
	h.step(WatchEvent{Gen: h.watch.Gen, Event: policyapi.Event{Type: policyapi.EventPut, Kind: policyapi.KindLearned, Revision: 20, RoutingDomainID: rd1,
		Records: []policy.LookupRecord{srv}}})
	h.settle()
	got = h.host.store.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{learned.CustomerAddress}})
	if len(got) != 1 || got[0].Unsynchronized || got[0].Type != policy.Dynamic {
		t.Fatalf("after the server's record: %+v, want it synchronized", got)
	}
	h.step(CALearned{VSID: learned.VirtualSubnetID, CA: learned.CustomerAddress, PA: learned.ProviderAddress, MAC: learned.MACAddress, Forgot: true})
	if rd := h.ready(); len(rd.Forget) != 1 || rd.Forget[0] != learned {
		t.Errorf("forget %+v, want %+v", rd.Forget, learned)
	}
}
