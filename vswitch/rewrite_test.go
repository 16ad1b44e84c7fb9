package vswitch

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// The green tenant uses IP Rewrite: every CA of a green VM has a PA of its
// own. green1 lives on host A; green2 (same subnet), green4 (another
// subnet) and green3 (same subnet, but Rule Encap: a mixed subnet) on host
// B, whose own PA is pa2.
var (
	greenRD   = policy.MustParseGUID("{11111111-2222-3333-4444-000000000003}")
	macGreen1 = packet.MAC{2, 0, 0, 0, 0x70, 1}
	macGreen2 = packet.MAC{2, 0, 0, 0, 0x70, 2}
	macGreen3 = packet.MAC{2, 0, 0, 0, 0x70, 3}
	macGreen4 = packet.MAC{2, 0, 0, 0, 0x70, 4}

	green1PA4, green1PA6 = netip.MustParseAddr("198.18.1.10"), netip.MustParseAddr("fd01::1:10")
	green2PA4, green2PA6 = netip.MustParseAddr("198.18.1.11"), netip.MustParseAddr("fd01::1:11")
	green4PA4            = netip.MustParseAddr("198.18.1.14")
)

func greenStore(t testing.TB, local ...netip.Addr) *policy.Store {
	t.Helper()
	s := policy.NewStore()
	for _, r := range []struct {
		vsid policy.VSID
		pfx  string
	}{{7001, "10.0.0.0/24"}, {7001, "fd00:0:0:1::/64"}, {7002, "10.0.1.0/24"}} {
		must(s.AddCustomerRoute(policy.CustomerRoute{RoutingDomainID: greenRD, VirtualSubnetID: r.vsid, DestinationPrefix: netip.MustParsePrefix(r.pfx)}))
	}
	nat, enc := policy.TranslationMethodNat, policy.TranslationMethodEncap
	for _, r := range []policy.LookupRecord{
		{CustomerAddress: netip.MustParseAddr("10.0.0.10"), VirtualSubnetID: 7001, MACAddress: macGreen1, ProviderAddress: green1PA4, Rule: nat},
		{CustomerAddress: netip.MustParseAddr("fd00:0:0:1::10"), VirtualSubnetID: 7001, MACAddress: macGreen1, ProviderAddress: green1PA6, Rule: nat},
		{CustomerAddress: netip.MustParseAddr("10.0.0.11"), VirtualSubnetID: 7001, MACAddress: macGreen2, ProviderAddress: green2PA4, Rule: nat},
		{CustomerAddress: netip.MustParseAddr("fd00:0:0:1::11"), VirtualSubnetID: 7001, MACAddress: macGreen2, ProviderAddress: green2PA6, Rule: nat},
		{CustomerAddress: netip.MustParseAddr("10.0.0.12"), VirtualSubnetID: 7001, MACAddress: macGreen3, ProviderAddress: pa2, Rule: enc},
		{CustomerAddress: netip.MustParseAddr("10.0.1.14"), VirtualSubnetID: 7002, MACAddress: macGreen4, ProviderAddress: green4PA4, Rule: nat},
	} {
		if got := must(s.AddLookupRecord(r)); got.Unusable {
			t.Fatalf("record %s: Unusable: %s", r.CustomerAddress, got.UnusableReason)
		}
	}
	for _, a := range local {
		bits := 15
		if a.Is6() {
			bits = 64
		}
		must(s.AddProviderAddress(policy.ProviderAddress{ProviderAddress: a, PrefixLength: uint8(bits), AddressState: policy.AddressPreferred}))
	}
	return s
}

