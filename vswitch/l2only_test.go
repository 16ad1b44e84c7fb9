package vswitch

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// VSID 7001 is a subnet whose VMs learn their CAs: L2Only records for
// l2a and l2b here (PA1), l2c at PA2 (IPv4 and IPv6 records), l2d and l2e
// at PA3; one Static VM, 10.7.0.50, at PA2.
var (
	macL2a    = packet.MAC{2, 0, 0, 0, 0x70, 0xa}
	macL2b    = packet.MAC{2, 0, 0, 0, 0x70, 0xb}
	macL2c    = packet.MAC{2, 0, 0, 0, 0x70, 0xc}
	macL2d    = packet.MAC{2, 0, 0, 0, 0x70, 0xd}
	macL2e    = packet.MAC{2, 0, 0, 0, 0x70, 0xe}
	macStatic = packet.MAC{2, 0, 0, 0, 0x70, 0x50}
	macNobody = packet.MAC{2, 0, 0, 0, 0x70, 0x99}
)

// l2Host is host1 plus VSID 7001 (on encapsulation e) with l2a on port 2
// (no CAs) and l2b on port 3 (CA 10.7.0.3).
func l2Host(t testing.TB, e policy.Encapsulation) (*Switch, *recorder) {
	rec := &recorder{}
	sw := New(Config{UnderlayMTU: 1500, Events: rec})
	sw.SetPolicy(l2Store(t, e).Table())
	sw.SetPorts(l2Ports())
	return sw, rec
}

// l2Store is the policy of l2Host.
func l2Store(t testing.TB, e policy.Encapsulation) *policy.Store {
	st := labStore(t, pa1)
	must(st.AddCustomerRoute(policy.CustomerRoute{RoutingDomainID: blueRD, VirtualSubnetID: 7001, DestinationPrefix: netip.MustParsePrefix("10.7.0.0/24")}))
	must(st.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr("10.7.0.50"), VirtualSubnetID: 7001, MACAddress: macStatic,
		ProviderAddress: pa2, Rule: policy.TranslationMethodEncap}))
	for _, r := range []struct {
		mac packet.MAC
		pa  netip.Addr
		ca  string
	}{{macL2a, pa1, "0.0.0.0"}, {macL2b, pa1, "0.0.0.0"}, {macL2c, pa2, "0.0.0.0"}, {macL2c, pa2, "::"}, {macL2d, pa3, "0.0.0.0"}, {macL2e, pa3, "::"}} {
		must(st.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr(r.ca), VirtualSubnetID: 7001, MACAddress: r.mac,
			ProviderAddress: r.pa, Rule: policy.TranslationMethodEncap, Type: policy.L2Only}))
	}
	if e != policy.EncapNVGRE {
		must(st.AddVirtualSubnet(policy.VirtualSubnet{VirtualSubnetID: 7001, Encapsulation: e}))
	}
	return st
}

// l2Ports are the ports of l2Host.
func l2Ports() *PortTable {
	return must(NewPortTable([]PortConfig{
		{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")},
		{Index: 1, Name: "red1", MAC: macRed1, VSID: 6001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")},
		{Index: 2, Name: "l2a", MAC: macL2a, VSID: 7001},
		{Index: 3, Name: "l2b", MAC: macL2b, VSID: 7001, CAs: addrs("10.7.0.3")},
	}))
}

// arpFrame builds an ARP frame at Headroom of a fresh buffer.
func arpFrame(dstMAC, srcMAC packet.MAC, op uint16, spa, tpa string, tha packet.MAC) ([]byte, int) {
	buf := make([]byte, Headroom+64)
	n := packet.PutEthernet(buf[Headroom:], dstMAC, srcMAC, packet.EtherTypeARP)
	n += packet.PutARP(buf[Headroom+n:], op, srcMAC, netip.MustParseAddr(spa), tha, netip.MustParseAddr(tpa))
	return buf, n
}

// nsFrame builds a neighbor solicitation for target from src at Headroom of
// a fresh buffer, to the target's solicited-node group.
func nsFrame(srcMAC packet.MAC, src, target string) ([]byte, int) {
	s, tg := netip.MustParseAddr(src), netip.MustParseAddr(target)
	t16 := tg.As16()
	dst := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: t16[13], 14: t16[14], 15: t16[15]})
	buf := make([]byte, Headroom+128)
	b := buf[Headroom:]
	n := packet.PutEthernet(b, packet.MAC{0x33, 0x33, 0xff, t16[13], t16[14], t16[15]}, srcMAC, packet.EtherTypeIPv6)
	ns := solicitation(tg, srcMAC, s, dst)
	n += packet.PutIPv6(b[n:], s, dst, packet.ProtoICMPv6, 255, len(ns))
	n += copy(b[n:], ns)
	return buf, n
}

