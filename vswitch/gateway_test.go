package vswitch

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

var (
	// Each subnet's default gateway's own MAC, as Microsoft's sample
	// deployments provision it: a lookup record at PA 169.254.254.254.
	macDG5001 = packet.MAC{2, 0, 0, 0, 0xd0, 1}
	macDG5002 = packet.MAC{2, 0, 0, 0, 0xd0, 2}
	paDG      = netip.MustParseAddr("169.254.254.254")
)

// dgStore is host1's lab policy with a gateway record for both families of
// 5001 and 5002.
func dgStore(t *testing.T) *policy.Store {
	st := labStore(t, pa1)
	for _, g := range []struct {
		vsid policy.VSID
		ca   string
		mac  packet.MAC
	}{{5001, "10.0.0.1", macDG5001}, {5001, "fd00:0:0:1::1", macDG5001}, {5002, "10.0.1.1", macDG5002}, {5002, "fd00:0:0:2::1", macDG5002}} {
		must(st.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr(g.ca), VirtualSubnetID: g.vsid, MACAddress: g.mac,
			ProviderAddress: paDG, Rule: policy.TranslationMethodEncap, VMName: "DefaultGateway"}))
	}
	return st
}

// arpFor asks, from blue1 on port 0, who has target, and returns the MAC
// answered.
func arpFor(t *testing.T, sw *Switch, target string) packet.MAC {
	t.Helper()
	buf := make([]byte, Headroom+64)
	n := packet.PutEthernet(buf[Headroom:], packet.Broadcast, macBlue1, packet.EtherTypeARP)
	n += packet.PutARP(buf[Headroom+n:], packet.ARPRequest, macBlue1, netip.MustParseAddr("10.0.0.10"), packet.MAC{}, netip.MustParseAddr(target))
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToPort || !r.Reply {
		t.Fatalf("ARP for %s: %v %v, want a reply", target, r.Action, r.Reason)
	}
	return must(packet.ParseARP(must(packet.ParseEthernet(r.Data)).Payload())).SenderMAC()
}

// ndFor solicits target from blue1 and returns the advertised MAC and
// whether the router flag is set.
func ndFor(t *testing.T, sw *Switch, target string) (packet.MAC, bool) {
	t.Helper()
	src, dst, tgt := netip.MustParseAddr("fe80::10"), netip.MustParseAddr("ff02::1:ff00:1"), netip.MustParseAddr(target)
	buf := make([]byte, Headroom+128)
	b := buf[Headroom:]
	n := packet.PutEthernet(b, packet.MAC{0x33, 0x33, 0xff, 0, 0, 1}, macBlue1, packet.EtherTypeIPv6)
	ns := solicitation(tgt, macBlue1, src, dst)
	n += packet.PutIPv6(b[n:], src, dst, packet.ProtoICMPv6, 255, len(ns))
	n += copy(b[n:], ns)
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToPort || !r.Reply {
		t.Fatalf("NS for %s: %v %v, want a reply", target, r.Action, r.Reason)
	}
	ip := must(packet.ParseIPv6(must(packet.ParseEthernet(r.Data)).Payload()))
	m := must(packet.ParseICMPv6(ip.Payload(), ip.Src(), ip.Dst()))
	lla, ok := m.NDTargetLinkAddr()
	if m.Type() != packet.ICMPv6NeighborAdvertisement || m.NDTarget() != tgt || !ok {
		t.Fatalf("NS for %s: type %d target %s, want an NA with a target link-layer address", target, m.Type(), m.NDTarget())
	}
	return lla, m.NAFlags()&packet.NAFlagRouter != 0
}