// greenHosts returns the switches of host A (green1 on port 0) and host B
// (green2 on 0, green3 on 1, green4 on 2).
func greenHosts(t testing.TB) (a, b *Switch, recB *recorder) {
	a = New(Config{UnderlayMTU: 1500})
	a.SetPolicy(greenStore(t, pa1, green1PA4, green1PA6).Table())
	a.SetPorts(must(NewPortTable([]PortConfig{{Index: 0, Name: "green1", MAC: macGreen1, VSID: 7001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")}})))
	recB = &recorder{}
	b = New(Config{UnderlayMTU: 1500, Events: recB})
	b.SetPolicy(greenStore(t, pa2, green2PA4, green2PA6, green4PA4).Table())
	b.SetPorts(must(NewPortTable([]PortConfig{
		{Index: 0, Name: "green2", MAC: macGreen2, VSID: 7001, CAs: addrs("10.0.0.11", "fd00:0:0:1::11")},
		{Index: 1, Name: "green3", MAC: macGreen3, VSID: 7001, CAs: addrs("10.0.0.12")},
		{Index: 2, Name: "green4", MAC: macGreen4, VSID: 7002, CAs: addrs("10.0.1.14")},
	})))
	return a, b, recB
}

// tcpFrame builds an Ethernet/IP/TCP frame with a valid checksum at offset
// Headroom of a fresh buffer.
func tcpFrame(dstMAC, srcMAC packet.MAC, src, dst string, payloadLen int) ([]byte, int) {
	buf := make([]byte, Headroom+9000)
	b := buf[Headroom:]
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	const tcpLen = 20
	n := 0
	if s.Is4() {
		n += packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv4)
		n += packet.PutIPv4(b[n:], s, d, packet.ProtoTCP, 64, tcpLen+payloadLen, 7, true)
	} else {
		n += packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv6)
		n += packet.PutIPv6(b[n:], s, d, packet.ProtoTCP, 64, tcpLen+payloadLen)
	}
	tcp := b[n : n+tcpLen+payloadLen]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 443)
	binary.BigEndian.PutUint32(tcp[4:], 12345)
	tcp[12], tcp[13] = 5<<4, 0x18
	for i := range payloadLen {
		tcp[tcpLen+i] = byte(i * 7)
	}
	binary.BigEndian.PutUint16(tcp[16:], packet.Checksum(tcp, packet.PseudoHeaderSum(s, d, packet.ProtoTCP, len(tcp))))
	return buf, n + len(tcp)
}

// ipOf returns the IP packet of an Ethernet frame and its addresses.
func ipOf(t *testing.T, frame []byte) (l3 []byte, src, dst netip.Addr, proto uint8, l4 []byte) {
	t.Helper()
	eth := must(packet.ParseEthernet(frame))
	if eth.Type() == packet.EtherTypeIPv4 {
		ip := must(packet.ParseIPv4(eth.Payload()))
		if !packet.IPv4HeaderChecksumOK(ip) {
			t.Fatalf("IPv4 header checksum is wrong")
		}
		return ip, ip.Src(), ip.Dst(), ip.Protocol(), ip.Payload()
	}
	ip := must(packet.ParseIPv6(eth.Payload()))
	return ip, ip.Src(), ip.Dst(), ip.NextHeader(), ip.Payload()
}

func checkL4(t *testing.T, what string, frame []byte, wantSrc, wantDst netip.Addr) {
	t.Helper()
	_, src, dst, proto, l4 := ipOf(t, frame)
	if src != wantSrc || dst != wantDst {
		t.Fatalf("%s: addresses %s->%s, want %s->%s", what, src, dst, wantSrc, wantDst)
	}
	if packet.Checksum(l4, packet.PseudoHeaderSum(src, dst, proto, len(l4))) != 0 {
		t.Fatalf("%s: transport checksum is wrong", what)
	}
}

// IP Rewrite end to end: host A rewrites green1's CA to its PA and
// green2's to green2's PA, adds nothing, and host B maps the PA pair back
// to the CAs and delivers the frame exactly as green1 sent it.
func TestRewriteBetweenHosts(t *testing.T) {
	for _, c := range []struct {
		name, src, dst string
		srcPA, dstPA   netip.Addr
		tcp            bool
	}{
		{"UDP over IPv4", "10.0.0.10", "10.0.0.11", green1PA4, green2PA4, false},
		{"TCP over IPv4", "10.0.0.10", "10.0.0.11", green1PA4, green2PA4, true},
		{"UDP over IPv6", "fd00:0:0:1::10", "fd00:0:0:1::11", green1PA6, green2PA6, false},
		{"TCP over IPv6", "fd00:0:0:1::10", "fd00:0:0:1::11", green1PA6, green2PA6, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b, _ := greenHosts(t)
			buf, n := udpFrame(macGreen2, macGreen1, c.src, c.dst, 300, true)
			if c.tcp {
				buf, n = tcpFrame(macGreen2, macGreen1, c.src, c.dst, 300)
			}
			sent := bytes.Clone(buf[Headroom : Headroom+n])
			r := a.FromPort(0, buf, Headroom, n, scratch())
			if r.Action != Rewritten || r.Src != c.srcPA || r.Dst != c.dstPA {
				t.Fatalf("host A: %v %v %s->%s, want rewritten %s->%s", r.Action, r.Reason, r.Src, r.Dst, c.srcPA, c.dstPA)
			}
			if len(r.Data) != len(sent) {
				t.Fatalf("host A: %d bytes, want %d: IP Rewrite adds no header", len(r.Data), len(sent))
			}
			checkL4(t, "on the wire", r.Data, c.srcPA, c.dstPA)
			wire := bytes.Clone(r.Data)
			gen := b.Generation()
			got := b.FromRewritten(wire, false)
			if got.Action != ToPort || got.Port != 0 || !got.Validated || got.Src != c.srcPA || got.Dst != c.dstPA {
				t.Fatalf("host B: %v %v port %d validated %v, want green2's port 0, validated", got.Action, got.Reason, got.Port, got.Validated)
			}
			// What a kernel fast path installs for the PA pair.
			want := RewriteIngressDecision{SrcPA: c.srcPA, DstPA: c.dstPA, SrcCA: netip.MustParseAddr(c.src), DstCA: netip.MustParseAddr(c.dst),
				SrcMAC: macGreen1, DstMAC: macGreen2, Port: 0, Gen: gen}
			if d, ok := RewriteIngress(&got, gen); !ok || d != want {
				t.Errorf("host B: rewrite ingress decision %+v (%v), want %+v", d, ok, want)
			}
			if !bytes.Equal(got.Data, sent) {
				t.Fatalf("host B delivered\n%x\nwant what green1 sent\n%x", got.Data, sent)
			}
			if a.Counters.VSID(7001).Encapsulated.Load() != 1 || b.Counters.VSID(7001).Decapsulated.Load() != 1 {
				t.Errorf("counters: A sent %d, B received %d; want 1 and 1", a.Counters.VSID(7001).Encapsulated.Load(), b.Counters.VSID(7001).Decapsulated.Load())
			}
		})
	}
}

// A packet whose PA pair does not map to two CAs that may talk is dropped,
// counted and reported, and so is one to a PA no local Nat VM has.
func TestRewriteWrongPAPairDropped(t *testing.T) {
	a, b, rec := greenHosts(t)
	buf, n := udpFrame(macGreen2, macGreen1, "10.0.0.10", "10.0.0.11", 40, true)
	r := a.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != Rewritten {
		t.Fatalf("host A: %v %v", r.Action, r.Reason)
	}
	wire := bytes.Clone(r.Data)
	for _, c := range []struct {
		name     string
		src, dst netip.Addr
		want     Reason
	}{
		{"source PA of no Nat record", netip.MustParseAddr("198.18.0.99"), green2PA4, ReasonRewriteMismatch},
		{"source PA of an Encap host", pa2, green2PA4, ReasonRewriteMismatch},
		{"source PA is the destination's", green2PA4, green2PA4, ReasonRewriteMismatch},
		{"destination PA of a remote VM", green1PA4, green1PA4, ReasonNotForLocalPA},
		{"destination is the host's own PA", green1PA4, pa2, ReasonNotForLocalPA},
	} {
		f := bytes.Clone(wire)
		ip := packet.IPv4(f[packet.EthernetHeaderLen:])
		ip.SetSrc(c.src)
		ip.SetDst(c.dst)
		before := b.Counters.Dropped(c.want)
		if got := b.FromRewritten(f, false); got.Action != Drop || got.Reason != c.want {
			t.Errorf("%s: %v %v, want a %v drop", c.name, got.Action, got.Reason, c.want)
		}
		if b.Counters.Dropped(c.want) != before+1 {
			t.Errorf("%s: the drop was not counted", c.name)
		}
	}
	if len(rec.events) == 0 || rec.events[0].pa != netip.MustParseAddr("198.18.0.99") || rec.events[0].vsid != 7001 {
		t.Errorf("policy-mismatch events %+v, want one for 198.18.0.99 in 7001", rec.events)
	}
}

// Routed between subnets of a routing domain: the sender decrements the
// TTL, the receiver gives the frame its gateway's MAC as source.
func TestRewriteRouted(t *testing.T) {
	a, b, _ := greenHosts(t)
	buf, n := udpFrame(GatewayMAC, macGreen1, "10.0.0.10", "10.0.1.14", 40, true)
	r := a.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != Rewritten || r.Dst != green4PA4 {
		t.Fatalf("host A: %v %v to %s", r.Action, r.Reason, r.Dst)
	}
	got := b.FromRewritten(bytes.Clone(r.Data), false)
	if got.Action != ToPort || got.Port != 2 {
		t.Fatalf("host B: %v %v port %d, want green4's port 2", got.Action, got.Reason, got.Port)
	}
	eth := packet.Ethernet(got.Data)
	ip := packet.IPv4(eth.Payload())
	if eth.Src() != GatewayMAC || eth.Dst() != macGreen4 || ip.TTL() != 63 {
		t.Errorf("delivered %s->%s TTL %d, want the gateway's MAC to green4's, TTL 63", eth.Src(), eth.Dst(), ip.TTL())
	}
	checkL4(t, "delivered", got.Data, netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.1.14"))
}

// A mixed subnet: between a Nat VM and an Encap VM packets are
// encapsulated, from and to the Nat VM's own PA, and validated as usual.
func TestRewriteMixedSubnetEncapsulates(t *testing.T) {
	a, b, _ := greenHosts(t)
	buf, n := udpFrame(macGreen3, macGreen1, "10.0.0.10", "10.0.0.12", 40, true)
	r := a.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToUnderlay || r.Src != green1PA4 || r.Dst != pa2 {
		t.Fatalf("green1 (Nat) to green3 (Encap): %v %v %s->%s, want NVGRE %s->%s", r.Action, r.Reason, r.Src, r.Dst, green1PA4, pa2)
	}
	if got := b.FromUnderlay(r.Src, r.Dst, r.Data); got.Action != ToPort || got.Port != 1 {
		t.Fatalf("host B: %v %v port %d, want green3's port 1", got.Action, got.Reason, got.Port)
	}
	buf, n = udpFrame(macGreen1, macGreen3, "10.0.0.12", "10.0.0.10", 40, true)
	r = b.FromPort(1, buf, Headroom, n, scratch())
	if r.Action != ToUnderlay || r.Src != pa2 || r.Dst != green1PA4 {
		t.Fatalf("green3 (Encap) to green1 (Nat): %v %v %s->%s, want NVGRE %s->%s", r.Action, r.Reason, r.Src, r.Dst, pa2, green1PA4)
	}
	if got := a.FromUnderlay(r.Src, r.Dst, r.Data); got.Action != ToPort || got.Port != 0 {
		t.Fatalf("host A: %v %v port %d, want green1's port 0", got.Action, got.Reason, got.Port)
	}
}

// GRE, and UDP to port 4789, would be taken for tunnel packets at the
// destination PA: they are encapsulated between Nat VMs too.
func TestRewriteEncapsulatesTunnelLikePackets(t *testing.T) {
	a, b, _ := greenHosts(t)
	buf, n := udpFrame(macGreen2, macGreen1, "10.0.0.10", "10.0.0.11", 40, true)
	f := buf[Headroom : Headroom+n]
	u := packet.EthernetHeaderLen + packet.IPv4HeaderLen
	binary.BigEndian.PutUint16(f[u+2:], packet.VXLANPort)
	packet.SetUDPChecksum(packet.UDP(f[u:]), netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11"))
	r := a.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToUnderlay || r.Src != green1PA4 || r.Dst != green2PA4 {
		t.Fatalf("UDP to 4789: %v %v %s->%s, want NVGRE between the PAs", r.Action, r.Reason, r.Src, r.Dst)
	}
	if got := b.FromUnderlay(r.Src, r.Dst, r.Data); got.Action != ToPort || got.Port != 0 {
		t.Fatalf("host B: %v %v port %d", got.Action, got.Reason, got.Port)
	}
}

// A TCP segment whose checksum a checksum offload has yet to finish (only
// the pseudo-header sum) arrives with the PAs' sum and leaves with the
// CAs'.
func TestRewritePartialChecksum(t *testing.T) {
	_, b, _ := greenHosts(t)
	buf, n := tcpFrame(macGreen2, macGreen1, "10.0.0.10", "10.0.0.11", 100)
	f := buf[Headroom : Headroom+n]
	ip := packet.IPv4(f[packet.EthernetHeaderLen:])
	ip.SetSrc(green1PA4)
	ip.SetDst(green2PA4)
	tcp := ip.Payload()
	pseudo := func(src, dst netip.Addr) uint16 {
		return ^packet.Checksum(nil, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, len(tcp)))
	}
	binary.BigEndian.PutUint16(tcp[16:], pseudo(green1PA4, green2PA4))
	if got := b.FromRewritten(f, true); got.Action != ToPort {
		t.Fatalf("%v %v", got.Action, got.Reason)
	}
	if got, want := binary.BigEndian.Uint16(tcp[16:]), pseudo(netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11")); got != want {
		t.Fatalf("partial checksum %#04x, want the CAs' pseudo-header sum %#04x", got, want)
	}
}

// A port whose CAs have Rule Nat gets rewrite decisions for the kernel, with
// its own PA of the packets' family as source (a port has a CA, and so a
// PA, of each family) and the whole underlay MTU.
func TestRewriteDecisionRecorded(t *testing.T) {
	a, _, _ := greenHosts(t)
	f := NewFlows()
	f.RecordDecisions()
	var r Result
	buf, n := udpFrame(macGreen2, macGreen1, "10.0.0.10", "10.0.0.11", 20, true)
	a.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
	buf, n = udpFrame(macGreen2, macGreen1, "fd00:0:0:1::10", "fd00:0:0:1::11", 20, true)
	a.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
	buf, n = udpFrame(macGreen3, macGreen1, "10.0.0.10", "10.0.0.12", 20, true)
	a.FromPortFlows(&r, f, 0, buf, Headroom, n, 0, scratch())
	got := f.Decided()
	want := []Decision{
		{Port: 0, Dst: netip.MustParseAddr("10.0.0.11"), Gen: a.Generation(), Local: -1, MAC: macGreen2, Encap: policy.EncapNVGRE, Rewrite: true,
			VSID: 7001, SrcPA: green1PA4, DstPA: green2PA4, MaxLen: 1500 + 14},
		{Port: 0, Dst: netip.MustParseAddr("fd00:0:0:1::11"), Gen: a.Generation(), Local: -1, MAC: macGreen2, Encap: policy.EncapNVGRE, Rewrite: true,
			VSID: 7001, SrcPA: green1PA6, DstPA: green2PA6, MaxLen: 1500 + 14},
		{Port: 0, Dst: netip.MustParseAddr("10.0.0.12"), Gen: a.Generation(), Local: -1, MAC: macGreen3, Encap: policy.EncapNVGRE,
			VSID: 7001, SrcPA: green1PA4, DstPA: pa2, MaxLen: 1500 - 42 + 14},
	}
	if len(got) != len(want) {
		t.Fatalf("decided %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("decision %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
