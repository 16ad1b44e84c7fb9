package lab

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

func TestDefaultTopologyIsTheDocumentedOne(t *testing.T) {
	topo := Default()
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		host, ca4, ca6 string
		vsid           uint32
	}{
		"blue1": {"host1", "10.0.0.10", "fd00:0:0:1::10", 5001},
		"red1":  {"host1", "10.0.0.10", "fd00:0:0:1::10", 6001},
		"blue2": {"host2", "10.0.0.11", "fd00:0:0:1::11", 5001},
		"blue3": {"host3", "10.0.1.10", "fd00:0:0:2::10", 5002},
		"red2":  {"host3", "10.0.0.11", "fd00:0:0:1::11", 6001},
		// Green has Red's CAs, on IP Rewrite.
		"green1": {"host1", "10.0.0.10", "fd00:0:0:1::10", 7001},
		"green2": {"host3", "10.0.0.11", "fd00:0:0:1::11", 7001},
	}
	if len(topo.VMs) != len(want) {
		t.Fatalf("%d VMs, want %d", len(topo.VMs), len(want))
	}
	for _, v := range topo.VMs {
		w := want[v.Name]
		if v.Host != w.host || v.V4.String() != w.ca4 || v.V6.String() != w.ca6 || uint32(v.VSID) != w.vsid {
			t.Errorf("VM %s = %+v, want %+v", v.Name, v, w)
		}
	}
	pas := []string{"198.18.0.1/15", "198.18.0.2/15", "198.18.0.3/15"}
	for i, h := range topo.Hosts {
		if h.PA.String() != pas[i] {
			t.Errorf("host %s PA %v, want %s", h.Name, h.PA, pas[i])
		}
	}
	if sn, _ := topo.subnet("Green", 7001); !sn.Nat() || sn.RewriteV4.String() != "198.18.64.0/24" || sn.RewriteV6.String() != "fd01:0:0:64::/64" {
		t.Errorf("Green's subnet %+v, want IP Rewrite with pools 198.18.64.0/24 and fd01:0:0:64::/64", sn)
	}
	if topo.Namespace("blue1") != "wnv-blue1" || topo.Namespace("underlay") != "wnv-underlay" {
		t.Errorf("namespaces are %s and %s, want wnv-blue1 and wnv-underlay", topo.Namespace("blue1"), topo.Namespace("underlay"))
	}
}

func TestValidateNamesTheBrokenField(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(*Topology)
		want    string
	}{
		{"empty prefix", func(t *Topology) { t.Prefix = "" }, "Prefix"},
		{"small MTU", func(t *Topology) { t.UnderlayMTU = 1300 }, "UnderlayMTU 1300"},
		{"unknown host", func(t *Topology) { t.VMs[0].Host = "host9" }, `host "host9"`},
		{"unknown subnet", func(t *Topology) { t.VMs[0].VSID = 6001 }, "VirtualSubnetID 6001"},
		{"CA outside subnet", func(t *Topology) { t.VMs[0].V4 = netip.MustParseAddr("10.9.9.9") }, "10.9.9.9"},
		{"duplicate name", func(t *Topology) { t.VMs[1].Name = "blue1" }, `"blue1" is used twice`},
		{"PA without host part", func(t *Topology) { t.Hosts[0].PA = netip.MustParsePrefix("198.18.0.0/15") }, "198.18.0.0/15"},
		{"no policy server address", func(t *Topology) { t.PolicyServer = netip.Prefix{} }, "PolicyServer"},
		{"PA of the policy server", func(t *Topology) { t.Hosts[1].PA = netip.MustParsePrefix("198.18.0.254/15") }, "policy server's address"},
	}
	for _, c := range cases {
		topo := Default()
		topo.VMs = append([]VM(nil), topo.VMs...)
		topo.Hosts = append([]Host(nil), topo.Hosts...)
		c.breakIt(&topo)
		err := topo.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
}

func TestExpectFollowsRoutingDomains(t *testing.T) {
	topo := Default()
	vm := func(n string) VM { v, _ := topo.VM(n); return v }
	a := netip.MustParseAddr
	cases := []struct {
		from string
		addr string
		want string
		self bool
	}{
		{"blue1", "10.0.0.11", "blue2", false},
		{"blue1", "fd00:0:0:2::10", "blue3", false},
		{"red1", "10.0.0.11", "red2", false},
		{"red1", "10.0.1.10", "", false},       // Red has no 10.0.1.0/24
		{"blue1", "10.0.0.10", "blue1", true},  // red1's CA is blue1's own
		{"blue2", "10.0.0.10", "blue1", false}, // never red1
		{"red2", "fd00:0:0:1::10", "red1", false},
	}
	for _, c := range cases {
		got, self := topo.Expect(vm(c.from), a(c.addr))
		if got != c.want || self != c.self {
			t.Errorf("Expect(%s, %s) = %q, %v; want %q, %v", c.from, c.addr, got, self, c.want, c.self)
		}
	}
}