// routed sends blue1 -> blue3 (routed into 5002, on host3) through f and
// returns the inner frame's source MAC.
func routedSrc(t *testing.T, sw *Switch, f *Flows, src, dst string) packet.MAC {
	t.Helper()
	buf, n := udpFrame(GatewayMAC, macBlue1, src, dst, 20, true)
	var r Result
	sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
	if r.Action != ToUnderlay || r.Dst != pa3 {
		t.Fatalf("%s -> %s: %v %v to %s, want NVGRE to %s", src, dst, r.Action, r.Reason, r.Dst, pa3)
	}
	eth := must(packet.ParseEthernet(must(packet.ParseNVGRE(r.Data)).Payload()))
	if eth.Dst() != macBlue3 {
		t.Fatalf("%s -> %s: destination MAC %s, want blue3's %s", src, dst, eth.Dst(), macBlue3)
	}
	return eth.Src()
}

// A subnet's gateway with a lookup record of its own answers ARP and ND
// with that record's MAC and sources the frames routed into its subnet
// with it; removing the record brings back GatewayMAC.
func TestGatewayRecordGivesTheGatewayItsMAC(t *testing.T) {
	st := dgStore(t)
	sw, _ := host1(t)
	sw.SetPolicy(st.Table())
	if got := arpFor(t, sw, "10.0.0.1"); got != macDG5001 {
		t.Errorf("ARP for the gateway 10.0.0.1 answered %s, want its record's %s", got, macDG5001)
	}
	if got, router := ndFor(t, sw, "fd00:0:0:1::1"); got != macDG5001 || !router {
		t.Errorf("ND for the gateway fd00:0:0:1::1 answered %s (router %v), want its record's %s as a router", got, router, macDG5001)
	}
	if got := arpFor(t, sw, "10.0.0.11"); got != macBlue2 {
		t.Errorf("ARP for blue2 answered %s, want %s", got, macBlue2)
	}

	// Routed into 5002: from 5002's gateway, on the decided packet, on the
	// cached one, and in the decision recorded for the kernel.
	f := NewFlows()
	f.RecordDecisions()
	for i := range 2 {
		if got := routedSrc(t, sw, f, "10.0.0.10", "10.0.1.10"); got != macDG5002 {
			t.Errorf("routed packet %d: source MAC %s, want 5002's gateway's %s", i, got, macDG5002)
		}
	}
	if got := routedSrc(t, sw, nil, "fd00:0:0:1::10", "fd00:0:0:2::10"); got != macDG5002 {
		t.Errorf("routed IPv6 packet: source MAC %s, want %s", got, macDG5002)
	}
	if d := f.Decided(); len(d) != 1 || !d[0].Routed || d[0].SrcMAC != macDG5002 {
		t.Errorf("recorded %+v, want one routed decision with source MAC %s", d, macDG5002)
	}
	if r, err := NextHop(st.Table(), 5001, netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.1.10")); err != nil || r.SourceMACAddress != macDG5002 {
		t.Errorf("Select-NextHop %+v, %v: want SourceMACAddress %s", r, err, macDG5002)
	}

	// The record names the host's gateway, not a VM at 169.254.254.254.
	if r, err := NextHop(st.Table(), 5001, netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Errorf("Select-NextHop to the gateway 10.0.0.1 = %+v, want an error", r)
	}
	buf, n := udpFrame(GatewayMAC, macBlue1, "10.0.0.10", "10.0.1.1", 20, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Action != Drop || r.Reason != ReasonToGateway {
		t.Errorf("to 5002's gateway 10.0.1.1: %v %v to %s, want a to-gateway drop", r.Action, r.Reason, r.Dst)
	}

	must(st.RemoveLookupRecords(policy.LookupRecordFilter{MACAddress: []packet.MAC{macDG5001}}))
	must(st.RemoveLookupRecords(policy.LookupRecordFilter{MACAddress: []packet.MAC{macDG5002}}))
	sw.SetPolicy(st.Table())
	if got := arpFor(t, sw, "10.0.0.1"); got != GatewayMAC {
		t.Errorf("ARP for 10.0.0.1 without its record answered %s, want %s", got, GatewayMAC)
	}
	if got, _ := ndFor(t, sw, "fd00:0:0:1::1"); got != GatewayMAC {
		t.Errorf("ND for fd00:0:0:1::1 without its record answered %s, want %s", got, GatewayMAC)
	}
	if got := routedSrc(t, sw, f, "10.0.0.10", "10.0.1.10"); got != GatewayMAC {
		t.Errorf("routed packet without the record: source MAC %s, want %s", got, GatewayMAC)
	}
}

// The gateway's ICMP errors come from its MAC too.
func TestGatewayRecordSourcesICMPErrors(t *testing.T) {
	sw, _ := host1(t)
	sw.SetPolicy(dgStore(t).Table())
	buf, n := udpFrame(macDG5001, macBlue1, "10.0.0.10", "10.0.1.10", 20, true)
	for ip := packet.IPv4(buf[Headroom+packet.EthernetHeaderLen:]); ip.TTL() > 1; {
		ip.DecTTL()
	}
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToPort || !r.Reply {
		t.Fatalf("TTL 1 routed: %v %v, want an ICMP answer", r.Action, r.Reason)
	}
	if eth := must(packet.ParseEthernet(r.Data)); eth.Src() != macDG5001 {
		t.Errorf("time exceeded from %s, want the gateway's %s", eth.Src(), macDG5001)
	}
}

// A host accepts a frame another host routed into a subnet with a gateway
// record, sourced by that gateway's MAC, as it does one from GatewayMAC; a
// MAC that is no gateway's stays a policy mismatch.
func TestIngressAcceptsTheGatewayRecordsMAC(t *testing.T) {
	sw, _ := host1(t)
	sw.SetPolicy(dgStore(t).Table())
	for _, c := range []struct {
		src    packet.MAC
		reason Reason
	}{{macDG5001, ReasonNone}, {GatewayMAC, ReasonNone}, {macDG5002, ReasonPolicyMismatch}, {packet.MAC{2, 0, 0, 0, 0xd0, 9}, ReasonPolicyMismatch}} {
		r := sw.FromUnderlay(pa3, pa1, encapFrom(5001, macBlue1, c.src, "10.0.1.10", "10.0.0.10"))
		if r.Reason != c.reason || c.reason == ReasonNone && (r.Action != ToPort || r.Port != 0) {
			t.Errorf("routed by host3 from %s: %v %v, want %v", c.src, r.Action, r.Reason, c.reason)
		}
	}
}

// Under UseExternalRouter the host does not route: a VM's frame to another
// subnet goes, unchanged but for its destination MAC, to the router a
// customer route names in the VM's own subnet, and the router, whose MAC
// has each subnet's GatewayWildcard record, forwards it from its leg in the
// destination's subnet.
func TestUseExternalRouter(t *testing.T) {
	var (
		macRtrA = packet.MAC{2, 0, 0, 0, 0x70, 1} // the router's leg in 5001
		macRtrB = packet.MAC{2, 0, 0, 0, 0x70, 2} // and in 5002, both on host2
		rtrA    = netip.MustParseAddr("10.0.0.254")
		rtrB    = netip.MustParseAddr("10.0.1.254")
	)
	policyFor := func(t *testing.T, localPA netip.Addr, on bool) *policy.Store {
		st := labStore(t, localPA)
		for _, l := range []struct {
			vsid policy.VSID
			ca   netip.Addr
			mac  packet.MAC
		}{{5001, rtrA, macRtrA}, {5002, rtrB, macRtrB}} {
			for _, typ := range []policy.RecordType{policy.Static, policy.GatewayWildcard} {
				ca := l.ca
				if typ == policy.GatewayWildcard {
					ca = netip.IPv4Unspecified()
				}
				must(st.AddLookupRecord(policy.LookupRecord{CustomerAddress: ca, VirtualSubnetID: l.vsid, MACAddress: l.mac,
					ProviderAddress: pa2, Rule: policy.TranslationMethodEncap, Type: typ}))
			}
			must(st.AddCustomerRoute(policy.CustomerRoute{RoutingDomainID: blueRD, VirtualSubnetID: l.vsid,
				DestinationPrefix: netip.MustParsePrefix("10.0.0.0/8"), NextHop: l.ca}))
		}
		st.SetGlobal(policy.Global{UseExternalRouter: on})
		return st
	}

	// host1, off: routed by the host, as ever.
	sw, _ := host1(t)
	sw.SetPolicy(policyFor(t, pa1, false).Table())
	if got := routedSrc(t, sw, nil, "10.0.0.10", "10.0.1.10"); got != GatewayMAC {
		t.Fatalf("UseExternalRouter off: source MAC %s, want %s", got, GatewayMAC)
	}

	// host1, on: to the router's leg in 5001, at L2.
	st := policyFor(t, pa1, true)
	sw.SetPolicy(st.Table())
	f := NewFlows()
	f.RecordDecisions()
	for i := range 2 {
		buf, n := udpFrame(GatewayMAC, macBlue1, "10.0.0.10", "10.0.1.10", 20, true)
		var r Result
		sw.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
		if r.Action != ToUnderlay || r.Dst != pa2 {
			t.Fatalf("packet %d: %v %v to %s, want NVGRE to the router's PA %s", i, r.Action, r.Reason, r.Dst, pa2)
		}
		g := must(packet.ParseNVGRE(r.Data))
		eth := must(packet.ParseEthernet(g.Payload()))
		ip := must(packet.ParseIPv4(eth.Payload()))
		if g.VSID() != 5001 || eth.Dst() != macRtrA || eth.Src() != macBlue1 || ip.TTL() != 64 || ip.Dst() != netip.MustParseAddr("10.0.1.10") {
			t.Errorf("packet %d: VSID %d %s -> %s TTL %d to %s, want 5001, blue1's MAC to the router's, TTL 64, to 10.0.1.10",
				i, g.VSID(), eth.Src(), eth.Dst(), ip.TTL(), ip.Dst())
		}
	}
	want := Decision{Port: 0, Dst: netip.MustParseAddr("10.0.1.10"), Gen: sw.Generation(), Local: -1, MAC: macRtrA, Encap: policy.EncapNVGRE,
		VSID: 5001, SrcPA: pa1, DstPA: pa2, MaxLen: 1500 - 42 + 14}
	if d := f.Decided(); len(d) != 1 || d[0] != want {
		t.Errorf("recorded %+v, want %+v: the kernel forwards to the router as the switch does", d, want)
	}
	if r, err := NextHop(st.Table(), 5001, netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.1.10")); err != nil ||
		r.NextHopAddress != rtrA || r.NextHopMACAddress != macRtrA || r.SourceMACAddress != macBlue1 || r.ProviderAddress != pa2 || r.VirtualSubnetID != 5001 {
		t.Errorf("Select-NextHop %+v, %v: want the router %s", r, err, rtrA)
	}
	// Same subnet: unchanged.
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 20, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Action != ToUnderlay || r.Dst != pa2 ||
		must(packet.ParseEthernet(must(packet.ParseNVGRE(r.Data)).Payload())).Dst() != macBlue2 {
		t.Errorf("same subnet: %v %v to %s, want NVGRE to blue2", r.Action, r.Reason, r.Dst)
	}
	// No route naming a router in the sender's subnet.
	must(st.RemoveCustomerRoutes(policy.CustomerRouteFilter{NextHop: []netip.Addr{rtrA}}))
	sw.SetPolicy(st.Table())
	buf, n = udpFrame(GatewayMAC, macBlue1, "10.0.0.10", "10.0.1.10", 20, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Action != Drop || r.Reason != ReasonNoExternalRouter {
		t.Errorf("without a router in 5001: %v %v, want a %v drop", r.Action, r.Reason, ReasonNoExternalRouter)
	}

	// host2, the router's: blue1's frame reaches the router's leg in 5001,
	// and the router's leg in 5002 sends it on from blue1's CA to blue3.
	rsw := New(Config{UnderlayMTU: 1500})
	rsw.SetPolicy(policyFor(t, pa2, true).Table())
	rsw.SetPorts(must(NewPortTable([]PortConfig{
		{Index: 0, Name: "rtrA", MAC: macRtrA, VSID: 5001, CAs: []netip.Addr{rtrA}},
		{Index: 1, Name: "rtrB", MAC: macRtrB, VSID: 5002, CAs: []netip.Addr{rtrB}},
	})))
	if r := rsw.FromUnderlay(pa1, pa2, encapFrom(5001, macRtrA, macBlue1, "10.0.0.10", "10.0.1.10")); r.Action != ToPort || r.Port != 0 {
		t.Errorf("blue1's frame at the router's host: %v %v, want delivery to the router's leg in 5001", r.Action, r.Reason)
	}
	buf, n = udpFrame(macBlue3, macRtrB, "10.0.0.10", "10.0.1.10", 20, true)
	r := rsw.FromPort(1, buf, Headroom, n, scratch())
	if r.Action != ToUnderlay || r.Dst != pa3 {
		t.Fatalf("the router's forwarded frame: %v %v to %s, want NVGRE to blue3's host", r.Action, r.Reason, r.Dst)
	}
	// The kernel may take the router's packets from that source too, as
	// long as the policy holds; its own CA needs no such entry.
	rf := NewFlows()
	rf.RecordDecisions()
	for _, src := range []string{"10.0.0.10", "10.0.1.254"} {
		buf, n = udpFrame(macBlue3, macRtrB, src, "10.0.1.10", 20, true)
		var r Result
		if rsw.FromPortFlows(&r, rf, 1, buf, Headroom, n, 0, scratch()); r.Action != ToUnderlay {
			t.Fatalf("the router's frame from %s: %v %v, want NVGRE", src, r.Action, r.Reason)
		}
	}
	if fs, want := rf.Forwarded(), (ForwardedSource{Port: 1, Src: netip.MustParseAddr("10.0.0.10"), Gen: rsw.Generation()}); len(fs) != 1 || fs[0] != want {
		t.Errorf("forwarded sources %+v, want %+v", fs, want)
	}
	// And host3 validates it against the router's GatewayWildcard record.
	h3 := New(Config{UnderlayMTU: 1500})
	h3.SetPolicy(policyFor(t, pa3, true).Table())
	h3.SetPorts(must(NewPortTable([]PortConfig{{Index: 0, Name: "blue3", MAC: macBlue3, VSID: 5002, CAs: addrs("10.0.1.10")}})))
	if r := h3.FromUnderlay(pa2, pa3, encapFrom(5002, macBlue3, macRtrB, "10.0.0.10", "10.0.1.10")); r.Action != ToPort || r.Port != 0 {
		t.Errorf("the router's frame at blue3's host: %v %v, want delivery", r.Action, r.Reason)
	}
	// Its own route leads back to itself: not taken.
	buf, n = udpFrame(GatewayMAC, macRtrA, "10.0.0.254", "10.0.1.10", 20, true)
	if r := rsw.FromPort(0, buf, Headroom, n, scratch()); r.Action != Drop || r.Reason != ReasonNoExternalRouter {
		t.Errorf("the router's leg in 5001 to 10.0.1.10: %v %v, want a %v drop", r.Action, r.Reason, ReasonNoExternalRouter)
	}
	// Only the router may send from CAs outside its subnet.
	buf, n = udpFrame(macBlue3, macRtrB, "10.0.1.20", "10.0.1.10", 20, true)
	if r := rsw.FromPort(1, buf, Headroom, n, scratch()); r.Action != Drop || r.Reason != ReasonSpoofedCA {
		t.Errorf("the router from another CA of its own subnet: %v %v, want spoofed-ca", r.Action, r.Reason)
	}
}
