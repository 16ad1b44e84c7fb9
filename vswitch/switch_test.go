package vswitch

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

var (
	blueRD   = policy.MustParseGUID("{11111111-2222-3333-4444-000000000001}")
	redRD    = policy.MustParseGUID("{11111111-2222-3333-4444-000000000002}")
	pa1      = netip.MustParseAddr("198.18.0.1")
	pa2      = netip.MustParseAddr("198.18.0.2")
	pa3      = netip.MustParseAddr("198.18.0.3")
	macBlue1 = packet.MAC{2, 0, 0, 0, 0x50, 1}
	macBlue2 = packet.MAC{2, 0, 0, 0, 0x50, 2}
	macBlue3 = packet.MAC{2, 0, 0, 0, 0x50, 3}
	macRed1  = packet.MAC{2, 0, 0, 0, 0x60, 1}
	macRed2  = packet.MAC{2, 0, 0, 0, 0x60, 2}
)

type vm struct {
	mac  packet.MAC
	vsid policy.VSID
	pa   netip.Addr
	cas  []string
}

var labVMs = map[string]vm{
	"blue1": {macBlue1, 5001, pa1, []string{"10.0.0.10", "fd00:0:0:1::10"}},
	"blue2": {macBlue2, 5001, pa2, []string{"10.0.0.11", "fd00:0:0:1::11"}},
	"blue3": {macBlue3, 5002, pa3, []string{"10.0.1.10", "fd00:0:0:2::10"}},
	"red1":  {macRed1, 6001, pa1, []string{"10.0.0.10", "fd00:0:0:1::10"}},
	"red2":  {macRed2, 6001, pa3, []string{"10.0.0.11", "fd00:0:0:1::11"}},
}

type recorder struct{ events []mismatch }

type mismatch struct {
	vsid   uint32
	ca, pa netip.Addr
}