func TestPortMTUSubtractsTheEncapsulationOverhead(t *testing.T) {
	topo := Default()
	blue1, _ := topo.VM("blue1")
	if got := topo.PortMTU(blue1); got != 1458 {
		t.Errorf("PortMTU over an IPv4 PA = %d, want 1458", got)
	}
	v6 := ipv6Topology("x-")
	v, _ := v6.VM("blue1")
	if got := v6.PortMTU(v); got != 1438 {
		t.Errorf("PortMTU over an IPv6 PA = %d, want 1438", got)
	}
	if err := v6.Validate(); err != nil {
		t.Errorf("IPv6-PA topology: %v", err)
	}
}

func TestGatewayIsTheFirstHostAddress(t *testing.T) {
	for p, want := range map[string]string{"10.0.0.0/24": "10.0.0.1", "fd00:0:0:1::/64": "fd00:0:0:1::1", "10.0.1.77/24": "10.0.1.1"} {
		if got := Gateway(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("Gateway(%s) = %v, want %s", p, got, want)
		}
	}
}

func TestPolicyCoversEveryVMAndSubnet(t *testing.T) {
	topo := Default()
	rs := topo.customerRoutes()
	if len(rs) != 8 { // 4 subnets x (IPv4 + IPv6)
		t.Fatalf("%d customer routes, want 8", len(rs))
	}
	for _, r := range rs {
		if !r.OnLink() || r.NextHop.Is4() != r.DestinationPrefix.Addr().Is4() {
			t.Errorf("route %+v is not on-link in its own family", r)
		}
	}
	lrs := topo.lookupRecords()
	if len(lrs) != 14 { // 7 VMs x 2 CAs
		t.Fatalf("%d lookup records, want 14", len(lrs))
	}
	// Green's records point at PAs of their own, numbered in VM order.
	rw := map[string]string{"10.0.0.10": "198.18.64.10", "fd00:0:0:1::10": "fd01:0:0:64::a", "10.0.0.11": "198.18.64.11", "fd00:0:0:1::11": "fd01:0:0:64::b"}
	for _, r := range lrs {
		v, _ := topo.VM(r.VMName)
		h, _ := topo.host(v.Host)
		want, rule := h.PA.Addr().String(), policy.TranslationMethodEncap
		if v.Tenant == "Green" {
			want, rule = rw[r.CustomerAddress.String()], policy.TranslationMethodNat
		}
		if r.ProviderAddress.String() != want || r.Rule != rule || r.MACAddress != v.MAC || r.VirtualSubnetID != v.VSID {
			t.Errorf("record %+v does not map %s to %s with Rule %v", r, v.Name, want, rule)
		}
	}
}

// nvgreFrame builds an underlay frame carrying an inner IPv4 or IPv6 packet.
func nvgreFrame(outerSrc, outerDst, innerSrc, innerDst string, vsid uint32, flow uint8) []byte {
	osrc, od := netip.MustParseAddr(outerSrc), netip.MustParseAddr(outerDst)
	is, id := netip.MustParseAddr(innerSrc), netip.MustParseAddr(innerDst)
	b := make([]byte, 200)
	inner := 8
	innerIP := 20
	innerType := uint16(packet.EtherTypeIPv4)
	if is.Is6() {
		innerIP, innerType = 40, packet.EtherTypeIPv6
	}
	outerType := uint16(packet.EtherTypeIPv4)
	if osrc.Is6() {
		outerType = packet.EtherTypeIPv6
	}
	payload := inner + 14 + innerIP + 4
	n := packet.PutEthernet(b, packet.MAC{2, 0, 0, 0, 0, 2}, packet.MAC{2, 0, 0, 0, 0, 1}, outerType)
	if osrc.Is6() {
		n += packet.PutIPv6(b[n:], osrc, od, packet.ProtoGRE, 64, payload)
	} else {
		n += packet.PutIPv4(b[n:], osrc, od, packet.ProtoGRE, 64, payload, 1, true)
	}
	n += packet.PutNVGRE(b[n:], vsid, flow)
	n += packet.PutEthernet(b[n:], packet.MAC{2, 0, 0, 0, 0x50, 2}, packet.MAC{2, 0, 0, 0, 0x50, 1}, innerType)
	if is.Is6() {
		n += packet.PutIPv6(b[n:], is, id, packet.ProtoUDP, 64, 4)
	} else {
		n += packet.PutIPv4(b[n:], is, id, packet.ProtoUDP, 64, 4, 1, true)
	}
	return b[:n+4]
}

