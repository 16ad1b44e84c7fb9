package vswitch

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/policy"
)

func TestFlowsRecordTheDecisionsTheyCache(t *testing.T) {
	sw, _ := host1(t)
	f := NewFlows()
	f.RecordDecisions()
	var r Result
	send := func(dstMAC [6]byte, dst string) {
		t.Helper()
		buf, n := udpFrame(dstMAC, macBlue1, "10.0.0.10", dst, 20, true)
		sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
	}
	send(macBlue2, "10.0.0.11")
	send(macBlue2, "10.0.0.11") // the same destination: decided once
	send(GatewayMAC, "10.0.1.10")
	send(macBlue2, "10.0.0.99") // no record: no decision
	got := f.Decided()
	want := []Decision{
		{Port: 0, Dst: netip.MustParseAddr("10.0.0.11"), Gen: sw.Generation(), Local: -1, MAC: macBlue2, Encap: policy.EncapNVGRE,
			VSID: 5001, SrcPA: pa1, DstPA: pa2, MaxLen: 1500 - 42 + 14},
		{Port: 0, Dst: netip.MustParseAddr("10.0.1.10"), Gen: sw.Generation(), Local: -1, MAC: macBlue3, Routed: true, SrcMAC: GatewayMAC, Encap: policy.EncapNVGRE,
			VSID: 5002, SrcPA: pa1, DstPA: pa3, MaxLen: 1500 - 42 + 14},
	}
	if len(got) != len(want) {
		t.Fatalf("decided %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("decision %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if d := f.Decided(); len(d) != 0 {
		t.Errorf("Decided again without new packets: %+v", d)
	}
	// A policy change makes a new generation; the next decision carries it.
	old := sw.Generation()
	sw.SetPolicy(labStore(t, pa1).Table())
	send(macBlue2, "10.0.0.11")
	if d := f.Decided(); len(d) != 1 || d[0].Gen == old || d[0].Gen != sw.Generation() {
		t.Errorf("after a policy change decided %+v, want one of generation %d (not %d)", d, sw.Generation(), old)
	}
}

func TestFlowsWithoutRecordingKeepNothing(t *testing.T) {
	sw, _ := host1(t)
	f := NewFlows()
	var r Result
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 20, true)
	sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
	if d := f.Decided(); len(d) != 0 {
		t.Errorf("decided %+v without RecordDecisions", d)
	}
}

func TestIngressMarksOnlyValidatedDeliveries(t *testing.T) {
	sw, _ := host1(t)
	ok := sw.FromUnderlay(pa2, pa1, encapFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"))
	if ok.Action != ToPort || !ok.Validated {
		t.Errorf("a valid packet: %v Validated=%v, want ToPort and Validated", ok.Action, ok.Validated)
	}
	bad := sw.FromUnderlay(pa3, pa1, encapFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"))
	if bad.Action != Drop || bad.Validated {
		t.Errorf("a packet from the wrong PA: %v Validated=%v, want a drop", bad.Action, bad.Validated)
	}
	// An egress verdict written into a Result that held a validated one
	// clears the mark.
	r := ok
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 20, true)
	sw.FromPortFlows(&r, NewFlows(), 0, buf, Headroom, n, 0, scratch())
	if r.Validated {
		t.Error("an egress verdict kept Validated")
	}
}

// A host with two PAs sends a VM's packets from the PA of the VM's own
// record, which the receiver checks the inner source against: in the
// general path, the cached path and the decision a fast path installs.
func TestSourcePAIsTheSendersRecords(t *testing.T) {
	sw, _ := host1(t)
	other := netip.MustParseAddr("198.18.0.9")
	st := labStore(t, pa1)
	if _, err := st.AddProviderAddress(policy.ProviderAddress{ProviderAddress: other, PrefixLength: 15, AddressState: policy.AddressPreferred}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.10")}, VirtualSubnetID: []policy.VSID{5001}},
		policy.LookupRecordChange{ProviderAddress: &other}); err != nil {
		t.Fatal(err)
	}
	sw.SetPolicy(st.Table())
	f := NewFlows()
	f.RecordDecisions()
	for i := range 2 { // decided, then from the cache
		var r Result
		buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 20, true)
		sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
		if r.Action != ToUnderlay || r.Src != other || r.Dst != pa2 {
			t.Fatalf("packet %d: %v %v %s->%s, want from %s (blue1's record) to %s", i, r.Action, r.Reason, r.Src, r.Dst, other, pa2)
		}
	}
	// blue1's IPv6 CA still maps to pa1, but an IPv4 packet comes from an
	// IPv4 CA (the kernel checks its source by family): the decision holds
	// for the port's IPv4 CAs, which all leave from other.
	if d := f.Decided(); len(d) != 1 || d[0].SrcPA != other {
		t.Errorf("decided %+v, want one from %s", d, other)
	}
	// A second IPv4 CA without a record of its own leaves from pa1: the
	// port's IPv4 CAs leave from two PAs, so no decision for the kernel,
	// which cannot tell them apart.
	sw.SetPorts(must(NewPortTable([]PortConfig{
		{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10", "10.0.0.12", "fd00:0:0:1::10")},
		{Index: 1, Name: "red1", MAC: macRed1, VSID: 6001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")},
	})))
	var r Result
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 20, true)
	sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
	if r.Action != ToUnderlay || r.Src != other {
		t.Fatalf("%v %v from %s, want from %s", r.Action, r.Reason, r.Src, other)
	}
	if d := f.Decided(); len(d) != 0 {
		t.Errorf("decided %+v for a port whose IPv4 CAs leave from different PAs, want none", d)
	}
}
