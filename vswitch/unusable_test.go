package vswitch

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// The switch never uses an Unusable record: one with Rule Nat at a PA that
// other VMs' records use (IP Rewrite needs a PA per CA) is neither answered
// for nor sent to until it becomes usable.
func TestUnusableRecordsAreNotUsed(t *testing.T) {
	s := labStore(t, pa1)
	ca, mac := netip.MustParseAddr("10.0.0.77"), packet.MAC{2, 0, 0, 0, 0x50, 0x77}
	if _, err := s.AddLookupRecord(policy.LookupRecord{CustomerAddress: ca, VirtualSubnetID: 5001, MACAddress: mac,
		ProviderAddress: pa2, Rule: policy.TranslationMethodNat}); err != nil {
		t.Fatal(err)
	}
	other := packet.MAC{2, 0, 0, 0, 0x50, 0x78}
	if _, err := s.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr("10.0.0.78"), VirtualSubnetID: 5001, MACAddress: other,
		ProviderAddress: pa2, Rule: policy.TranslationMethodNat}); err != nil {
		t.Fatal(err)
	}
	sw, _ := host1(t)
	try := func() (arp, udp Result) {
		sw.SetPolicy(s.Table())
		buf := make([]byte, Headroom+64)
		n := packet.PutEthernet(buf[Headroom:], packet.Broadcast, macBlue1, packet.EtherTypeARP)
		n += packet.PutARP(buf[Headroom+n:], packet.ARPRequest, macBlue1, netip.MustParseAddr("10.0.0.10"), packet.MAC{}, ca)
		arp = sw.FromPort(0, buf, Headroom, n, scratch())
		buf, n = udpFrame(mac, macBlue1, "10.0.0.10", ca.String(), 10, true)
		return arp, sw.FromPort(0, buf, Headroom, n, scratch())
	}
	if arp, udp := try(); arp.Reason != ReasonARPUnknownTarget || udp.Reason != ReasonNoLookupRecord {
		t.Fatalf("unusable record: ARP %v, UDP %v; want arp-unknown-target and no-lookup-record", arp.Reason, udp.Reason)
	}
	enc := policy.TranslationMethodEncap
	if _, err := s.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca}}, policy.LookupRecordChange{Rule: &enc}); err != nil {
		t.Fatal(err)
	}
	if arp, udp := try(); arp.Action != ToPort || !arp.Reply || udp.Action != ToUnderlay || udp.Dst != pa2 {
		t.Fatalf("usable record: ARP %v %v, UDP %v %v to %s; want a reply and NVGRE to %s", arp.Action, arp.Reason, udp.Action, udp.Reason, udp.Dst, pa2)
	}
}