func TestDecodeUnderlayReadsOuterAndInnerAddresses(t *testing.T) {
	cases := []struct{ os, od, is, id string }{
		{"198.18.0.1", "198.18.0.2", "10.0.0.10", "10.0.0.11"},
		{"198.18.0.1", "198.18.0.3", "fd00:0:0:1::10", "fd00:0:0:2::10"},
		{"2001:db8::1", "2001:db8::2", "10.0.0.10", "10.0.0.11"},
	}
	for _, c := range cases {
		f, ok, err := DecodeUnderlay(nvgreFrame(c.os, c.od, c.is, c.id, 5001, 0xab))
		if !ok || err != nil {
			t.Fatalf("%v: ok=%v err=%v", c, ok, err)
		}
		if f.OuterSrc.String() != c.os || f.OuterDst.String() != c.od || f.InnerSrc.String() != c.is || f.InnerDst.String() != c.id {
			t.Errorf("decoded %v, want %v", f, c)
		}
		if f.Protocol != 0x6558 || f.Key != 5001<<8|0xab || f.VSID != 5001 || f.FlowID != 0xab {
			t.Errorf("decoded GRE %#x key %#x VSID %d FlowID %d, want 0x6558, %#x, 5001, 0xab", f.Protocol, f.Key, f.VSID, f.FlowID, 5001<<8|0xab)
		}
		if f.InnerSrcMAC != (packet.MAC{2, 0, 0, 0, 0x50, 1}) {
			t.Errorf("inner source MAC %v", f.InnerSrcMAC)
		}
	}
}

func TestDecodeUnderlaySkipsOtherTrafficAndFlagsBadGRE(t *testing.T) {
	arp := make([]byte, 60)
	packet.PutEthernet(arp, packet.Broadcast, packet.MAC{2, 0, 0, 0, 0, 1}, packet.EtherTypeARP)
	if _, ok, _ := DecodeUnderlay(arp); ok {
		t.Error("ARP decoded as GRE")
	}
	b := nvgreFrame("198.18.0.1", "198.18.0.2", "10.0.0.10", "10.0.0.11", 5001, 1)
	b[14+20+3] = 0x00 // GRE protocol 0x6500: not Transparent Ethernet Bridging
	_, ok, err := DecodeUnderlay(b)
	if !ok || err == nil {
		t.Errorf("GRE with protocol 0x6500: ok=%v err=%v, want ok and an error", ok, err)
	}
}

func TestCheckFramesAcceptsLabTrafficOnly(t *testing.T) {
	topo := Default()
	good, _, _ := DecodeUnderlay(nvgreFrame("198.18.0.1", "198.18.0.2", "10.0.0.10", "10.0.0.11", 5001, 7))
	if bad := topo.CheckFrames([]Frame{good}, nil); len(bad) != 0 {
		t.Errorf("lab frame rejected: %v", bad)
	}
	if bad := topo.CheckFrames(nil, nil); len(bad) != 1 {
		t.Errorf("empty capture: %v, want one complaint", bad)
	}
	stranger, _, _ := DecodeUnderlay(nvgreFrame("198.18.0.9", "198.18.0.2", "10.0.0.10", "10.0.0.11", 5001, 7))
	foreign, _, _ := DecodeUnderlay(nvgreFrame("198.18.0.1", "198.18.0.2", "10.0.0.10", "10.0.0.11", 7777, 7))
	if bad := topo.CheckFrames([]Frame{stranger, foreign}, nil); len(bad) != 2 {
		t.Errorf("foreign PA and VSID: %v, want two complaints", bad)
	}
}