func (r *recorder) PolicyMismatch(vsid uint32, ca, pa netip.Addr) {
	r.events = append(r.events, mismatch{vsid, ca, pa})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// labStore is host1's policy in the default lab topology.
func labStore(t testing.TB, localPA netip.Addr) *policy.Store {
	s := policy.NewStore()
	routes := []struct {
		rd   policy.GUID
		vsid policy.VSID
		pfx  string
	}{
		{blueRD, 5001, "10.0.0.0/24"}, {blueRD, 5001, "fd00:0:0:1::/64"},
		{blueRD, 5002, "10.0.1.0/24"}, {blueRD, 5002, "fd00:0:0:2::/64"},
		{redRD, 6001, "10.0.0.0/24"}, {redRD, 6001, "fd00:0:0:1::/64"},
	}
	for _, r := range routes {
		if _, err := s.AddCustomerRoute(policy.CustomerRoute{RoutingDomainID: r.rd, VirtualSubnetID: r.vsid, DestinationPrefix: netip.MustParsePrefix(r.pfx)}); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range labVMs {
		for _, ca := range v.cas {
			rec := policy.LookupRecord{CustomerAddress: netip.MustParseAddr(ca), VirtualSubnetID: v.vsid, MACAddress: v.mac,
				ProviderAddress: v.pa, Rule: policy.TranslationMethodEncap, VMName: name}
			if _, err := s.AddLookupRecord(rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.AddProviderAddress(policy.ProviderAddress{ProviderAddress: localPA, PrefixLength: 15, AddressState: policy.AddressPreferred}); err != nil {
		t.Fatal(err)
	}
	return s
}

// host1 returns a switch set up like host1 of the lab: blue1 on port 0 and
// red1 on port 1.
func host1(t testing.TB) (*Switch, *recorder) {
	rec := &recorder{}
	sw := New(Config{UnderlayMTU: 1500, Events: rec})
	sw.SetPolicy(labStore(t, pa1).Table())
	sw.SetPorts(must(NewPortTable([]PortConfig{
		{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")},
		{Index: 1, Name: "red1", MAC: macRed1, VSID: 6001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")},
	})))
	return sw, rec
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// udpFrame builds an Ethernet/IP/UDP frame with payloadLen bytes of payload
// at offset Headroom of a fresh buffer, and returns the buffer and length.
func udpFrame(dstMAC, srcMAC packet.MAC, src, dst string, payloadLen int, df bool) ([]byte, int) {
	buf := make([]byte, Headroom+9000)
	b := buf[Headroom:]
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	n := 0
	if s.Is4() {
		n += packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv4)
		n += packet.PutIPv4(b[n:], s, d, packet.ProtoUDP, 64, packet.UDPHeaderLen+payloadLen, 1, df)
	} else {
		n += packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv6)
		n += packet.PutIPv6(b[n:], s, d, packet.ProtoUDP, 64, packet.UDPHeaderLen+payloadLen)
	}
	u := n
	n += packet.PutUDP(b[n:], 40000, 7007, payloadLen)
	for i := range payloadLen {
		b[n+i] = byte(i)
	}
	n += payloadLen
	packet.SetUDPChecksum(packet.UDP(b[u:n]), s, d)
	return buf, n
}

func scratch() []byte { return make([]byte, 2048) }

func TestARPAnsweredFromPolicy(t *testing.T) {
	sw, _ := host1(t)
	cases := []struct {
		port   int
		target string
		want   packet.MAC
	}{
		{0, "10.0.0.11", macBlue2},  // same subnet, remote host
		{0, "10.0.0.1", GatewayMAC}, // the subnet's gateway
		{0, "10.0.1.10", macBlue3},  // other subnet of the routing domain
		{1, "10.0.0.11", macRed2},   // same CA, other tenant: Red's record
		{1, "10.0.0.1", GatewayMAC},
	}
	for _, c := range cases {
		p, _ := sw.Ports().Port(c.port)
		buf := make([]byte, Headroom+64)
		n := packet.PutEthernet(buf[Headroom:], packet.Broadcast, p.MAC, packet.EtherTypeARP)
		n += packet.PutARP(buf[Headroom+n:], packet.ARPRequest, p.MAC, p.CAs[0], packet.MAC{}, netip.MustParseAddr(c.target))
		r := sw.FromPort(c.port, buf, Headroom, n, scratch())
		if r.Action != ToPort || r.Port != c.port || !r.Reply {
			t.Fatalf("ARP %s from %s: action %v reason %v reply %v, want a reply to the port", c.target, p.Name, r.Action, r.Reason, r.Reply)
		}
		eth := must(packet.ParseEthernet(r.Data))
		a := must(packet.ParseARP(eth.Payload()))
		if a.Op() != packet.ARPReply || a.SenderMAC() != c.want || a.SenderIP().String() != c.target || a.TargetMAC() != p.MAC || eth.Dst() != p.MAC {
			t.Errorf("ARP %s from %s: got op %d %s is-at %s, want %s", c.target, p.Name, a.Op(), a.SenderIP(), a.SenderMAC(), c.want)
		}
	}
}

func TestARPUnknownTargetRaisesMismatch(t *testing.T) {
	sw, ev := host1(t)
	buf := make([]byte, Headroom+64)
	n := packet.PutEthernet(buf[Headroom:], packet.Broadcast, macBlue1, packet.EtherTypeARP)
	n += packet.PutARP(buf[Headroom+n:], packet.ARPRequest, macBlue1, netip.MustParseAddr("10.0.0.10"), packet.MAC{}, netip.MustParseAddr("10.0.0.99"))
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != Drop || r.Reason != ReasonARPUnknownTarget {
		t.Fatalf("got %v/%v, want drop arp-unknown-target", r.Action, r.Reason)
	}
	if len(ev.events) != 1 || ev.events[0].vsid != 5001 || ev.events[0].ca.String() != "10.0.0.99" || ev.events[0].pa.IsValid() {
		t.Fatalf("events %+v, want one mismatch for (5001, 10.0.0.99, unspecified PA)", ev.events)
	}
}

func TestNeighborSolicitationAnswered(t *testing.T) {
	sw, _ := host1(t)
	for _, c := range []struct {
		target string
		want   packet.MAC
		router bool
	}{{"fd00:0:0:1::11", macBlue2, false}, {"fd00:0:0:1::1", GatewayMAC, true}} {
		src := netip.MustParseAddr("fe80::1")
		target := netip.MustParseAddr(c.target)
		dst := netip.MustParseAddr("ff02::1:ff00:11")
		buf := make([]byte, Headroom+128)
		b := buf[Headroom:]
		n := packet.PutEthernet(b, packet.MAC{0x33, 0x33, 0xff, 0, 0, 0x11}, macBlue1, packet.EtherTypeIPv6)
		ns := solicitation(target, macBlue1, src, dst)
		n += packet.PutIPv6(b[n:], src, dst, packet.ProtoICMPv6, 255, len(ns))
		n += copy(b[n:], ns)
		r := sw.FromPort(0, buf, Headroom, n, scratch())
		if r.Action != ToPort {
			t.Fatalf("NS for %s: %v %v, want a reply", c.target, r.Action, r.Reason)
		}
		eth := must(packet.ParseEthernet(r.Data))
		ip := must(packet.ParseIPv6(eth.Payload()))
		m := must(packet.ParseICMPv6(ip.Payload(), ip.Src(), ip.Dst()))
		lla, ok := m.NDTargetLinkAddr()
		if m.Type() != packet.ICMPv6NeighborAdvertisement || m.NDTarget() != target || !ok || lla != c.want || ip.Dst() != src || ip.HopLimit() != 255 {
			t.Errorf("NS for %s: got type %d target %s lla %s to %s", c.target, m.Type(), m.NDTarget(), lla, ip.Dst())
		}
		if got := m.NAFlags()&packet.NAFlagRouter != 0; got != c.router {
			t.Errorf("NA for %s: router flag %v, want %v", c.target, got, c.router)
		}
	}
}

// solicitation builds an ICMPv6 NS with a source link-layer option.
func solicitation(target netip.Addr, mac packet.MAC, src, dst netip.Addr) []byte {
	m := make([]byte, 32)
	m[0] = packet.ICMPv6NeighborSolicitation
	t16 := target.As16()
	copy(m[8:24], t16[:])
	m[24], m[25] = 1, 1
	copy(m[26:32], mac[:])
	sum := packet.Checksum(m, packet.PseudoHeaderSum(src, dst, packet.ProtoICMPv6, len(m)))
	m[2], m[3] = byte(sum>>8), byte(sum)
	return m
}

func TestSameSubnetRemoteIsEncapsulated(t *testing.T) {
	for _, fam := range [][2]string{{"10.0.0.10", "10.0.0.11"}, {"fd00:0:0:1::10", "fd00:0:0:1::11"}} {
		sw, _ := host1(t)
		buf, n := udpFrame(macBlue2, macBlue1, fam[0], fam[1], 100, true)
		inner := append([]byte(nil), buf[Headroom:Headroom+n]...)
		r := sw.FromPort(0, buf, Headroom, n, scratch())
		if r.Action != ToUnderlay || r.Src != pa1 || r.Dst != pa2 {
			t.Fatalf("%s->%s: %v %v %s->%s, want NVGRE 198.18.0.1->198.18.0.2", fam[0], fam[1], r.Action, r.Reason, r.Src, r.Dst)
		}
		g := must(packet.ParseNVGRE(r.Data))
		if g.VSID() != 5001 || string(g.Payload()) != string(inner) {
			t.Fatalf("key %#x, want VSID 5001 and the inner frame unchanged", g.Key())
		}
		if want := FlowID(netip.MustParseAddr(fam[0]), netip.MustParseAddr(fam[1]), packet.ProtoUDP, 40000, 7007); g.FlowID() != want {
			t.Errorf("FlowID %d, want %d", g.FlowID(), want)
		}
		if got := sw.Counters.VSID(5001).Encapsulated.Load(); got != 1 {
			t.Errorf("encapsulated counter %d, want 1", got)
		}
	}
}

func TestFlowIDDiffersPerFlow(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11")
	seen := map[uint8]bool{}
	for port := range uint16(64) {
		seen[FlowID(a, b, packet.ProtoTCP, 30000+port, 80)] = true
	}
	if len(seen) < 32 {
		t.Fatalf("64 flows hashed to %d FlowIDs: no ECMP entropy", len(seen))
	}
}

func TestRoutedAcrossSubnets(t *testing.T) {
	sw, _ := host1(t)
	buf, n := udpFrame(GatewayMAC, macBlue1, "10.0.0.10", "10.0.1.10", 50, true)
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToUnderlay || r.Dst != pa3 {
		t.Fatalf("got %v %v to %s, want NVGRE to 198.18.0.3", r.Action, r.Reason, r.Dst)
	}
	g := must(packet.ParseNVGRE(r.Data))
	eth := must(packet.ParseEthernet(g.Payload()))
	ip := must(packet.ParseIPv4(eth.Payload()))
	if g.VSID() != 5002 || eth.Dst() != macBlue3 || eth.Src() != GatewayMAC || ip.TTL() != 63 {
		t.Fatalf("VSID %d dst %s src %s TTL %d, want 5002, blue3's MAC, gateway MAC, 63", g.VSID(), eth.Dst(), eth.Src(), ip.TTL())
	}
	if _, err := packet.ParseIPv4(eth.Payload()); err != nil {
		t.Fatalf("IPv4 header checksum broken by TTL rewrite: %v", err)
	}
}

// A routed IPv6 packet with hop limit 1 is answered by the gateway with
// ICMPv6 time exceeded, quoting it, and counted dropped.
func TestRoutedHopLimitOneAnswered(t *testing.T) {
	sw, _ := host1(t)
	buf, n := udpFrame(GatewayMAC, macBlue1, "fd00:0:0:1::10", "fd00:0:0:2::10", 50, true)
	buf[Headroom+packet.EthernetHeaderLen+7] = 1 // the hop limit
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToPort || !r.Reply || sw.Counters.Dropped(ReasonTTLExceeded) != 1 {
		t.Fatalf("got %v %v reply %v, want an ICMPv6 answer and a ttl-exceeded drop", r.Action, r.Reason, r.Reply)
	}
	eth := must(packet.ParseEthernet(r.Data))
	ip := must(packet.ParseIPv6(eth.Payload()))
	m := must(packet.ParseICMPv6(ip.Payload(), ip.Src(), ip.Dst()))
	if m.Type() != packet.ICMPv6TimeExceeded || ip.Src() != netip.MustParseAddr("fd00:0:0:1::1") || ip.Dst() != netip.MustParseAddr("fd00:0:0:1::10") {
		t.Errorf("answer: ICMPv6 type %d from %s to %s, want time exceeded from the gateway fd00:0:0:1::1", m.Type(), ip.Src(), ip.Dst())
	}
}

func TestOtherRoutingDomainUnreachable(t *testing.T) {
	sw, _ := host1(t)
	// red1 has no route to 10.0.1.0/24, which exists only in Blue's routing domain.
	buf, n := udpFrame(GatewayMAC, macRed1, "10.0.0.10", "10.0.1.10", 50, true)
	r := sw.FromPort(1, buf, Headroom, n, scratch())
	if r.Action != Drop || r.Reason != ReasonOtherRoutingDomain {
		t.Fatalf("got %v %v, want drop other-routing-domain", r.Action, r.Reason)
	}
}

func TestTenantsWithSameCAStayApart(t *testing.T) {
	sw, _ := host1(t)
	buf, n := udpFrame(macRed2, macRed1, "10.0.0.10", "10.0.0.11", 10, true)
	r := sw.FromPort(1, buf, Headroom, n, scratch())
	if r.Action != ToUnderlay || r.Dst != pa3 || must(packet.ParseNVGRE(r.Data)).VSID() != 6001 {
		t.Fatalf("red1 -> 10.0.0.11 went %v to %s, want red2 at 198.18.0.3 in VSID 6001", r.Action, r.Dst)
	}
}

func TestLocalDeliveryWithoutEncap(t *testing.T) {
	rec := &recorder{}
	sw := New(Config{Events: rec})
	sw.SetPolicy(labStore(t, pa1).Table())
	sw.SetPorts(must(NewPortTable([]PortConfig{
		{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10")},
		{Index: 3, Name: "blue2", MAC: macBlue2, VSID: 5001, CAs: addrs("10.0.0.11")},
	})))
	// blue2's record says PA2; make PA2 local too, as if blue2 lived here.
	st := labStore(t, pa1)
	must(st.AddProviderAddress(policy.ProviderAddress{ProviderAddress: pa2, PrefixLength: 15}))
	sw.SetPolicy(st.Table())
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 10, true)
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToPort || r.Port != 3 || len(r.Data) != n || r.Reply {
		t.Fatalf("got %v %v port %d reply %v, want local delivery of the frame to port 3", r.Action, r.Reason, r.Port, r.Reply)
	}
}

func TestSpoofedSourcesDropped(t *testing.T) {
	sw, _ := host1(t)
	buf, n := udpFrame(macBlue2, macRed1, "10.0.0.10", "10.0.0.11", 10, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Reason != ReasonSpoofedMAC {
		t.Errorf("foreign source MAC: %v %v, want spoofed-mac", r.Action, r.Reason)
	}
	buf, n = udpFrame(macBlue2, macBlue1, "10.0.0.99", "10.0.0.11", 10, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Reason != ReasonSpoofedCA {
		t.Errorf("foreign source CA: %v %v, want spoofed-ca", r.Action, r.Reason)
	}
	if sw.Counters.Dropped(ReasonSpoofedMAC) != 1 || sw.Counters.Dropped(ReasonSpoofedCA) != 1 || sw.Counters.Port(0).Drops.Load() != 2 {
		t.Errorf("spoof counters: mac %d ca %d port drops %d, want 1, 1, 2", sw.Counters.Dropped(ReasonSpoofedMAC), sw.Counters.Dropped(ReasonSpoofedCA), sw.Counters.Port(0).Drops.Load())
	}
}

func TestMissingRecordRaisesMismatch(t *testing.T) {
	sw, ev := host1(t)
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.77", 10, true)
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Reason != ReasonNoLookupRecord || len(ev.events) != 1 || ev.events[0] != (mismatch{5001, netip.MustParseAddr("10.0.0.77"), netip.Addr{}}) {
		t.Fatalf("got %v, events %+v; want no-lookup-record and one mismatch (5001, 10.0.0.77)", r.Reason, ev.events)
	}
}

func TestBroadcastAndNonIPDropped(t *testing.T) {
	sw, _ := host1(t)
	buf, n := udpFrame(packet.Broadcast, macBlue1, "10.0.0.10", "10.0.0.255", 10, false)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Reason != ReasonMulticast {
		t.Errorf("broadcast: %v, want multicast", r.Reason)
	}
	buf = make([]byte, Headroom+60)
	packet.PutEthernet(buf[Headroom:], macBlue2, macBlue1, 0x88cc)
	if r := sw.FromPort(0, buf, Headroom, 60, scratch()); r.Reason != ReasonUnsupportedEtherType {
		t.Errorf("LLDP: %v, want unsupported-ethertype", r.Reason)
	}
}

func TestTooBigGetsICMP(t *testing.T) {
	sw, _ := host1(t)
	// 1500-byte inner IP packet + 42 bytes of NVGRE over IPv4 exceeds a 1500 MTU underlay.
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 1500-28, true)
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToPort || r.Port != 0 {
		t.Fatalf("got %v %v, want an ICMP reply to the VM", r.Action, r.Reason)
	}
	eth := must(packet.ParseEthernet(r.Data))
	ip := must(packet.ParseIPv4(eth.Payload()))
	m := must(packet.ParseICMPv4(ip.Payload()))
	if m.Type() != packet.ICMPv4DestUnreachable || m.Code() != packet.ICMPv4CodeFragNeeded || m.NextHopMTU() != 1458 || ip.Dst().String() != "10.0.0.10" {
		t.Fatalf("got ICMP %d/%d mtu %d to %s, want 3/4 mtu 1458 to 10.0.0.10", m.Type(), m.Code(), m.NextHopMTU(), ip.Dst())
	}
	buf, n = udpFrame(macBlue2, macBlue1, "fd00:0:0:1::10", "fd00:0:0:1::11", 1500-48, true)
	r = sw.FromPort(0, buf, Headroom, n, scratch())
	eth = must(packet.ParseEthernet(r.Data))
	ip6 := must(packet.ParseIPv6(eth.Payload()))
	m6 := must(packet.ParseICMPv6(ip6.Payload(), ip6.Src(), ip6.Dst()))
	if m6.Type() != packet.ICMPv6PacketTooBig || m6.MTU() != 1458 {
		t.Fatalf("got ICMPv6 %d mtu %d, want Packet Too Big 1458", m6.Type(), m6.MTU())
	}
	// Without DF, an IPv4 packet goes out and the outer packet may be fragmented.
	buf, n = udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 1500-28, false)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Action != ToUnderlay {
		t.Fatalf("no DF: %v %v, want encapsulation", r.Action, r.Reason)
	}
}

// encapFrom builds the NVGRE payload host2 would send for blue2 -> blue1.
func encapFrom(vsid uint32, dstMAC, srcMAC packet.MAC, src, dst string) []byte {
	buf, n := udpFrame(dstMAC, srcMAC, src, dst, 20, true)
	packet.PutNVGRE(buf[Headroom-8:], vsid, 7)
	return buf[Headroom-8 : Headroom+n]
}

func TestIngressValidAndDelivered(t *testing.T) {
	sw, ev := host1(t)
	r := sw.FromUnderlay(pa2, pa1, encapFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"))
	if r.Action != ToPort || r.Port != 0 {
		t.Fatalf("got %v %v, want delivery to blue1's port", r.Action, r.Reason)
	}
	// Routed by host3 for blue3: source MAC is the gateway's, CA in VSID 5002 at PA3.
	r = sw.FromUnderlay(pa3, pa1, encapFrom(5001, macBlue1, GatewayMAC, "10.0.1.10", "10.0.0.10"))
	if r.Action != ToPort || r.Port != 0 {
		t.Fatalf("routed: %v %v, want delivery", r.Action, r.Reason)
	}
	if len(ev.events) != 0 || sw.Counters.VSID(5001).Decapsulated.Load() != 2 {
		t.Fatalf("events %v decap %d", ev.events, sw.Counters.VSID(5001).Decapsulated.Load())
	}
}

func TestIngressValidation(t *testing.T) {
	cases := []struct {
		name      string
		src       netip.Addr
		payload   []byte
		reason    Reason
		wantEvent *mismatch
	}{
		{"wrong PA", pa3, encapFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"), ReasonPolicyMismatch,
			&mismatch{5001, netip.MustParseAddr("10.0.0.11"), pa3}},
		{"wrong MAC", pa2, encapFrom(5001, macBlue1, macRed2, "10.0.0.11", "10.0.0.10"), ReasonPolicyMismatch,
			&mismatch{5001, netip.MustParseAddr("10.0.0.11"), pa2}},
		{"unknown CA", pa2, encapFrom(5001, macBlue1, macBlue2, "10.0.0.12", "10.0.0.10"), ReasonPolicyMismatch,
			&mismatch{5001, netip.MustParseAddr("10.0.0.12"), pa2}},
		{"other tenant's VSID", pa3, encapFrom(6001, macBlue1, macRed2, "10.0.0.11", "10.0.0.10"), ReasonNoLocalPort, nil},
		{"VSID not here", pa2, encapFrom(7777, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"), ReasonUnknownVSID, nil},
		{"routed from a CA of another domain", pa3, encapFrom(5001, macBlue1, GatewayMAC, "10.0.0.11", "10.0.0.10"), ReasonPolicyMismatch,
			&mismatch{5001, netip.MustParseAddr("10.0.0.11"), pa3}},
		{"not NVGRE", pa2, []byte{0x20, 0x00, 0x08, 0x00, 0, 0, 0, 0}, ReasonMalformedGRE, nil},
		{"short", pa2, []byte{0x20, 0x00}, ReasonMalformedGRE, nil},
	}
	for _, c := range cases {
		sw, ev := host1(t)
		r := sw.FromUnderlay(c.src, pa1, c.payload)
		if r.Action != Drop || r.Reason != c.reason {
			t.Errorf("%s: got %v %v, want drop %v", c.name, r.Action, r.Reason, c.reason)
		}
		if c.wantEvent == nil && len(ev.events) != 0 || c.wantEvent != nil && (len(ev.events) != 1 || ev.events[0] != *c.wantEvent) {
			t.Errorf("%s: events %+v, want %v", c.name, ev.events, c.wantEvent)
		}
		if sw.Counters.Dropped(c.reason) != 1 {
			t.Errorf("%s: %v counted %d times", c.name, c.reason, sw.Counters.Dropped(c.reason))
		}
	}
}

func TestPolicyChangeTakesEffect(t *testing.T) {
	sw, _ := host1(t)
	st := labStore(t, pa1)
	sw.SetPolicy(st.Table())
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 10, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Dst != pa2 {
		t.Fatalf("before: to %s", r.Dst)
	}
	pa := pa3
	must(st.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, VirtualSubnetID: []policy.VSID{5001}}, policy.LookupRecordChange{ProviderAddress: &pa}))
	sw.SetPolicy(st.Table())
	buf, n = udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 10, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Dst != pa3 {
		t.Fatalf("after the record moved: to %s, want 198.18.0.3", r.Dst)
	}
}

func TestNextHop(t *testing.T) {
	tbl := labStore(t, pa1).Table()
	r, err := NextHop(tbl, 5001, netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.1.10"))
	if err != nil || r.NextHopMACAddress != macBlue3 || r.SourceMACAddress != GatewayMAC || r.ProviderAddress != pa3 || r.VirtualSubnetID != 5002 {
		t.Fatalf("routed next hop %+v, %v", r, err)
	}
	r, err = NextHop(tbl, 5001, netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11"))
	if err != nil || r.NextHopMACAddress != macBlue2 || r.SourceMACAddress != macBlue1 || r.ProviderAddress != pa2 {
		t.Fatalf("same-subnet next hop %+v, %v", r, err)
	}
	if _, err := NextHop(tbl, 6001, netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.1.10")); err == nil {
		t.Fatal("Red reached Blue's subnet")
	}
}
