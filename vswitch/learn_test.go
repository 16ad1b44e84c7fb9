package vswitch

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// learnHost is l2Host (VSID 7001: l2a on port 2 without CAs, l2b on port 3
// with CA 10.7.0.3, both here at PA1; 10.7.0.50 Static at PA2) with limits,
// and its store, to which tests put what the shell would.
func learnHost(t *testing.T, l Limits) (*Switch, *policy.Store) {
	st := l2Store(t, policy.EncapNVGRE)
	sw := New(Config{UnderlayMTU: 1500, Limits: l})
	sw.SetPolicy(st.Table())
	sw.SetPorts(l2Ports())
	return sw, st
}

// send switches a UDP frame from port (MAC mac) from src to 10.7.0.4 via
// MAC l2c, or an ARP reply from src if arp.
func send(sw *Switch, port int, mac packet.MAC, src string, arp bool) Result {
	buf, n := udpFrame(macL2c, mac, src, "10.7.0.4", 10, true)
	if arp {
		buf, n = arpFrame(macL2c, mac, packet.ARPReply, src, "10.7.0.4", macL2c)
	}
	return sw.FromPort(port, buf, Headroom, n, scratch())
}

// apply does what the shell does with a learned CA: it puts its record,
// replacing a Dynamic record of another MAC.
func apply(t *testing.T, sw *Switch, st *policy.Store, l *Learned) {
	t.Helper()
	var b policy.Batch
	for _, old := range st.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{l.Record.CustomerAddress}, VirtualSubnetID: []policy.VSID{7001}}) {
		if old.MACAddress != l.Record.MACAddress {
			b.RemoveLookupRecords = append(b.RemoveLookupRecords, old)
		}
	}
	b.PutLookupRecords = []policy.LookupRecord{l.Record}
	if err := st.Apply(b); err != nil {
		t.Fatal(err)
	}
	sw.SetPolicy(st.Table())
}

func TestLearnNewSourceCAs(t *testing.T) {
	sw, st := learnHost(t, Limits{})
	r := send(sw, 2, macL2a, "10.7.0.2", false)
	if r.Action != ToUnderlay || r.Learn == nil {
		t.Fatalf("l2a from 10.7.0.2: %v %v learn %v, want sent on and learned", r.Action, r.Reason, r.Learn)
	}
	want := policy.LookupRecord{CustomerAddress: netip.MustParseAddr("10.7.0.2"), VirtualSubnetID: 7001, MACAddress: macL2a, ProviderAddress: pa1,
		Rule: policy.TranslationMethodEncap, Type: policy.Dynamic}
	if r.Learn.Port != 2 || r.Learn.Record != want {
		t.Fatalf("learned %+v, want port 2 and %+v", *r.Learn, want)
	}
	l := *r.Learn
	// Asked once until the shell has had time to put it.
	if r := send(sw, 2, macL2a, "10.7.0.2", false); r.Learn != nil {
		t.Errorf("second frame learned again: %+v", *r.Learn)
	}
	apply(t, sw, st, &l)
	if r := send(sw, 2, macL2a, "10.7.0.2", false); r.Learn != nil || r.Action != ToUnderlay {
		t.Errorf("after the record is in policy: %v learn %v, want sent on, nothing to learn", r.Action, r.Learn)
	}
	// An ARP reply's sender is learned too.
	if r := send(sw, 2, macL2a, "10.7.0.5", true); r.Learn == nil || r.Learn.Record.CustomerAddress != netip.MustParseAddr("10.7.0.5") {
		t.Errorf("ARP reply from 10.7.0.5: learn %v, want 10.7.0.5 learned", r.Learn)
	}
	// Not learned: the port's own CA, addresses outside the on-link
	// prefix (192.168.9.9; IPv6 has none in 7001), the gateway address, a
	// VM without an L2Only record.
	for _, c := range []struct {
		port int
		mac  packet.MAC
		src  string
	}{{3, macL2b, "10.7.0.3"}, {2, macL2a, "192.168.9.9"}, {2, macL2a, "fd00:7::2"}, {2, macL2a, "10.7.0.1"}} {
		if r := send(sw, c.port, c.mac, c.src, false); r.Learn != nil {
			t.Errorf("port %d from %s: learned %+v, want nothing", c.port, c.src, *r.Learn)
		}
	}
	buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 10, true)
	if r := sw.FromPort(0, buf, Headroom, n, scratch()); r.Learn != nil {
		t.Errorf("blue1 (Static): learned %+v", *r.Learn)
	}
	if got := sw.LearnedCount(); got != 2 {
		t.Errorf("LearnedCount %d, want 2", got)
	}
}