// encapsulated is the NVGRE payload of an inner frame built at Headroom.
func encapsulated(vsid uint32, buf []byte, n int) []byte {
	packet.PutNVGRE(buf[Headroom-8:], vsid, 0)
	return buf[Headroom-8 : Headroom+n]
}

func TestL2OnlyPortSourceCAsNotChecked(t *testing.T) {
	sw, _ := l2Host(t, policy.EncapNVGRE)
	for _, c := range []struct {
		port     int
		src, dst string
	}{{2, "10.7.0.2", "10.7.0.4"}, {2, "192.168.9.9", "10.7.0.4"}, {3, "10.7.0.33", "10.7.0.4"}, {2, "fd00:7::2", "fd00:7::4"}} {
		p, _ := sw.Ports().Port(c.port)
		buf, n := udpFrame(macL2c, p.MAC, c.src, c.dst, 10, true)
		if r := sw.FromPort(c.port, buf, Headroom, n, scratch()); r.Action != ToUnderlay {
			t.Errorf("%s -> %s from %s: %v %v, want it sent on", c.src, c.dst, p.Name, r.Action, r.Reason)
		}
	}
	// The source MAC is still checked, and so are the CAs of VMs without
	// L2Only records.
	buf, n := udpFrame(macL2c, macL2b, "10.7.0.2", "10.7.0.4", 10, true)
	if r := sw.FromPort(2, buf, Headroom, n, scratch()); r.Reason != ReasonSpoofedMAC {
		t.Errorf("l2a sending as l2b: %v, want spoofed-mac", r.Reason)
	}
	buf, n = udpFrame(macBlue2, macBlue1, "10.0.0.99", "10.0.0.11", 10, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Reason != ReasonSpoofedCA {
		t.Errorf("blue1 sending from 10.0.0.99: %v, want spoofed-ca", r.Reason)
	}
}

func TestL2OnlyUnicastGoesByMAC(t *testing.T) {
	for _, e := range []policy.Encapsulation{policy.EncapNVGRE, policy.EncapVXLAN} {
		sw, ev := l2Host(t, e)
		// To a remote VM by MAC: encapsulated to its PA, the frame unchanged.
		buf, n := udpFrame(macL2c, macL2a, "10.7.0.2", "10.7.0.4", 10, true)
		frame := bytes.Clone(buf[Headroom : Headroom+n])
		r := sw.FromPort(2, buf, Headroom, n, scratch())
		if r.Action != ToUnderlay || r.Src != pa1 || r.Dst != pa2 || r.Encap != e || !bytes.Equal(r.Data[EncapHeaderLen:], frame) {
			t.Fatalf("%v: to l2c: %v %v %s->%s %v, want the unchanged frame encapsulated to PA2", e, r.Action, r.Reason, r.Src, r.Dst, r.Encap)
		}
		if e == policy.EncapVXLAN && packet.VXLAN(r.Data).VNI() != 7001 || e == policy.EncapNVGRE && packet.NVGRE(r.Data).VSID() != 7001 {
			t.Errorf("%v: header % x, want VSID 7001", e, r.Data[:EncapHeaderLen])
		}
		// IPv6, link-local, to a VM whose only record is IPv6.
		buf, n = udpFrame(macL2e, macL2a, "fe80::a", "fe80::e", 10, true)
		if r := sw.FromPort(2, buf, Headroom, n, scratch()); r.Action != ToUnderlay || r.Dst != pa3 {
			t.Errorf("%v: link-local to l2e: %v %v %s, want encapsulated to PA3", e, r.Action, r.Reason, r.Dst)
		}
		// To a local VM by MAC, though the CA is not one of its port's.
		buf, n = udpFrame(macL2b, macL2a, "10.7.0.2", "10.7.0.123", 10, true)
		frame = bytes.Clone(buf[Headroom : Headroom+n])
		if r := sw.FromPort(2, buf, Headroom, n, scratch()); r.Action != ToPort || r.Port != 3 || !bytes.Equal(r.Data, frame) {
			t.Errorf("%v: to l2b: %v %v port %d, want the unchanged frame on port 3", e, r.Action, r.Reason, r.Port)
		}
		// A CA with a record goes by its record, whatever MAC the VM used.
		buf, n = udpFrame(macL2c, macL2a, "10.7.0.2", "10.7.0.50", 10, true)
		r = sw.FromPort(2, buf, Headroom, n, scratch())
		if r.Action != ToUnderlay || r.Dst != pa2 || packet.Ethernet(r.Data[EncapHeaderLen:]).Dst() != macStatic {
			t.Errorf("%v: to 10.7.0.50: %v %v, want to PA2 with the record's MAC", e, r.Action, r.Reason)
		}
		// No record by CA or MAC: as in any subnet.
		buf, n = udpFrame(macNobody, macL2a, "10.7.0.2", "10.7.0.9", 10, true)
		if r := sw.FromPort(2, buf, Headroom, n, scratch()); r.Reason != ReasonNoLookupRecord {
			t.Errorf("%v: to nobody: %v, want no-lookup-record", e, r.Reason)
		}
		if len(ev.events) != 1 || ev.events[0] != (mismatch{7001, netip.MustParseAddr("10.7.0.9"), netip.Addr{}}) {
			t.Errorf("%v: events %+v, want one mismatch for 10.7.0.9", e, ev.events)
		}
	}
}

// TestL2OnlyByMACNotCached: the flow cache is keyed by CA, so a decision
// made by MAC must not be reused for the next packet to that CA.
func TestL2OnlyByMACNotCached(t *testing.T) {
	sw, _ := l2Host(t, policy.EncapNVGRE)
	f := NewFlows()
	var r Result
	for _, c := range []struct {
		mac packet.MAC
		pa  netip.Addr
	}{{macL2c, pa2}, {macL2d, pa3}, {macL2c, pa2}} {
		buf, n := udpFrame(c.mac, macL2b, "10.7.0.3", "10.7.0.4", 10, true)
		sw.FromPortFlows(&r, f, 3, buf, Headroom, n, 0, scratch())
		if r.Action != ToUnderlay || r.Dst != c.pa {
			t.Fatalf("to %s: %v %v %s, want %s", c.mac, r.Action, r.Reason, r.Dst, c.pa)
		}
	}
	f.Flush()
}

func TestL2OnlyFlood(t *testing.T) {
	sw, ev := l2Host(t, policy.EncapNVGRE)
	paths := []policy.Path{{Src: pa1, Dst: pa2}, {Src: pa1, Dst: pa3}}
	tests := []struct {
		name string
		port int
		make func() ([]byte, int)
	}{
		{"ARP for an unknown target", 2, func() ([]byte, int) {
			return arpFrame(packet.Broadcast, macL2a, packet.ARPRequest, "10.7.0.2", "10.7.0.77", packet.MAC{})
		}},
		{"ARP probe", 2, func() ([]byte, int) {
			return arpFrame(packet.Broadcast, macL2a, packet.ARPRequest, "0.0.0.0", "10.7.0.2", packet.MAC{})
		}},
		{"ARP from a port with CAs", 3, func() ([]byte, int) {
			return arpFrame(packet.Broadcast, macL2b, packet.ARPRequest, "10.7.0.3", "10.7.0.77", packet.MAC{})
		}},
		{"DHCP discover", 2, func() ([]byte, int) {
			return udpFrame(packet.Broadcast, macL2a, "0.0.0.0", "255.255.255.255", 300, false)
		}},
		{"NS for an unknown target", 2, func() ([]byte, int) { return nsFrame(macL2a, "fe80::a", "fd00:7::9") }},
		{"NS for a link-local target", 2, func() ([]byte, int) { return nsFrame(macL2a, "fe80::a", "fe80::e") }},
		{"DAD", 2, func() ([]byte, int) { return nsFrame(macL2a, "::", "fd00:7::a") }},
		{"other broadcast", 2, func() ([]byte, int) {
			buf := make([]byte, Headroom+60)
			packet.PutEthernet(buf[Headroom:], packet.Broadcast, macL2a, 0x88b6)
			return buf, 60
		}},
	}
	for i, c := range tests {
		buf, n := c.make()
		frame := bytes.Clone(buf[Headroom : Headroom+n])
		r := sw.FromPort(c.port, buf, Headroom, n, scratch())
		if r.Action != Flood {
			t.Errorf("%s: %v %v, want a flood", c.name, r.Action, r.Reason)
			continue
		}
		want := Copies{Paths: paths, Ports: []int{2, 3}, Except: c.port}
		if !reflect.DeepEqual(r.Copies, want) || r.Encap != policy.EncapNVGRE {
			t.Errorf("%s: copies %+v %v, want %+v NVGRE", c.name, r.Copies, r.Encap, want)
		}
		if g := packet.NVGRE(r.Data); g.VSID() != 7001 || !bytes.Equal(g.Payload(), frame) {
			t.Errorf("%s: data % x, want the NVGRE header of 7001 and the unchanged frame", c.name, r.Data[:EncapHeaderLen])
		}
		if got := sw.Counters.VSID(7001).Flooded.Load(); got != uint64(3*(i+1)) {
			t.Errorf("%s: flooded %d copies in all, want %d", c.name, got, 3*(i+1))
		}
	}
	if len(ev.events) != 0 {
		t.Errorf("floods raised %+v, want no mismatch", ev.events)
	}
	if got := sw.Counters.Port(3).TxFrames.Load(); got != uint64(len(tests)-1) {
		t.Errorf("port 3 sent %d flooded frames, want %d", got, len(tests)-1)
	}

	// Replies to a flooded request go back by MAC, locally or encapsulated.
	buf, n := arpFrame(macL2a, macL2b, packet.ARPReply, "10.7.0.3", "10.7.0.2", macL2a)
	if r := sw.FromPort(3, buf, Headroom, n, scratch()); r.Action != ToPort || r.Port != 2 {
		t.Errorf("ARP reply to l2a: %v %v, want port 2", r.Action, r.Reason)
	}
	buf, n = arpFrame(macL2c, macL2a, packet.ARPReply, "10.7.0.2", "10.7.0.4", macL2c)
	if r := sw.FromPort(2, buf, Headroom, n, scratch()); r.Action != ToUnderlay || r.Dst != pa2 {
		t.Errorf("ARP reply to l2c: %v %v, want encapsulated to PA2", r.Action, r.Reason)
	}
	// What policy answers is still answered, and other multicast dropped.
	buf, n = arpFrame(packet.Broadcast, macL2a, packet.ARPRequest, "10.7.0.2", "10.7.0.50", packet.MAC{})
	r := sw.FromPort(2, buf, Headroom, n, scratch())
	if r.Action != ToPort || r.Port != 2 || must(packet.ParseARP(packet.Ethernet(r.Data).Payload())).SenderMAC() != macStatic {
		t.Errorf("ARP for 10.7.0.50: %v %v, want the answer from its record", r.Action, r.Reason)
	}
	buf, n = udpFrame(packet.MAC{1, 0, 0x5e, 0, 0, 0xfb}, macL2a, "10.7.0.2", "224.0.0.251", 10, false)
	if r := sw.FromPort(2, buf, Headroom, n, scratch()); r.Reason != ReasonMulticast {
		t.Errorf("IPv4 multicast: %v, want multicast", r.Reason)
	}
	// A broadcast that would not fit the underlay after encapsulation.
	buf, n = udpFrame(packet.Broadcast, macL2a, "0.0.0.0", "255.255.255.255", 1500-28, false)
	if r := sw.FromPort(2, buf, Headroom, n, scratch()); r.Reason != ReasonTooBig {
		t.Errorf("big broadcast: %v, want too-big", r.Reason)
	}
}

// TestL2OnlyFloodAndByMACDoNotAllocate: the destination lists come from the
// snapshots.
func TestL2OnlyFloodAndByMACDoNotAllocate(t *testing.T) {
	sw, _ := l2Host(t, policy.EncapNVGRE)
	f := NewFlows()
	s := scratch()
	var r Result
	arp, an := arpFrame(packet.Broadcast, macL2a, packet.ARPRequest, "10.7.0.2", "10.7.0.77", packet.MAC{})
	udp, un := udpFrame(macL2c, macL2a, "10.7.0.2", "10.7.0.4", 10, true)
	for name, c := range map[string]struct {
		buf []byte
		n   int
		act Action
	}{"flood": {arp, an, Flood}, "by MAC": {udp, un, ToUnderlay}} {
		sw.FromPortFlows(&r, f, 2, c.buf, Headroom, c.n, 0, s) // counters created
		if allocs := testing.AllocsPerRun(100, func() { sw.FromPortFlows(&r, f, 2, c.buf, Headroom, c.n, 0, s) }); allocs != 0 || r.Action != c.act {
			t.Errorf("%s: %v allocations per frame, action %v", name, allocs, r.Action)
		}
	}
}

// TestWithoutL2OnlyUnchanged: in a subnet without L2Only records (5001, on a
// host where 7001 has them) nothing is flooded or switched by MAC.
func TestWithoutL2OnlyUnchanged(t *testing.T) {
	sw, ev := l2Host(t, policy.EncapNVGRE)
	type frame struct {
		buf []byte
		n   int
	}
	mk := func(buf []byte, n int) frame { return frame{buf, n} }
	other := make([]byte, Headroom+60)
	packet.PutEthernet(other[Headroom:], packet.Broadcast, macBlue1, 0x88b6)
	for _, c := range []struct {
		name string
		f    frame
		want Reason
	}{
		{"ARP for an unknown target", mk(arpFrame(packet.Broadcast, macBlue1, packet.ARPRequest, "10.0.0.10", "10.0.0.77", packet.MAC{})), ReasonARPUnknownTarget},
		{"ARP reply", mk(arpFrame(macBlue2, macBlue1, packet.ARPReply, "10.0.0.10", "10.0.0.11", macBlue2)), ReasonARPNotRequest},
		{"ARP probe", mk(arpFrame(packet.Broadcast, macBlue1, packet.ARPRequest, "0.0.0.0", "10.0.0.10", packet.MAC{})), ReasonARPUnknownTarget},
		{"broadcast", mk(udpFrame(packet.Broadcast, macBlue1, "10.0.0.10", "10.0.0.255", 10, false)), ReasonMulticast},
		{"other broadcast", frame{other, 60}, ReasonUnsupportedEtherType},
		{"NS for an unknown target", mk(nsFrame(macBlue1, "fe80::1", "fd00:0:0:1::77")), ReasonNDUnknownTarget},
		{"DAD", mk(nsFrame(macBlue1, "::", "fd00:0:0:1::10")), ReasonNDUnknownTarget},
		{"link-local unicast", mk(udpFrame(macBlue2, macBlue1, "fe80::1", "fe80::2", 10, false)), ReasonMulticast},
		{"unknown CA to a known MAC", mk(udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.77", 10, false)), ReasonNoLookupRecord},
	} {
		if r := sw.FromPort(0, c.f.buf, Headroom, c.f.n, scratch()); r.Action != Drop || r.Reason != c.want {
			t.Errorf("%s: %v %v, want drop %v", c.name, r.Action, r.Reason, c.want)
		}
	}
	if len(ev.events) != 3 {
		t.Errorf("events %+v, want mismatches for 10.0.0.77 (ARP, IP) and fd00:0:0:1::77", ev.events)
	}
	buf, n := arpFrame(packet.Broadcast, macBlue2, packet.ARPRequest, "10.0.0.11", "10.0.0.10", packet.MAC{})
	if r := sw.FromUnderlay(pa2, pa1, encapsulated(5001, buf, n)); r.Reason != ReasonUnsupportedEtherType {
		t.Errorf("ARP from the underlay: %v, want unsupported-ethertype", r.Reason)
	}
	if got := sw.Counters.VSID(5001).Flooded.Load(); got != 0 {
		t.Errorf("5001 flooded %d copies", got)
	}
}

func TestL2OnlyIngress(t *testing.T) {
	sw, _ := l2Host(t, policy.EncapNVGRE)
	// Unicast from an L2Only VM at its PA: to the port with the MAC, no CA checked.
	buf, n := udpFrame(macL2a, macL2c, "10.7.0.4", "10.7.0.2", 10, true)
	frame := bytes.Clone(buf[Headroom : Headroom+n])
	if r := sw.FromUnderlay(pa2, pa1, encapsulated(7001, buf, n)); r.Action != ToPort || r.Port != 2 || !bytes.Equal(r.Data, frame) {
		t.Errorf("l2c -> l2a: %v %v port %d, want port 2", r.Action, r.Reason, r.Port)
	}
	buf, n = udpFrame(macL2a, macL2c, "10.7.0.4", "10.7.0.2", 10, true)
	packet.PutVXLAN(buf[Headroom-8:], 7001)
	if r := sw.FromVXLAN(pa2, pa1, buf[Headroom-8:Headroom+n]); r.Action != ToPort || r.Port != 2 {
		t.Errorf("l2c -> l2a over VXLAN: %v %v, want port 2", r.Action, r.Reason)
	}
	// From the Static VM to an L2Only VM's port, which has no CAs.
	buf, n = udpFrame(macL2a, macStatic, "10.7.0.50", "10.7.0.2", 10, true)
	if r := sw.FromUnderlay(pa2, pa1, encapsulated(7001, buf, n)); r.Action != ToPort || r.Port != 2 {
		t.Errorf("10.7.0.50 -> l2a: %v %v, want port 2", r.Action, r.Reason)
	}
	// Broadcasts and ND to every local port of the subnet.
	for _, c := range []struct {
		name string
		src  netip.Addr
		buf  []byte
		n    int
	}{
		{"ARP from l2c", pa2, nil, 0},
		{"ARP from the Static VM", pa2, nil, 0},
		{"NS from l2d", pa3, nil, 0},
	} {
		switch c.name {
		case "ARP from l2c":
			c.buf, c.n = arpFrame(packet.Broadcast, macL2c, packet.ARPRequest, "10.7.0.4", "10.7.0.2", packet.MAC{})
		case "ARP from the Static VM":
			c.buf, c.n = arpFrame(packet.Broadcast, macStatic, packet.ARPRequest, "10.7.0.50", "10.7.0.2", packet.MAC{})
		default:
			c.buf, c.n = nsFrame(macL2d, "fe80::d", "fd00:7::a")
		}
		pkt := encapsulated(7001, c.buf, c.n)
		r := sw.FromUnderlay(c.src, pa1, pkt)
		if r.Action != Flood || !reflect.DeepEqual(r.Copies, Copies{Ports: []int{2, 3}, Except: -1}) || !bytes.Equal(r.Data, pkt) {
			t.Errorf("%s: %v %v %+v, want a flood to ports 2 and 3", c.name, r.Action, r.Reason, r.Copies)
		}
	}
	if got := sw.Counters.VSID(7001).Flooded.Load(); got != 6 {
		t.Errorf("flooded %d copies, want 6", got)
	}

	// Rejected: wrong PA, unknown MAC, no such local port.
	for _, c := range []struct {
		name   string
		src    netip.Addr
		buf    []byte
		n      int
		reason Reason
		event  mismatch
	}{
		{"IP from l2c at the wrong PA", pa3, nil, 0, ReasonPolicyMismatch, mismatch{7001, netip.MustParseAddr("10.7.0.4"), pa3}},
		{"ARP from l2c at the wrong PA", pa3, nil, 0, ReasonPolicyMismatch, mismatch{7001, netip.Addr{}, pa3}},
		{"ARP from an unknown MAC", pa2, nil, 0, ReasonPolicyMismatch, mismatch{7001, netip.Addr{}, pa2}},
		{"IP from an unknown MAC", pa2, nil, 0, ReasonPolicyMismatch, mismatch{7001, netip.MustParseAddr("10.7.0.4"), pa2}},
		{"to a MAC with no port here", pa2, nil, 0, ReasonNoLocalPort, mismatch{}},
	} {
		switch c.name {
		case "IP from l2c at the wrong PA":
			c.buf, c.n = udpFrame(macL2a, macL2c, "10.7.0.4", "10.7.0.2", 10, true)
		case "ARP from l2c at the wrong PA":
			c.buf, c.n = arpFrame(packet.Broadcast, macL2c, packet.ARPRequest, "10.7.0.4", "10.7.0.2", packet.MAC{})
		case "ARP from an unknown MAC":
			c.buf, c.n = arpFrame(packet.Broadcast, macNobody, packet.ARPRequest, "10.7.0.4", "10.7.0.2", packet.MAC{})
		case "IP from an unknown MAC":
			c.buf, c.n = udpFrame(macL2a, macNobody, "10.7.0.4", "10.7.0.2", 10, true)
		default:
			c.buf, c.n = udpFrame(macL2d, macL2c, "10.7.0.4", "10.7.0.5", 10, true)
		}
		sw, ev := l2Host(t, policy.EncapNVGRE)
		r := sw.FromUnderlay(c.src, pa1, encapsulated(7001, c.buf, c.n))
		if r.Action != Drop || r.Reason != c.reason {
			t.Errorf("%s: %v %v, want drop %v", c.name, r.Action, r.Reason, c.reason)
		}
		if c.event == (mismatch{}) && len(ev.events) != 0 || c.event != (mismatch{}) && (len(ev.events) != 1 || ev.events[0] != c.event) {
			t.Errorf("%s: events %+v, want %+v", c.name, ev.events, c.event)
		}
	}
}
