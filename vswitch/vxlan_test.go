package vswitch

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// vxlanHost1 is host1 with VSID 5001 on VXLAN and 5002 on NVGRE.
func vxlanHost1(t *testing.T) (*Switch, *recorder) {
	rec := &recorder{}
	sw := New(Config{UnderlayMTU: 1500, Events: rec})
	st := labStore(t, pa1)
	if _, err := st.AddVirtualSubnet(policy.VirtualSubnet{VirtualSubnetID: 5001, Encapsulation: policy.EncapVXLAN}); err != nil {
		t.Fatal(err)
	}
	sw.SetPolicy(st.Table())
	sw.SetPorts(must(NewPortTable([]PortConfig{
		{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")},
	})))
	return sw, rec
}

func TestEgressPicksEncapsulationOfDestinationSubnet(t *testing.T) {
	sw, _ := vxlanHost1(t)
	for _, fam := range [][2]string{{"10.0.0.10", "10.0.0.11"}, {"fd00:0:0:1::10", "fd00:0:0:1::11"}} {
		buf, n := udpFrame(macBlue2, macBlue1, fam[0], fam[1], 100, true)
		inner := string(buf[Headroom : Headroom+n])
		r := sw.FromPort(0, buf, Headroom, n, scratch())
		if r.Action != ToUnderlay || r.Encap != policy.EncapVXLAN || r.Src != pa1 || r.Dst != pa2 {
			t.Fatalf("%s->%s: %v %v %v %s->%s, want VXLAN 198.18.0.1->198.18.0.2", fam[0], fam[1], r.Action, r.Reason, r.Encap, r.Src, r.Dst)
		}
		if want := FlowID(netip.MustParseAddr(fam[0]), netip.MustParseAddr(fam[1]), packet.ProtoUDP, 40000, 7007); r.FlowID != want {
			t.Errorf("FlowID %d, want %d: it picks the UDP source port", r.FlowID, want)
		}
		v := must(packet.ParseVXLAN(r.Data))
		if v.VNI() != 5001 || r.Data[0] != 0x08 || string(v.Payload()) != inner {
			t.Fatalf("VXLAN header % x, want flags 08 and VNI 5001 before the unchanged frame", r.Data[:8])
		}
	}
	// Routed into 5002, which stays on NVGRE: the destination subnet decides.
	buf, n := udpFrame(GatewayMAC, macBlue1, "10.0.0.10", "10.0.1.10", 100, true)
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToUnderlay || r.Encap != policy.EncapNVGRE || r.Dst != pa3 {
		t.Fatalf("routed to 5002: %v %v %v, want NVGRE to %s", r.Action, r.Reason, r.Encap, pa3)
	}
	if g := must(packet.ParseNVGRE(r.Data)); g.VSID() != 5002 {
		t.Fatalf("NVGRE VSID %d, want 5002", g.VSID())
	}
}

func TestVXLANTooBigUsesItsOverhead(t *testing.T) {
	sw, _ := vxlanHost1(t)
	// 1458-byte inner IP packets fit NVGRE over a 1500 underlay, not VXLAN.
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 1458-28, true)
	r := sw.FromPort(0, buf, Headroom, n, scratch())
	if r.Action != ToPort {
		t.Fatalf("got %v %v, want an ICMP reply", r.Action, r.Reason)
	}
	ip := must(packet.ParseIPv4(packet.Ethernet(r.Data).Payload()))
	if m := must(packet.ParseICMPv4(ip.Payload())); m.NextHopMTU() != 1450 {
		t.Fatalf("next-hop MTU %d, want 1450 (1500 - 50 of VXLAN)", m.NextHopMTU())
	}
	buf, n = udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 1450-28, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Action != ToUnderlay {
		t.Fatalf("1450 bytes: %v %v, want encapsulation", r.Action, r.Reason)
	}
}

func vxlanFrom(vni uint32, dstMAC, srcMAC packet.MAC, src, dst string) []byte {
	buf, n := udpFrame(dstMAC, srcMAC, src, dst, 20, true)
	packet.PutVXLAN(buf[Headroom-8:], vni)
	return buf[Headroom-8 : Headroom+n]
}