// TestLearnedCAAnsweredWithoutFlooding: once its record is in policy, ARP
// for a learned CA is answered and packets to it go by CA, not flooded.
func TestLearnedCAAnsweredWithoutFlooding(t *testing.T) {
	sw, st := learnHost(t, Limits{})
	buf, n := arpFrame(packet.Broadcast, macL2b, packet.ARPRequest, "10.7.0.3", "10.7.0.2", packet.MAC{})
	if r := sw.FromPort(3, buf, Headroom, n, scratch()); r.Action != Flood {
		t.Fatalf("ARP for 10.7.0.2 before learning: %v %v, want flooded", r.Action, r.Reason)
	}
	flooded := sw.Counters.VSID(7001).Flooded.Load()
	r := send(sw, 2, macL2a, "10.7.0.2", false)
	apply(t, sw, st, r.Learn)
	buf, n = arpFrame(packet.Broadcast, macL2b, packet.ARPRequest, "10.7.0.3", "10.7.0.2", packet.MAC{})
	r = sw.FromPort(3, buf, Headroom, n, scratch())
	if r.Action != ToPort || !r.Reply || packet.ARP(packet.Ethernet(r.Data).Payload()).SenderMAC() != macL2a {
		t.Fatalf("ARP for 10.7.0.2 after learning: %v %v, want answered with l2a's MAC", r.Action, r.Reason)
	}
	f := NewFlows()
	for range 2 {
		buf, n := udpFrame(macL2a, macL2b, "10.7.0.3", "10.7.0.2", 10, true)
		sw.FromPortFlows(&r, f, 3, buf, Headroom, n, 0, scratch())
		if r.Action != ToPort || r.Port != 2 {
			t.Fatalf("l2b to 10.7.0.2: %v %v port %d, want delivered to port 2", r.Action, r.Reason, r.Port)
		}
	}
	f.Flush()
	if got := sw.Counters.VSID(7001).Flooded.Load(); got != flooded {
		t.Errorf("flooded copies %d, want only the %d of the ARP before learning", got, flooded)
	}
}

func TestLearnRefusesStaticCA(t *testing.T) {
	sw, _ := learnHost(t, Limits{})
	if r := send(sw, 2, macL2a, "10.7.0.50", false); r.Action != Drop || r.Reason != ReasonStaticCA || r.Learn != nil {
		t.Errorf("l2a from Static 10.7.0.50: %v %v learn %v, want dropped static-ca", r.Action, r.Reason, r.Learn)
	}
	buf, n := arpFrame(packet.Broadcast, macL2a, packet.ARPRequest, "10.7.0.50", "10.7.0.4", packet.MAC{})
	if r := sw.FromPort(2, buf, Headroom, n, scratch()); r.Reason != ReasonStaticCA {
		t.Errorf("l2a's ARP request from 10.7.0.50: %v %v, want dropped static-ca", r.Action, r.Reason)
	}
	if r := send(sw, 2, macL2a, "10.7.0.50", true); r.Reason != ReasonStaticCA {
		t.Errorf("l2a's ARP reply from 10.7.0.50: %v %v, want dropped static-ca", r.Action, r.Reason)
	}
	ports, _, reasons := sw.Counters.Snapshot()
	if reasons[ReasonStaticCA] != 3 {
		t.Errorf("static-ca drops %d, want 3", reasons[ReasonStaticCA])
	}
	for _, p := range ports {
		if p.Index == 2 && p.Drops != 3 {
			t.Errorf("port 2 drops %d, want 3", p.Drops)
		}
	}
	if sw.LearnedCount() != 0 {
		t.Errorf("LearnedCount %d, want 0", sw.LearnedCount())
	}
}

func TestLearnBoundedPerPort(t *testing.T) {
	sw, _ := learnHost(t, Limits{LearnedPerPort: 2})
	t0 := time.Unix(1000, 0)
	sw.Tick(t0)
	for _, ca := range []string{"10.7.0.20", "10.7.0.21"} {
		if r := send(sw, 2, macL2a, ca, false); r.Learn == nil {
			t.Fatalf("from %s: not learned", ca)
		}
	}
	if r := send(sw, 2, macL2a, "10.7.0.22", false); r.Action != Drop || r.Reason != ReasonLearnLimit {
		t.Fatalf("third CA: %v %v, want dropped learn-limit", r.Action, r.Reason)
	}
	// The bound is per port; the learned CAs still pass.
	if r := send(sw, 3, macL2b, "10.7.0.30", false); r.Learn == nil {
		t.Errorf("l2b's first CA not learned")
	}
	if r := send(sw, 2, macL2a, "10.7.0.21", false); r.Action != ToUnderlay {
		t.Errorf("a learned CA at the bound: %v %v, want sent on", r.Action, r.Reason)
	}
	// Once one ages out there is room again.
	sw.Tick(t0.Add(DefaultLearnedAge / 2))
	send(sw, 2, macL2a, "10.7.0.21", false)
	gone := sw.ExpireLearned(t0.Add(DefaultLearnedAge+time.Second), nil)
	if len(gone) != 2 {
		t.Fatalf("expired %+v, want 10.7.0.20 and 10.7.0.30", gone)
	}
	if r := send(sw, 2, macL2a, "10.7.0.22", false); r.Learn == nil {
		t.Errorf("after 10.7.0.20 aged out: %v %v, want 10.7.0.22 learned", r.Action, r.Reason)
	}
	_, _, reasons := sw.Counters.Snapshot()
	if reasons[ReasonLearnLimit] != 1 {
		t.Errorf("learn-limit drops %d, want 1", reasons[ReasonLearnLimit])
	}
}

