package fastpath

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

// The fixture: port A at ifindex 1 (the test run's device) and port B at
// ifindex 2, both in VSID 5001; the underlay is ifindex 3.
const (
	ifA, ifB, ifUnderlay = 1, 2, 3
	indexA, indexB       = 5, 6
	vsidA, vsidC         = 5001, 6001
)

func newFixture(t *testing.T) *Datapath {
	t.Helper()
	d := openTest(t)
	for _, p := range []struct {
		ifindex int
		port    Port
	}{
		{ifA, Port{Index: indexA, VSID: vsidA, MAC: macA, CAs: []netip.Addr{caA4, caA6}}},
		{ifB, Port{Index: indexB, VSID: vsidA, MAC: macB, CAs: []netip.Addr{caB4, caB6}}},
	} {
		if err := d.setPort(p.ifindex, p.port, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []uint32{vsidA, vsidC} {
		if err := d.EnsureVSID(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SetLocalPAs([]netip.Addr{paLocal4, paLocal6}); err != nil {
		t.Fatal(err)
	}
	return d
}

func install(t *testing.T, d *Datapath, es ...Egress) {
	t.Helper()
	if err := d.InstallEgress(es); err != nil {
		t.Fatal(err)
	}
}

func counters(t *testing.T, d *Datapath) Counters {
	t.Helper()
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rewritten is frame as a decision rewrites it.
func rewritten(frame []byte, e Egress) []byte {
	want := bytes.Clone(frame)
	eth := packet.Ethernet(want)
	eth.SetDst(e.DstMAC)
	if e.Routed {
		eth.SetSrc(e.SrcMAC)
		if eth.Type() == packet.EtherTypeIPv4 {
			packet.IPv4(eth.Payload()).DecTTL()
		} else {
			packet.IPv6(eth.Payload()).DecHopLimit()
		}
	}
	return want
}

func TestEncapsulate(t *testing.T) {
	d := newFixture(t)
	gen := d.Generation()
	payload := bytes.Repeat([]byte("wnv"), 100)
	for _, tc := range []struct {
		name   string
		frame  []byte
		egress Egress
	}{
		{"NVGRE/IPv4", udpFrame(macGW, macA, caA4, caB4, 64, payload),
			Egress{Dst: caB4, DstMAC: macB, Encap: policy.EncapNVGRE, VSID: vsidA, SrcPA: paLocal4, DstPA: paRemote4}},
		{"VXLAN/IPv4 inner IPv6", udpFrame(macGW, macA, caA6, caB6, 64, payload),
			Egress{Dst: caB6, DstMAC: macB, Encap: policy.EncapVXLAN, VSID: vsidA, SrcPA: paLocal4, DstPA: paRemote4}},
		{"NVGRE/IPv6 routed", udpFrame(macGW, macA, caA4, caC4, 9, payload),
			Egress{Dst: caC4, DstMAC: macB, Routed: true, SrcMAC: macGW, Encap: policy.EncapNVGRE, VSID: vsidC, SrcPA: paLocal6, DstPA: paRemote6}},
		{"NVGRE/IPv6 routed inner IPv6, a gateway MAC from policy", udpFrame(macGW, macA, caA6, netip.MustParseAddr("fd01::9"), 2, payload),
			Egress{Dst: netip.MustParseAddr("fd01::9"), DstMAC: macB, Routed: true, SrcMAC: macDG, Encap: policy.EncapNVGRE, VSID: vsidC, SrcPA: paLocal6, DstPA: paRemote6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.egress
			e.Ifindex, e.Gen, e.OutIfindex, e.MaxLen = ifA, gen, ifUnderlay, MaxLen(1500, e.Encap, e.DstPA.Is6())
			install(t, d, e)
			before := counters(t, d)
			r := run(t, d.objs.WnvPort, tc.frame, 0)
			if r.ret != actRedirect || r.mark != 0 {
				t.Fatalf("action %d mark %#x, want redirect (%d) without mark", r.ret, r.mark, actRedirect)
			}
			checkEncapsulated(t, r.data, e, rewritten(tc.frame, e))

			after := counters(t, d)
			if got := after.VSIDs[e.VSID].Encapsulated - before.VSIDs[e.VSID].Encapsulated; got != 1 {
				t.Errorf("VSID %d encapsulated +%d, want +1", e.VSID, got)
			}
			pa, pb := after.Ports[indexA], before.Ports[indexA]
			if pa.RxFrames-pb.RxFrames != 1 || pa.RxBytes-pb.RxBytes != uint64(len(tc.frame)) {
				t.Errorf("port rx +%d frames +%d bytes, want +1, +%d", pa.RxFrames-pb.RxFrames, pa.RxBytes-pb.RxBytes, len(tc.frame))
			}
			if after.Path.PortFast-before.Path.PortFast != 1 {
				t.Errorf("fast path frames from ports +%d, want +1", after.Path.PortFast-before.Path.PortFast)
			}
		})
	}
}

// checkEncapsulated checks out, the encapsulation of inner as e says,
// with gopacket as an independent decoder.
func checkEncapsulated(t *testing.T, out []byte, e Egress, inner []byte) {
	t.Helper()
	p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v", el.Error())
	}
	var tunnelPayload []byte
	if e.DstPA.Is6() {
		ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if ip == nil {
			t.Fatalf("no outer IPv6 header: %v", p)
		}
		if ip.SrcIP.String() != e.SrcPA.String() || ip.DstIP.String() != e.DstPA.String() || ip.HopLimit != 64 ||
			int(ip.Length) != len(out)-14-40 || ip.NextHeader != layers.IPProtocolGRE {
			t.Errorf("outer IPv6 %v > %v hop limit %d length %d next %v; want %v > %v, 64, %d, GRE",
				ip.SrcIP, ip.DstIP, ip.HopLimit, ip.Length, ip.NextHeader, e.SrcPA, e.DstPA, len(out)-54)
		}
		if be16(out[12:]) != packet.EtherTypeIPv6 {
			t.Errorf("outer EtherType %#x, want IPv6", be16(out[12:]))
		}
	} else {
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil {
			t.Fatalf("no outer IPv4 header: %v", p)
		}
		wantProto := layers.IPProtocolGRE
		if e.Encap == policy.EncapVXLAN {
			wantProto = layers.IPProtocolUDP
		}
		if ip.SrcIP.String() != e.SrcPA.String() || ip.DstIP.String() != e.DstPA.String() || ip.TTL != 64 ||
			ip.Flags != layers.IPv4DontFragment || int(ip.Length) != len(out)-14 || ip.Protocol != wantProto {
			t.Errorf("outer IPv4 %v > %v TTL %d flags %v length %d proto %v; want %v > %v, 64, DF, %d, %v",
				ip.SrcIP, ip.DstIP, ip.TTL, ip.Flags, ip.Length, ip.Protocol, e.SrcPA, e.DstPA, len(out)-14, wantProto)
		}
		if !packet.IPv4HeaderChecksumOK(out[14:34]) {
			t.Errorf("outer IPv4 header checksum %#x is wrong", ip.Checksum)
		}
	}
	if e.Encap == policy.EncapVXLAN {
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		vx, _ := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if udp == nil || vx == nil {
			t.Fatalf("no UDP and VXLAN headers: %v", p)
		}
		if udp.DstPort != 4789 || udp.SrcPort < 49152 || udp.Checksum != 0 || int(udp.Length) != 8+8+len(inner) {
			t.Errorf("UDP %d > %d checksum %#x length %d; want 49152-65535 > 4789, 0, %d", udp.SrcPort, udp.DstPort, udp.Checksum, udp.Length, 16+len(inner))
		}
		if !vx.ValidIDFlag || vx.VNI != e.VSID {
			t.Errorf("VXLAN I flag %v VNI %d, want true, %d", vx.ValidIDFlag, vx.VNI, e.VSID)
		}
		tunnelPayload = vx.LayerPayload()
	} else {
		gre, _ := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if gre == nil {
			t.Fatalf("no GRE header: %v", p)
		}
		if want := slowPathFlowID(t, inner); uint8(gre.Key) != want {
			t.Errorf("FlowID %d, want the slow path's %d for the same flow", uint8(gre.Key), want)
		}
		if !gre.KeyPresent || gre.ChecksumPresent || gre.SeqPresent || gre.Version != 0 ||
			gre.Protocol != layers.EthernetTypeTransparentEthernetBridging || gre.Key>>8 != e.VSID {
			t.Errorf("GRE key present %v checksum %v seq %v version %d protocol %v VSID %d; want key only, TEB, VSID %d",
				gre.KeyPresent, gre.ChecksumPresent, gre.SeqPresent, gre.Version, gre.Protocol, gre.Key>>8, e.VSID)
		}
		tunnelPayload = gre.LayerPayload()
	}
	if !bytes.Equal(tunnelPayload, inner) {
		t.Errorf("inner frame\n got %x\nwant %x", tunnelPayload, inner)
	}
	if e.Routed && be16(inner[12:]) == packet.EtherTypeIPv4 && !packet.IPv4HeaderChecksumOK(tunnelPayload[14:34]) {
		t.Errorf("inner IPv4 header checksum is wrong after the TTL decrement")
	}
}

// slowPathFlowID is the FlowID the slow path gives the flow of frame.
func slowPathFlowID(t *testing.T, frame []byte) uint8 {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var src, dst netip.Addr
	var proto uint8
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		src, dst, proto = netip.AddrFrom4([4]byte(ip.SrcIP.To4())), netip.AddrFrom4([4]byte(ip.DstIP.To4())), uint8(ip.Protocol)
	case *layers.IPv6:
		src, dst, proto = netip.AddrFrom16([16]byte(ip.SrcIP)), netip.AddrFrom16([16]byte(ip.DstIP)), uint8(ip.NextHeader)
	default:
		t.Fatalf("inner frame has no IP header: %v", p)
	}
	var sport, dport uint16
	switch l4 := p.TransportLayer().(type) {
	case *layers.UDP:
		sport, dport = uint16(l4.SrcPort), uint16(l4.DstPort)
	case *layers.TCP:
		sport, dport = uint16(l4.SrcPort), uint16(l4.DstPort)
	}
	return vswitch.FlowID(src, dst, proto, sport, dport)
}

func TestLocal(t *testing.T) {
	d := newFixture(t)
	gen := d.Generation()
	for _, tc := range []struct {
		name   string
		frame  []byte
		egress Egress
	}{
		{"IPv4", udpFrame(macB, macA, caA4, caB4, 64, []byte("hello")), Egress{Dst: caB4}},
		{"IPv4 routed", udpFrame(macGW, macA, caA4, caC4, 64, []byte("hello")), Egress{Dst: caC4, Routed: true, SrcMAC: macGW, VSID: vsidC}},
		{"IPv6 routed", udpFrame(macGW, macA, caA6, netip.MustParseAddr("fd01::9"), 64, []byte("hello")),
			Egress{Dst: netip.MustParseAddr("fd01::9"), Routed: true, SrcMAC: macDG, VSID: vsidC}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.egress
			e.Ifindex, e.Gen, e.Local, e.OutIfindex, e.DstMAC = ifA, gen, true, ifB, macB
			if e.VSID == 0 {
				e.VSID = vsidA
			}
			install(t, d, e)
			before := counters(t, d)
			r := run(t, d.objs.WnvPort, tc.frame, 0)
			if r.ret != actRedirect || r.mark != 0 {
				t.Fatalf("action %d mark %#x, want redirect (%d) without mark", r.ret, r.mark, actRedirect)
			}
			if want := rewritten(tc.frame, e); !bytes.Equal(r.data, want) {
				t.Errorf("frame\n got %x\nwant %x", r.data, want)
			}
			after := counters(t, d)
			if got := after.VSIDs[e.VSID].Local - before.VSIDs[e.VSID].Local; got != 1 {
				t.Errorf("VSID %d local +%d, want +1", e.VSID, got)
			}
			tb, ta := before.Ports[indexB], after.Ports[indexB]
			if ta.TxFrames-tb.TxFrames != 1 || ta.TxBytes-tb.TxBytes != uint64(len(tc.frame)) {
				t.Errorf("port B tx +%d frames +%d bytes, want +1, +%d", ta.TxFrames-tb.TxFrames, ta.TxBytes-tb.TxBytes, len(tc.frame))
			}
		})
	}
}

// TestSlowPath: every frame the fast path does not forward is marked and
// re-injected; the re-injected copy is dropped.
func TestSlowPath(t *testing.T) {
	d := newFixture(t)
	gen := d.Generation()
	caD4 := netip.MustParseAddr("10.0.0.4") // a destination without a decision
	encap := func(dst netip.Addr, e policy.Encapsulation, pa netip.Addr) Egress {
		src := paLocal4
		if pa.Is6() {
			src = paLocal6
		}
		return Egress{Ifindex: ifA, Dst: dst, Gen: gen, OutIfindex: ifUnderlay, DstMAC: macB, Encap: e, VSID: vsidA,
			SrcPA: src, DstPA: pa, MaxLen: MaxLen(1500, e, pa.Is6())}
	}
	staleCA := netip.MustParseAddr("10.0.0.5")
	stale := encap(staleCA, policy.EncapNVGRE, paRemote4)
	stale.Gen = gen - 1
	v6CA := netip.MustParseAddr("10.0.0.6")
	routedCA := netip.MustParseAddr("10.1.0.7")
	routed := encap(routedCA, policy.EncapNVGRE, paRemote4)
	routed.Routed, routed.SrcMAC = true, macGW
	shortCA := netip.MustParseAddr("10.0.0.8")
	short := encap(shortCA, policy.EncapNVGRE, paRemote4)
	short.MaxLen = 100
	goneCA := netip.MustParseAddr("10.0.0.9")
	gone := Egress{Ifindex: ifA, Dst: goneCA, Gen: gen, Local: true, OutIfindex: 99, DstMAC: macB, VSID: vsidA}
	install(t, d, encap(caB4, policy.EncapNVGRE, paRemote4), stale, encap(v6CA, policy.EncapVXLAN, paRemote6), routed, short, gone)

	vlan := make([]byte, 4+len(udpFrame(macB, macA, caA4, caB4, 64, nil)))
	n := packet.PutEthernetVLAN(vlan, macB, macA, 10, packet.EtherTypeIPv4)
	copy(vlan[n:], udpFrame(macB, macA, caA4, caB4, 64, nil)[14:])
	arp := make([]byte, 14+packet.ARPLen)
	packet.PutEthernet(arp, packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, macA, packet.EtherTypeARP)
	packet.PutARP(arp[14:], 1, macA, caA4, packet.MAC{}, caB4)
	arpUnicast := bytes.Clone(arp)
	copy(arpUnicast, macB[:])
	badCsum := udpFrame(macB, macA, caA4, caB4, 64, []byte("x"))
	badCsum[14+10] ^= 0xff
	options := udpFrame(macB, macA, caA4, caB4, 64, []byte("x"))
	options[14] = 0x46

	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"miss", udpFrame(macB, macA, caA4, caD4, 64, []byte("x"))},
		{"stale generation", udpFrame(macB, macA, caA4, staleCA, 64, []byte("x"))},
		{"multicast", udpFrame(packet.MAC{0x01, 0, 0x5e, 0, 0, 1}, macA, caA4, caB4, 64, []byte("x"))},
		{"broadcast", udpFrame(packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, macA, caA4, caB4, 64, []byte("x"))},
		{"VLAN", vlan},
		{"ARP", arp},
		{"ARP unicast", arpUnicast},
		{"unknown source CA", udpFrame(macB, macA, netip.MustParseAddr("10.0.0.66"), caB4, 64, []byte("x"))},
		{"DHCP", udpFrame(macB, macA, netip.MustParseAddr("0.0.0.0"), caB4, 64, []byte("x"))},
		{"too long", udpFrame(macB, macA, caA4, shortCA, 64, make([]byte, 100))},
		{"TTL 1 routed", udpFrame(macGW, macA, caA4, routedCA, 1, []byte("x"))},
		{"VXLAN over IPv6", udpFrame(macB, macA, caA4, v6CA, 64, []byte("x"))},
		{"IPv4 checksum", badCsum},
		{"IPv4 options", options},
		{"IPv6 multicast", udpFrame(packet.MAC{0x33, 0x33, 0, 0, 0, 1}, macA, caA6, netip.MustParseAddr("ff02::1"), 64, nil)},
		{"port gone", udpFrame(macB, macA, caA4, goneCA, 64, []byte("x"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counters(t, d)
			r := run(t, d.objs.WnvPort, tc.frame, 0)
			if r.ret != actRedirect || r.mark != SlowMark {
				t.Errorf("action %d mark %#x, want redirect (%d) with the slow mark", r.ret, r.mark, actRedirect)
			}
			if !bytes.Equal(r.data, tc.frame) {
				t.Errorf("the frame changed on its way to the slow path:\n got %x\nwant %x", r.data, tc.frame)
			}
			if got := counters(t, d).Path.PortSlow - before.Path.PortSlow; got != 1 {
				t.Errorf("slow path frames from ports +%d, want +1", got)
			}
			if r := run(t, d.objs.WnvPort, tc.frame, SlowMark); r.ret != actShot {
				t.Errorf("re-injected copy: action %d, want shot (%d)", r.ret, actShot)
			}
		})
	}

	t.Run("TTL 2 routed is forwarded", func(t *testing.T) {
		if r := run(t, d.objs.WnvPort, udpFrame(macGW, macA, caA4, routedCA, 2, []byte("x")), 0); r.ret != actRedirect || r.mark != 0 {
			t.Errorf("action %d mark %#x, want redirect without mark", r.ret, r.mark)
		}
	})
	t.Run("L2Only port skips the CA check", func(t *testing.T) {
		if err := d.setPort(ifA, Port{Index: indexA, VSID: vsidA, MAC: macA, L2Only: true}, false); err != nil {
			t.Fatal(err)
		}
		defer func() {
			d.setPort(ifA, Port{Index: indexA, VSID: vsidA, MAC: macA, CAs: []netip.Addr{caA4, caA6}}, false)
			d.SetGeneration(gen)
		}()
		// Changing a port's flags invalidates the decisions.
		if g := d.Generation(); g == gen {
			t.Fatalf("generation %d unchanged by a change of the port", g)
		}
		d.SetGeneration(gen)
		if r := run(t, d.objs.WnvPort, udpFrame(macB, macA, netip.MustParseAddr("10.0.0.66"), caB4, 64, []byte("x")), 0); r.ret != actRedirect || r.mark != 0 {
			t.Errorf("action %d mark %#x, want redirect without mark", r.ret, r.mark)
		}
	})
	t.Run("forwarded source of the current generation", func(t *testing.T) {
		outside := netip.MustParseAddr("192.0.2.9")
		frame := udpFrame(macB, macA, outside, caB4, 64, []byte("x"))
		if r := run(t, d.objs.WnvPort, frame, 0); r.ret != actRedirect || r.mark != SlowMark {
			t.Fatalf("before the slow path validated %v: action %d mark %#x, want the slow path", outside, r.ret, r.mark)
		}
		if err := d.InstallForwardedSources([]ForwardedSource{{Ifindex: ifA, Src: outside, Gen: gen}}); err != nil {
			t.Fatal(err)
		}
		if r := run(t, d.objs.WnvPort, frame, 0); r.ret != actRedirect || r.mark != 0 {
			t.Errorf("forwarded source: action %d mark %#x, want redirect without mark", r.ret, r.mark)
		}
		if r := run(t, d.objs.WnvPort, udpFrame(macB, macA, netip.MustParseAddr("192.0.2.10"), caB4, 64, []byte("x")), 0); r.mark != SlowMark {
			t.Errorf("another outside source: mark %#x, want the slow path's", r.mark)
		}
		fs, err := d.ForwardedSources()
		if err != nil || len(fs) != 1 || fs[0] != (ForwardedSource{Ifindex: ifA, Src: outside, Gen: gen}) {
			t.Errorf("ForwardedSources = %+v, %v", fs, err)
		}
		if _, err := d.BumpGeneration(); err != nil {
			t.Fatal(err)
		}
		defer d.SetGeneration(gen)
		if r := run(t, d.objs.WnvPort, frame, 0); r.mark != SlowMark {
			t.Errorf("after the generation changed: mark %#x, want the slow path's", r.mark)
		}
		if err := d.InstallForwardedSources([]ForwardedSource{{Ifindex: 0, Src: outside}}); err == nil {
			t.Error("a forwarded source without an interface was installed")
		}
	})
	t.Run("fast path off", func(t *testing.T) {
		if err := d.SetFastPath(false); err != nil {
			t.Fatal(err)
		}
		defer d.SetFastPath(true)
		frame := udpFrame(macB, macA, caA4, caB4, 64, []byte("x")) // has a decision
		if r := run(t, d.objs.WnvPort, frame, 0); r.ret != actRedirect || r.mark != SlowMark {
			t.Errorf("port: action %d mark %#x, want redirect with the slow mark", r.ret, r.mark)
		}
		if r := run(t, d.objs.WnvUnderlay, tunnelPacket(paRemote4, paLocal4, false, vsidA, frame), 0); r.ret != actOK {
			t.Errorf("underlay: action %d, want ok", r.ret)
		}
	})
	t.Run("generation bump", func(t *testing.T) {
		frame := udpFrame(macB, macA, caA4, caB4, 64, []byte("x"))
		if r := run(t, d.objs.WnvPort, frame, 0); r.mark != 0 {
			t.Fatalf("before the bump: mark %#x, want forwarded", r.mark)
		}
		if _, err := d.BumpGeneration(); err != nil {
			t.Fatal(err)
		}
		defer d.SetGeneration(gen)
		if r := run(t, d.objs.WnvPort, frame, 0); r.mark != SlowMark {
			t.Errorf("after the bump: mark %#x, want the slow mark", r.mark)
		}
	})
}

// TestDrops: spoofed MACs, and the slow path's frames while it is down.
func TestDrops(t *testing.T) {
	d := newFixture(t)
	t.Run("spoofed MAC", func(t *testing.T) {
		before := counters(t, d)
		r := run(t, d.objs.WnvPort, udpFrame(macB, packet.MAC{0x52, 0x54, 0, 0, 0, 0x66}, caA4, caB4, 64, nil), 0)
		if r.ret != actShot {
			t.Errorf("action %d, want shot", r.ret)
		}
		after := counters(t, d)
		if after.Reasons[ReasonSpoofedMAC]-before.Reasons[ReasonSpoofedMAC] != 1 ||
			after.Ports[indexA].Drops-before.Ports[indexA].Drops != 1 || after.VSIDs[vsidA].Drops-before.VSIDs[vsidA].Drops != 1 {
			t.Errorf("spoofed-mac drops not counted once per reason, port and VSID: %+v", after)
		}
	})
	t.Run("slow path down", func(t *testing.T) {
		if err := d.SlowPathAlive(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		defer d.SlowPathAlive(time.Now().Add(time.Hour))
		before := counters(t, d)
		frame := udpFrame(macB, macA, caA4, netip.MustParseAddr("10.0.0.77"), 64, nil)
		if r := run(t, d.objs.WnvPort, frame, 0); r.ret != actShot || r.mark != 0 {
			t.Errorf("port: action %d mark %#x, want shot without mark", r.ret, r.mark)
		}
		if r := run(t, d.objs.WnvUnderlay, tunnelPacket(paRemote4, paLocal4, false, vsidA, frame), 0); r.ret != actShot {
			t.Errorf("underlay: action %d, want shot", r.ret)
		}
		after := counters(t, d)
		if got := after.Reasons[ReasonSlowPathDown] - before.Reasons[ReasonSlowPathDown]; got != 2 {
			t.Errorf("slow-path-down +%d, want +2", got)
		}
		if got := after.VSIDs[vsidA].Drops - before.VSIDs[vsidA].Drops; got != 2 {
			t.Errorf("VSID drops +%d, want +2", got)
		}
		if after.Path.PortSlow != before.Path.PortSlow || after.Path.UnderlaySlow != before.Path.UnderlaySlow {
			t.Errorf("frames counted as handed to the slow path while it is down")
		}
	})
}

func TestDecapsulate(t *testing.T) {
	d := newFixture(t)
	gen := d.Generation()
	for _, tc := range []struct {
		name   string
		srcPA  netip.Addr
		dstPA  netip.Addr
		vxlan  bool
		inner  []byte
		srcCA  netip.Addr
		dstCA  netip.Addr
		srcMAC packet.MAC
	}{
		{"NVGRE/IPv4", paRemote4, paLocal4, false, udpFrame(macA, macB, caB4, caA4, 63, []byte("hi there")), caB4, caA4, macB},
		{"VXLAN/IPv4", paRemote4, paLocal4, true, udpFrame(macA, macB, caB4, caA4, 63, []byte("hi there")), caB4, caA4, macB},
		{"NVGRE/IPv6 inner IPv6", paRemote6, paLocal6, false, udpFrame(macA, macGW, caC4, caA4, 63, []byte("routed")), caC4, caA4, macGW},
		{"VXLAN/IPv6 inner IPv6", paRemote6, paLocal6, true, udpFrame(macA, macB, caB6, caA6, 63, []byte("six")), caB6, caA6, macB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Ingress{VSID: vsidA, SrcPA: tc.srcPA, SrcCA: tc.srcCA, SrcMAC: tc.srcMAC, DstCA: tc.dstCA, DstMAC: macA, Gen: gen, Ifindex: ifA}
			if err := d.InstallIngress([]Ingress{in}); err != nil {
				t.Fatal(err)
			}
			before := counters(t, d)
			pkt := tunnelPacket(tc.srcPA, tc.dstPA, tc.vxlan, vsidA, tc.inner)
			r := run(t, d.objs.WnvUnderlay, pkt, 0)
			if r.ret != actRedirect {
				t.Fatalf("action %d, want redirect", r.ret)
			}
			if !bytes.Equal(r.data, tc.inner) {
				t.Errorf("decapsulated\n got %x\nwant %x", r.data, tc.inner)
			}
			after := counters(t, d)
			if after.VSIDs[vsidA].Decapsulated-before.VSIDs[vsidA].Decapsulated != 1 ||
				after.Ports[indexA].TxFrames-before.Ports[indexA].TxFrames != 1 ||
				after.Ports[indexA].TxBytes-before.Ports[indexA].TxBytes != uint64(len(tc.inner)) ||
				after.Path.UnderlayFast-before.Path.UnderlayFast != 1 {
				t.Errorf("counters not increased by one decapsulated frame of %d bytes: before %+v after %+v", len(tc.inner), before, after)
			}

			// Any other inner source or destination is the slow path's.
			other := bytes.Clone(tc.inner)
			other[5] ^= 1 // destination MAC
			if r := run(t, d.objs.WnvUnderlay, tunnelPacket(tc.srcPA, tc.dstPA, tc.vxlan, vsidA, other), 0); r.ret != actOK {
				t.Errorf("other inner destination MAC: action %d, want ok (slow path)", r.ret)
			}
			if r := run(t, d.objs.WnvUnderlay, tunnelPacket(tc.srcPA, tc.dstPA, tc.vxlan, vsidA+1, tc.inner), 0); r.ret != actOK {
				t.Errorf("other VSID: action %d, want ok (slow path)", r.ret)
			}
		})
	}
}

// TestUnderlayPasses: what is not a decided tunnel packet to a local PA
// passes untouched.
func TestUnderlayPasses(t *testing.T) {
	d := newFixture(t)
	gen := d.Generation()
	inner := udpFrame(macA, macB, caB4, caA4, 63, []byte("x"))
	in := Ingress{VSID: vsidA, SrcPA: paRemote4, SrcCA: caB4, SrcMAC: macB, DstCA: caA4, DstMAC: macA, Gen: gen, Ifindex: ifA}
	if err := d.InstallIngress([]Ingress{in}); err != nil {
		t.Fatal(err)
	}
	badFlags := tunnelPacket(paRemote4, paLocal4, false, vsidA, inner)
	badFlags[34] = 0xb0 // checksum and sequence present
	badVXLAN := tunnelPacket(paRemote4, paLocal4, true, vsidA, inner)
	badVXLAN[42] = 0 // no I flag
	stale := tunnelPacket(paRemote4, paLocal4, false, vsidA, inner)
	for _, tc := range []struct {
		name   string
		pkt    []byte
		before func()
		after  func()
		slow   bool // counted as handed to the slow path
	}{
		{name: "plain UDP to a local PA", pkt: udpFrame(macA, macB, paRemote4, paLocal4, 64, []byte("GET / HTTP/1.1"))},
		{name: "plain IPv6 to a local PA", pkt: udpFrame(macA, macB, paRemote6, paLocal6, 64, []byte("x"))},
		{name: "NVGRE to another PA", pkt: tunnelPacket(paRemote4, netip.MustParseAddr("198.18.0.99"), false, vsidA, inner)},
		{name: "malformed GRE", pkt: badFlags},
		{name: "malformed VXLAN", pkt: badVXLAN},
		{name: "ARP", pkt: func() []byte {
			b := make([]byte, 14+packet.ARPLen)
			packet.PutEthernet(b, macA, macB, packet.EtherTypeARP)
			packet.PutARP(b[14:], 1, macB, paRemote4, packet.MAC{}, paLocal4)
			return b
		}()},
		{name: "miss", pkt: tunnelPacket(paRemote6, paLocal6, false, vsidA, inner), slow: true},
		{name: "stale", pkt: stale, slow: true,
			before: func() { d.BumpGeneration() }, after: func() { d.SetGeneration(gen) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
				defer tc.after()
			}
			before := counters(t, d)
			r := run(t, d.objs.WnvUnderlay, tc.pkt, 0)
			if r.ret != actOK || !bytes.Equal(r.data, tc.pkt) {
				t.Errorf("action %d, changed %v; want ok, untouched", r.ret, !bytes.Equal(r.data, tc.pkt))
			}
			want := uint64(0)
			if tc.slow {
				want = 1
			}
			if got := counters(t, d).Path.UnderlaySlow - before.Path.UnderlaySlow; got != want {
				t.Errorf("tunnel packets left to the slow path +%d, want +%d", got, want)
			}
		})
	}
}

// BenchmarkCounters is what every port listing and counters read costs the
// host: all counter maps, the port array's 4096 slots included.
func BenchmarkCounters(b *testing.B) {
	d := openTest(b)
	for b.Loop() {
		if _, err := d.Counters(); err != nil {
			b.Fatal(err)
		}
	}
}