func TestPrintMatrixCountsFailures(t *testing.T) {
	checks := []Check{
		{From: "blue1", To: "blue2", Addr: netip.MustParseAddr("10.0.0.11"), Kind: "same subnet", Expect: "blue2", Got: "blue2", RTT: time.Millisecond},
		{From: "blue1", To: "red1", Addr: netip.MustParseAddr("10.0.0.10"), Kind: "self", Expect: "blue1", Self: true},
		{From: "red1", To: "blue3", Addr: netip.MustParseAddr("10.0.1.10"), Kind: "isolated", Expect: "", Got: "blue3"},
	}
	var out bytes.Buffer
	if n := PrintMatrix(&out, checks); n != 1 {
		t.Errorf("PrintMatrix counted %d failures, want 1", n)
	}
	s := out.String()
	if !strings.Contains(s, "skipped") || !strings.Contains(s, "FAIL") || strings.Count(s, "\n") != 4 {
		t.Errorf("matrix output:\n%s", s)
	}
}

func TestTransferPairsCrossHostsSameSubnetAndRouted(t *testing.T) {
	var got []string
	for _, p := range Default().transferPairs() {
		got = append(got, p[0].Name+">"+p[1].Name)
	}
	if strings.Join(got, " ") != "blue1>blue2 blue1>blue3 red1>red2 green1>green2" {
		t.Errorf("transfer pairs %v", got)
	}
}

func TestTransferPairsGoToAndFromAQEMUVM(t *testing.T) {
	topo, err := Default().WithQEMU("blue3")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range topo.transferPairs() {
		got = append(got, p[0].Name+">"+p[1].Name)
	}
	if want := "blue1>blue2 blue1>blue3 red1>red2 green1>green2 blue3>blue1 blue2>blue3 blue3>blue2"; strings.Join(got, " ") != want {
		t.Errorf("transfer pairs %v, want %s", got, want)
	}
}

func TestWithQEMUMarksVMsAndNamesUnknownOnes(t *testing.T) {
	topo, err := Default().WithQEMU("blue3", "red1")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range topo.QEMUVMs() {
		names = append(names, v.Name)
	}
	if strings.Join(names, ",") != "red1,blue3" {
		t.Errorf("QEMU VMs %v, want red1 and blue3", names)
	}
	if len(Default().QEMUVMs()) != 0 {
		t.Error("WithQEMU changed the default topology")
	}
	if _, err := Default().WithQEMU("blue9"); err == nil || !strings.Contains(err.Error(), `"blue9" is not a VM of the lab: use one of blue1, red1`) {
		t.Errorf("WithQEMU(blue9) = %v, want an error naming the VMs", err)
	}
}

func TestMigrationPlanCrossesTheUnderlayBeforeAndAfter(t *testing.T) {
	topo, _ := Default().WithQEMU("blue1")
	for _, c := range []struct {
		vm, host string
		want     StreamMigration
	}{
		{"blue2", "host2", StreamMigration{VM: "blue2", To: "host1", Sender: "blue3"}},
		{"blue2", "host3", StreamMigration{VM: "blue2", To: "host2", Sender: "blue1"}},
		{"red2", "host3", StreamMigration{VM: "red2", To: "host2", Sender: "red1"}},
	} {
		tp := topo
		if c.vm == "blue2" && c.host == "host3" {
			tp = Default() // blue1 a namespace VM again
		}
		tp.VMs = append([]VM(nil), tp.VMs...)
		for i := range tp.VMs {
			if tp.VMs[i].Name == c.vm {
				tp.VMs[i].Host = c.host
			}
		}
		got, err := tp.MigrationPlan(c.vm)
		if err != nil || got != c.want {
			t.Errorf("MigrationPlan(%s on %s) = %+v, %v; want %+v", c.vm, c.host, got, err, c.want)
		}
	}
	// Blue's only namespace VM on another host than blue3 is blue2: with it
	// a QEMU guest too, nobody can stream.
	tp, _ := Default().WithQEMU("blue1", "blue2")
	if _, err := tp.MigrationPlan("blue3"); err == nil {
		t.Error("MigrationPlan found a sender among QEMU VMs")
	}
}

// ipv6Topology is a two-host lab whose PAs are IPv6, with both tenants and a
// routed Blue subnet, provisioned statically.
func ipv6Topology(prefix string) Topology {
	t := Default()
	t.Prefix = prefix
	t.Static = true
	t.Hosts = []Host{
		{Name: "host1", PA: netip.MustParsePrefix("2001:db8::1/64")},
		{Name: "host2", PA: netip.MustParsePrefix("2001:db8::2/64")},
	}
	t.VMs = append([]VM(nil), t.VMs...)
	for i := range t.VMs {
		if t.VMs[i].Host == "host3" {
			t.VMs[i].Host = "host2"
		}
	}
	return t
}