func TestLearnAgesOutAndForgetsGonePorts(t *testing.T) {
	sw, _ := learnHost(t, Limits{LearnedAge: time.Minute})
	t0 := time.Unix(1000, 0)
	sw.Tick(t0)
	send(sw, 2, macL2a, "10.7.0.20", false)
	send(sw, 2, macL2a, "10.7.0.21", false)
	send(sw, 3, macL2b, "10.7.0.30", false)
	sw.Tick(t0.Add(50 * time.Second))
	send(sw, 2, macL2a, "10.7.0.21", false)
	if gone := sw.ExpireLearned(t0.Add(59*time.Second), nil); len(gone) != 0 {
		t.Fatalf("expired %+v before a minute passed", gone)
	}
	gone := sw.ExpireLearned(t0.Add(61*time.Second), nil)
	if len(gone) != 2 || sw.LearnedCount() != 1 {
		t.Fatalf("expired %+v (%d left), want 10.7.0.20 and 10.7.0.30, 10.7.0.21 left", gone, sw.LearnedCount())
	}
	for _, l := range gone {
		if ca := l.Record.CustomerAddress.String(); ca != "10.7.0.20" && ca != "10.7.0.30" {
			t.Errorf("expired %s", ca)
		}
	}
	// A port detached: its CAs go at the next sweep, however fresh.
	ports := l2Ports().Ports()
	sw.SetPorts(must(NewPortTable(ports[:3])))
	gone = sw.ExpireLearned(t0.Add(62*time.Second), nil)
	if len(gone) != 0 {
		t.Errorf("port 3 detached: expired %+v, want nothing of port 2", gone)
	}
	sw.SetPorts(must(NewPortTable(ports[:2])))
	if gone = sw.ExpireLearned(t0.Add(62*time.Second), nil); len(gone) != 1 || gone[0].Record.CustomerAddress != netip.MustParseAddr("10.7.0.21") {
		t.Errorf("port 2 detached: expired %+v, want 10.7.0.21", gone)
	}
}

// TestLearnMoves: a CA heard from another VM, or from this VM while its
// record says another PA, is learned again; a learned CA the shell did not
// put is asked for again after a second.
func TestLearnMoves(t *testing.T) {
	sw, st := learnHost(t, Limits{})
	t0 := time.Unix(1000, 0)
	sw.Tick(t0)
	apply(t, sw, st, send(sw, 2, macL2a, "10.7.0.2", false).Learn)
	r := send(sw, 3, macL2b, "10.7.0.2", false)
	if r.Learn == nil || r.Learn.Port != 3 || r.Learn.Record.MACAddress != macL2b {
		t.Fatalf("l2b from l2a's learned CA: learn %v, want it moved to l2b", r.Learn)
	}
	apply(t, sw, st, r.Learn)
	if rs := st.LookupRecords(policy.LookupRecordFilter{CustomerAddress: addrs("10.7.0.2")}); len(rs) != 1 || rs[0].MACAddress != macL2b {
		t.Fatalf("records of 10.7.0.2: %+v, want l2b's only", rs)
	}
	// The record moved to another host (the policy server says PA2).
	moved := policy.LookupRecord{CustomerAddress: netip.MustParseAddr("10.7.0.2"), VirtualSubnetID: 7001, MACAddress: macL2b, ProviderAddress: pa2,
		Rule: policy.TranslationMethodEncap, Type: policy.Dynamic}
	apply(t, sw, st, &Learned{Record: moved})
	if r := send(sw, 3, macL2b, "10.7.0.2", false); r.Learn != nil {
		t.Errorf("within a second of asking: learn %+v, want none", *r.Learn)
	}
	sw.Tick(t0.Add(2 * time.Second))
	r = send(sw, 3, macL2b, "10.7.0.2", false)
	if r.Learn == nil || r.Learn.Record.ProviderAddress != pa1 {
		t.Fatalf("l2b heard here while its record says PA2: learn %v, want it learned at PA1", r.Learn)
	}
}

func TestLearnDoesNotAllocateOnceLearned(t *testing.T) {
	sw, st := learnHost(t, Limits{})
	apply(t, sw, st, send(sw, 2, macL2a, "10.7.0.2", false).Learn)
	buf, n := udpFrame(macL2c, macL2a, "10.7.0.2", "10.7.0.4", 10, true)
	f := NewFlows()
	var r Result
	if a := testing.AllocsPerRun(100, func() { sw.FromPortFlows(&r, f, 2, buf, Headroom, n, 0, scratch0) }); a != 0 {
		t.Errorf("%v allocations per frame from a learned CA, want 0", a)
	}
}

var scratch0 = make([]byte, 2048)