func TestVXLANIngressValidated(t *testing.T) {
	cases := []struct {
		name    string
		src     netip.Addr
		payload []byte
		reason  Reason
	}{
		{"valid", pa2, vxlanFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"), ReasonNone},
		{"routed by host3", pa3, vxlanFrom(5001, macBlue1, GatewayMAC, "10.0.1.10", "10.0.0.10"), ReasonNone},
		{"wrong PA", pa3, vxlanFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"), ReasonPolicyMismatch},
		{"wrong MAC", pa2, vxlanFrom(5001, macBlue1, macRed2, "10.0.0.11", "10.0.0.10"), ReasonPolicyMismatch},
		{"VNI not here", pa2, vxlanFrom(7777, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"), ReasonUnknownVSID},
		{"no I flag", pa2, []byte{0, 0, 0, 0, 0, 0x13, 0x89, 0}, ReasonMalformedVXLAN},
		{"short", pa2, []byte{8, 0, 0}, ReasonMalformedVXLAN},
	}
	for _, c := range cases {
		sw, ev := vxlanHost1(t)
		r := sw.FromVXLAN(c.src, pa1, c.payload)
		if c.reason == ReasonNone {
			if r.Action != ToPort || r.Port != 0 || string(r.Data) != string(c.payload[8:]) {
				t.Errorf("%s: %v %v, want the inner frame on port 0", c.name, r.Action, r.Reason)
			}
			continue
		}
		if r.Action != Drop || r.Reason != c.reason || sw.Counters.Dropped(c.reason) != 1 {
			t.Errorf("%s: %v %v, want drop %v", c.name, r.Action, r.Reason, c.reason)
		}
		if c.reason == ReasonPolicyMismatch && (len(ev.events) != 1 || ev.events[0].pa != c.src) {
			t.Errorf("%s: events %+v, want one mismatch from %s", c.name, ev.events, c.src)
		}
	}
}

func TestOverhead(t *testing.T) {
	for _, c := range []struct {
		e    policy.Encapsulation
		v6   bool
		want int
	}{{policy.EncapNVGRE, false, 42}, {policy.EncapNVGRE, true, 62}, {policy.EncapVXLAN, false, 50}, {policy.EncapVXLAN, true, 70}} {
		if got := Overhead(c.e, c.v6); got != c.want {
			t.Errorf("Overhead(%v, v6=%v) = %d, want %d", c.e, c.v6, got, c.want)
		}
	}
}

// FromVXLANSegments gives every datagram of a coalesced read the verdict
// FromVXLAN gives it alone, and counts the same.
func TestVXLANSegmentsMatchOneByOne(t *testing.T) {
	const size = 100
	var buf []byte
	add := func(d []byte) {
		seg := make([]byte, size)
		copy(seg, d)
		buf = append(buf, seg[:len(d)]...)
		buf = append(buf, make([]byte, size-len(d))...)
	}
	blue2 := vxlanFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10")
	add(blue2)
	add(blue2)
	add(vxlanFrom(5001, macBlue1, macRed2, "10.0.0.11", "10.0.0.10")) // wrong MAC: a mismatch
	add(blue2)
	add(vxlanFrom(5001, macBlue1, macBlue2, "10.0.0.12", "10.0.0.10")) // unknown CA
	last := vxlanFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10")
	buf = append(buf, last...) // shorter than size
	swAll, _ := vxlanHost1(t)
	got := swAll.FromVXLANSegments(pa2, pa1, buf, size, nil)
	swOne, _ := vxlanHost1(t)
	var n int
	for off := 0; off < len(buf); off += size {
		want := swOne.FromVXLAN(pa2, pa1, buf[off:min(off+size, len(buf))])
		r := got[n]
		if r.Action != want.Action || r.Reason != want.Reason || r.Port != want.Port || string(r.Data) != string(want.Data) {
			t.Errorf("datagram %d: %v %v port %d, alone %v %v port %d", n, r.Action, r.Reason, r.Port, want.Action, want.Reason, want.Port)
		}
		n++
	}
	if len(got) != n || n != 6 {
		t.Fatalf("%d results for %d datagrams", len(got), n)
	}
	a, b := swAll.Counters.VSID(5001), swOne.Counters.VSID(5001)
	if a.Decapsulated.Load() != b.Decapsulated.Load() || a.Drops.Load() != b.Drops.Load() || swAll.Counters.Port(0).TxFrames.Load() != swOne.Counters.Port(0).TxFrames.Load() {
		t.Errorf("counters differ: decap %d/%d drops %d/%d", a.Decapsulated.Load(), b.Decapsulated.Load(), a.Drops.Load(), b.Drops.Load())
	}
}
