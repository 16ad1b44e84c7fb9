package vswitch

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// traceInput is a frame a VM sends on port, or (port < 0) a packet from
// the underlay from src to dst.
type traceInput struct {
	port     int
	frame    []byte
	src, dst netip.Addr
	encap    policy.Encapsulation
	payload  []byte
	// rewritten: frame is an IP Rewrite packet from the underlay.
	rewritten bool
}

func fromPort(port int, buf []byte, n int) traceInput {
	return traceInput{port: port, frame: append([]byte(nil), buf[Headroom:Headroom+n]...)}
}

func fromUnderlay(src netip.Addr, payload []byte) traceInput {
	return traceInput{port: -1, src: src, dst: pa1, payload: payload}
}

func (in traceInput) trace(sw *Switch) TraceResult {
	if in.rewritten {
		return sw.TraceFromRewritten(in.frame)
	}
	if in.port >= 0 {
		return sw.TraceFromPort(in.port, in.frame)
	}
	return sw.TraceFromUnderlay(in.src, in.dst, in.encap, in.payload)
}

// run switches the input for real.
func (in traceInput) run(sw *Switch) Result {
	if in.rewritten {
		return sw.FromRewritten(append([]byte(nil), in.frame...), false)
	}
	if in.port >= 0 {
		buf := make([]byte, Headroom+len(in.frame))
		copy(buf[Headroom:], in.frame)
		return sw.FromPort(in.port, buf, Headroom, len(in.frame), scratch())
	}
	p := append([]byte(nil), in.payload...)
	if in.encap == policy.EncapVXLAN {
		return sw.FromVXLAN(in.src, in.dst, p)
	}
	return sw.FromUnderlay(in.src, in.dst, p)
}

func udpTo(src, dst string, dstMAC packet.MAC) traceInput {
	buf, n := udpFrame(dstMAC, macBlue1, src, dst, 20, true)
	return fromPort(0, buf, n)
}

func frameOf(t *testing.T, f TraceFrame) []byte {
	t.Helper()
	b, err := f.Frame()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dropCase makes a switch, perhaps with traffic behind it, and the input
// it drops; object is part of what the trace must name to fix.
type dropCase struct {
	setup  func(t *testing.T) (*Switch, traceInput)
	object string
}

func onHost1(in traceInput) func(*testing.T) (*Switch, traceInput) {
	return func(t *testing.T) (*Switch, traceInput) {
		sw, _ := host1(t)
		return sw, in
	}
}

func withStore(edit func(st *policy.Store), in traceInput) func(*testing.T) (*Switch, traceInput) {
	return func(t *testing.T) (*Switch, traceInput) {
		sw, _ := host1(t)
		st := labStore(t, pa1)
		edit(st)
		sw.SetPolicy(st.Table())
		return sw, in
	}
}

func keyed(in traceInput) func(*testing.T) (*Switch, traceInput) {
	return func(t *testing.T) (*Switch, traceInput) { return keyedHost1(t), in }
}

func redirectFrom(msg []byte) traceInput { return fromUnderlay(pa2, msg) }

// notTraced are the reasons no dry run of a frame can give: they are the
// host's hold queue's (a frame parked too long, or beyond the queue's
// bounds), the kernel's alone, or need a record policy.Store never makes
// usable (a Rule other than Encap or Nat is refused).
var notTraced = map[Reason]string{
	ReasonMissTimeout:     "the host's hold queue",
	ReasonHoldOverflow:    "the host's hold queue",
	ReasonHoldPortShare:   "the host's hold queue",
	ReasonSlowPathDown:    "the kernel fast path",
	ReasonRuleUnsupported: "unreachable through policy.Store",
	ReasonWrongVLAN:       "the kernel fast path",
}

func dropCases() map[Reason]dropCase {
	otherKey := [32]byte{0x33}
	macNoPort := packet.MAC{2, 0, 0, 0, 0x99, 1}
	addRec := func(ca string, pa netip.Addr) func(st *policy.Store) {
		return func(st *policy.Store) {
			must(st.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr(ca), VirtualSubnetID: 5001, MACAddress: macNoPort,
				ProviderAddress: pa, Rule: policy.TranslationMethodEncap}))
		}
	}
	rateLimited := func(limits Limits, miss func(sw *Switch)) func(*testing.T) (*Switch, traceInput) {
		return func(t *testing.T) (*Switch, traceInput) {
			sw := New(Config{UnderlayMTU: 1500, Limits: limits})
			h, _ := host1(t)
			sw.SetPolicy(h.Policy())
			sw.SetPorts(h.Ports())
			sw.Tick(time.Unix(1000, 0))
			miss(sw)
			return sw, udpTo("10.0.0.10", "10.0.0.99", macBlue2)
		}
	}
	return map[Reason]dropCase{
		ReasonMalformed:   {onHost1(traceInput{port: 0, frame: []byte{1, 2, 3}}), "the frame"},
		ReasonUnknownPort: {onHost1(func() traceInput { in := udpTo("10.0.0.10", "10.0.0.11", macBlue2); in.port = 9; return in }()), "port index 9"},
		ReasonSpoofedMAC: {onHost1(func() traceInput {
			buf, n := udpFrame(macBlue2, macBlue3, "10.0.0.10", "10.0.0.11", 20, true)
			return fromPort(0, buf, n)
		}()), "port blue1"},
		ReasonSpoofedCA: {onHost1(udpTo("10.0.0.99", "10.0.0.11", macBlue2)), "port blue1"},
		ReasonUnsupportedEtherType: {onHost1(func() traceInput {
			buf := make([]byte, Headroom+60)
			packet.PutEthernet(buf[Headroom:], macBlue2, macBlue1, 0x88b5)
			return fromPort(0, buf, 60)
		}()), "the frame"},
		ReasonMulticast: {onHost1(udpTo("10.0.0.10", "10.0.0.255", packet.Broadcast)), "the frame"},
		ReasonARPUnknownTarget: {onHost1(func() traceInput {
			buf, n := arpFrame(packet.Broadcast, macBlue1, packet.ARPRequest, "10.0.0.10", "10.0.0.99", packet.MAC{})
			return fromPort(0, buf, n)
		}()), "lookup record 10.0.0.99 in VSID 5001"},
		ReasonARPNotRequest: {onHost1(func() traceInput {
			buf, n := arpFrame(macBlue2, macBlue1, packet.ARPReply, "10.0.0.10", "10.0.0.11", macBlue2)
			return fromPort(0, buf, n)
		}()), "the frame"},
		ReasonNDUnknownTarget: {onHost1(func() traceInput {
			buf, n := nsFrame(macBlue1, "fd00:0:0:1::10", "fd00:0:0:1::99")
			return fromPort(0, buf, n)
		}()), "lookup record fd00:0:0:1::99 in VSID 5001"},
		ReasonNoRoute: {func(t *testing.T) (*Switch, traceInput) {
			sw, _ := host1(t)
			sw.SetPorts(must(NewPortTable(append(sw.Ports().Ports(), PortConfig{Index: 2, Name: "lonely", MAC: macNoPort, VSID: 9999, CAs: addrs("10.9.0.10")}))))
			buf, n := udpFrame(macBlue2, macNoPort, "10.9.0.10", "10.9.0.11", 20, true)
			return sw, fromPort(2, buf, n)
		}, "customer routes of VSID 9999"},
		ReasonOtherRoutingDomain: {onHost1(udpTo("10.0.0.10", "192.168.1.1", GatewayMAC)), "routing domain " + blueRD.String()},
		ReasonNoLookupRecord:     {onHost1(udpTo("10.0.0.10", "10.0.0.99", macBlue2)), "lookup record 10.0.0.99 in VSID 5001"},
		ReasonNoLocalPA:          {withStore(addRec("10.0.0.77", netip.MustParseAddr("fd00:198::2")), udpTo("10.0.0.10", "10.0.0.77", macNoPort)), "provider addresses of this host"},
		ReasonNoLocalPort:        {withStore(addRec("10.0.0.78", pa1), udpTo("10.0.0.10", "10.0.0.78", macNoPort)), "lookup record 10.0.0.78 in VSID 5001"},
		ReasonTTLExceeded: {func(t *testing.T) (*Switch, traceInput) {
			sw, _ := host1(t)
			f := frameOf(t, TraceFrame{SrcMAC: macBlue1, DstMAC: GatewayMAC, Src: netip.MustParseAddr("10.0.0.10"), Dst: netip.MustParseAddr("10.0.1.10"), Proto: packet.ProtoUDP, TTL: 1})
			return sw, traceInput{port: 0, frame: f}
		}, "the packet"},
		ReasonTooBig: {onHost1(func() traceInput {
			buf, n := udpFrame(macBlue2, macBlue1, "10.0.0.10", "10.0.0.11", 1472, true)
			return fromPort(0, buf, n)
		}()), "MTU of port blue1"},
		ReasonToGateway:      {onHost1(udpTo("10.0.0.10", "10.0.0.1", GatewayMAC)), "the gateway address"},
		ReasonMalformedGRE:   {onHost1(fromUnderlay(pa2, []byte{0x20, 0x00, 0x08, 0x00, 0, 0, 0, 0})), "PA 198.18.0.2"},
		ReasonMalformedVXLAN: {onHost1(traceInput{port: -1, src: pa2, dst: pa1, encap: policy.EncapVXLAN, payload: make([]byte, 8)}), "PA 198.18.0.2"},
		ReasonUnknownVSID:    {onHost1(fromUnderlay(pa2, encapFrom(7777, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"))), "ports in VSID 7777"},
		ReasonPolicyMismatch: {onHost1(fromUnderlay(pa3, encapFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"))), "lookup record 10.0.0.11 in VSID 5001"},
		ReasonNotForLocalPA: {onHost1(func() traceInput {
			in := fromUnderlay(pa2, encapFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"))
			in.dst = pa3
			return in
		}()), "provider address 198.18.0.3"},
		ReasonBadRedirect:   {keyed(redirectFrom(signed(pa3, 10, &keyPA2)[:60])), "redirect from PA 198.18.0.2"},
		ReasonStaleRedirect: {keyed(redirectFrom(BuildSignedRedirect(make([]byte, 128), 5001, netip.MustParseAddr("10.0.0.10"), pa2, pa3, 10, &keyPA2))), "redirect from PA 198.18.0.2"},
		ReasonMissRateLimited: {rateLimited(Limits{MissRate: 1, MissBurst: 1}, func(sw *Switch) {
			udpTo("10.0.0.10", "10.0.0.98", macBlue2).run(sw)
		}), "port blue1"},
		ReasonLookupFailed: {rateLimited(Limits{}, func(sw *Switch) {
			sw.LookupFailed(Miss{VSID: 5001, CA: netip.MustParseAddr("10.0.0.99")}, time.Unix(1000, 0))
		}), "lookup record 10.0.0.99 in VSID 5001"},
		ReasonStormControl: {func(t *testing.T) (*Switch, traceInput) {
			l2, _ := l2Host(t, policy.EncapNVGRE)
			sw := New(Config{UnderlayMTU: 1500, Limits: Limits{FloodRate: 1, FloodBurst: 1}})
			sw.SetPolicy(l2.Policy())
			sw.SetPorts(l2.Ports())
			sw.Tick(time.Unix(1000, 0))
			buf, n := arpFrame(packet.Broadcast, macL2a, packet.ARPRequest, "10.7.0.2", "10.7.0.77", packet.MAC{})
			in := fromPort(2, buf, n)
			if r := in.run(sw); r.Action != Flood {
				t.Fatalf("first broadcast: %v %v, want Flood", r.Action, r.Reason)
			}
			return sw, in
		}, "port l2a"},
		ReasonRedirectUnauthenticated: {onHost1(redirectFrom(signed(pa3, 10, nil))), "redirect from PA 198.18.0.2"},
		ReasonRedirectBadMAC:          {keyed(redirectFrom(signed(pa3, 10, &otherKey))), "redirect from PA 198.18.0.2"},
		ReasonRedirectReplay: {func(t *testing.T) (*Switch, traceInput) {
			sw := keyedHost1(t)
			if r := redirectFrom(signed(pa3, 10, &keyPA2)).run(sw); r.Action != Redirect {
				t.Fatalf("first redirect: %v %v", r.Action, r.Reason)
			}
			return sw, redirectFrom(signed(pa3, 10, &keyPA2))
		}, "redirect from PA 198.18.0.2"},
		ReasonRedirectLoopback:    {keyed(redirectFrom(signed(netip.MustParseAddr("127.0.0.1"), 10, &keyPA2))), "redirect from PA"},
		ReasonRedirectUnspecified: {keyed(redirectFrom(signed(netip.MustParseAddr("0.0.0.0"), 10, &keyPA2))), "redirect from PA"},
		ReasonRedirectNotUnicast:  {keyed(redirectFrom(signed(netip.MustParseAddr("224.0.0.1"), 10, &keyPA2))), "redirect from PA"},
		ReasonRedirectOwnPA:       {keyed(redirectFrom(signed(pa1, 10, &keyPA2))), "redirect from PA"},
		ReasonRedirectFamily:      {keyed(redirectFrom(signed(netip.MustParseAddr("fd00:198:18::3"), 10, &keyPA2))), "redirect from PA"},
		ReasonRewriteMismatch: {func(t *testing.T) (*Switch, traceInput) {
			_, b, _ := greenHosts(t)
			buf, n := udpFrame(macGreen2, macGreen1, "10.0.0.10", "10.0.0.11", 40, true)
			f := append([]byte(nil), buf[Headroom:Headroom+n]...)
			packet.IPv4(f[packet.EthernetHeaderLen:]).SetAddrs(netip.MustParseAddr("198.18.0.99"), green2PA4, false)
			return b, traceInput{port: -1, frame: f, rewritten: true}
		}, "lookup record at PA 198.18.0.99"},
		ReasonStaticCA: {func(t *testing.T) (*Switch, traceInput) {
			sw, _ := learnHost(t, Limits{})
			buf, n := udpFrame(macL2c, macL2a, "10.7.0.50", "10.7.0.4", 10, true)
			return sw, fromPort(2, buf, n)
		}, "lookup record 10.7.0.50 in VSID 7001"},
		ReasonLearnLimit: {func(t *testing.T) (*Switch, traceInput) {
			sw, _ := learnHost(t, Limits{LearnedPerPort: 1})
			if r := send(sw, 2, macL2a, "10.7.0.20", false); r.Learn == nil {
				t.Fatal("10.7.0.20 not learned")
			}
			buf, n := udpFrame(macL2c, macL2a, "10.7.0.21", "10.7.0.4", 10, true)
			return sw, fromPort(2, buf, n)
		}, "port l2a"},
		ReasonNoExternalRouter: {withStore(func(st *policy.Store) { st.SetGlobal(policy.Global{UseExternalRouter: true}) },
			udpTo("10.0.0.10", "10.0.1.10", GatewayMAC)), "customer routes of VSID 5001"},
	}
}

// TestTraceNamesEveryDropReason traces, for every reason the switch knows,
// a frame it drops for it: the trace must end in a drop step naming that
// reason and the object to fix, change nothing, and agree with what the
// switch then does with the same frame.
func TestTraceNamesEveryDropReason(t *testing.T) {
	cases := dropCases()
	for _, reason := range Reasons() {
		c, ok := cases[reason]
		if !ok {
			if _, skip := notTraced[reason]; !skip {
				t.Errorf("reason %s has no trace case: add one to dropCases (or, if no frame can be traced to it, to notTraced)", reason)
			}
			continue
		}
		t.Run(reason.String(), func(t *testing.T) {
			sw, in := c.setup(t)
			ev := &recorder{}
			sw.cfg.Events = ev
			_, _, before := sw.Counters.Snapshot()
			res := in.trace(sw)
			if _, _, after := sw.Counters.Snapshot(); !reflect.DeepEqual(before, after) {
				t.Errorf("the trace changed the counters: %v -> %v", before, after)
			}
			if len(ev.events) != 0 {
				t.Errorf("the trace raised events %v", ev.events)
			}
			var drop *Step
			for i := range res.Steps {
				if res.Steps[i].Step == "drop" {
					drop = &res.Steps[i]
				}
			}
			if drop == nil || drop.Reason != reason.String() {
				t.Fatalf("steps %+v: want a drop step for %s", res.Steps, reason)
			}
			if !strings.Contains(drop.Object, c.object) || drop.Fix == "" {
				t.Errorf("drop step names object %q, fix %q: want the object %q and a fix", drop.Object, drop.Fix, c.object)
			}
			r := in.run(sw)
			if r.Action.String() != res.Verdict || sw.Counters.Dropped(reason) != before[reason]+1 {
				t.Errorf("the switch then made %v %v (%s counted %d more); the trace said %s", r.Action, r.Reason, reason, sw.Counters.Dropped(reason)-before[reason], res.Verdict)
			}
		})
	}
}

// wantSteps checks that res has the steps of kinds in order (others may be
// between them), each naming its object if one is given as kind=object.
func wantSteps(t *testing.T, what string, res *TraceResult, kinds ...string) {
	t.Helper()
	i := 0
	for _, s := range res.Steps {
		if i == len(kinds) {
			break
		}
		kind, obj, _ := strings.Cut(kinds[i], "=")
		if s.Step == kind && strings.Contains(s.Object, obj) {
			i++
		}
	}
	if i < len(kinds) {
		t.Errorf("%s: no step %q in order in:\n%s", what, kinds[i], stepsText(res.Steps))
	}
}

func stepsText(steps []Step) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString("  " + s.Step + ": " + s.Detail + " [" + s.Object + "]\n")
	}
	return b.String()
}

// hostWith is a switch with the lab's policy at localPA, edited, and ports.
func hostWith(t *testing.T, localPA netip.Addr, edit func(*policy.Store), ports ...PortConfig) *Switch {
	st := labStore(t, localPA)
	if edit != nil {
		edit(st)
	}
	sw := New(Config{UnderlayMTU: 1500})
	sw.SetPolicy(st.Table())
	sw.SetPorts(must(NewPortTable(ports)))
	return sw
}

var (
	portBlue1 = PortConfig{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10", "fd00:0:0:1::10")}
	portBlue2 = PortConfig{Index: 0, Name: "blue2", MAC: macBlue2, VSID: 5001, CAs: addrs("10.0.0.11", "fd00:0:0:1::11")}
	portBlue3 = PortConfig{Index: 0, Name: "blue3", MAC: macBlue3, VSID: 5002, CAs: addrs("10.0.1.10", "fd00:0:0:2::10")}
)

func tracePacket(t *testing.T, sw *Switch, dst string, f TraceFrame) (*TraceResult, *TraceResult) {
	t.Helper()
	p, _ := sw.Ports().Port(0)
	f.Dst = netip.MustParseAddr(dst)
	if !f.Src.IsValid() {
		f.Src = p.CAs[0]
		if f.Dst.Is6() {
			f.Src = p.CAs[1]
		}
	}
	if f.Proto == 0 {
		f.Proto = packet.ProtoTCP
		f.DstPort = 80
	}
	resolve, pkt, _, err := sw.TracePacket(0, f)
	if err != nil || pkt == nil {
		t.Fatalf("trace to %s: %v, resolve %+v", dst, err, resolve)
	}
	return resolve, pkt
}

// arrive traces on sw the arrival of what res sent.
func arrive(t *testing.T, sw *Switch, res *TraceResult) TraceResult {
	t.Helper()
	if res.Outer == nil {
		t.Fatalf("%s: no outer packet", res.Verdict)
	}
	return sw.TraceFromUnderlay(res.Outer.Src, res.Outer.Dst, res.Outer.Encap, res.Outer.Payload)
}

func TestTraceSameSubnet(t *testing.T) {
	h1 := hostWith(t, pa1, nil, portBlue1)
	resolve, pkt := tracePacket(t, h1, "10.0.0.11", TraceFrame{})
	wantSteps(t, "ARP", resolve, "port=port blue1", "arp")
	if resolve.Verdict != "to-port" || resolve.FastPath {
		t.Errorf("ARP: %s fast %v, want an answer on the slow path", resolve.Verdict, resolve.FastPath)
	}
	wantSteps(t, "packet", pkt, "port=port blue1", "source-mac", "source-ca", "on-link=customer route 10.0.0.0/24 of VSID 5001",
		"lookup=lookup record 10.0.0.11 in VSID 5001", "encapsulate=virtual subnet 5001", "outer=provider address 198.18.0.1", "fast-path")
	if pkt.Verdict != "to-underlay" || pkt.Outer.Dst != pa2 || pkt.Outer.Encap != policy.EncapNVGRE || pkt.Decision == nil || pkt.Decision.DstPA != pa2 {
		t.Fatalf("packet: %+v", pkt)
	}
	h2 := hostWith(t, pa2, nil, portBlue2)
	in := arrive(t, h2, pkt)
	wantSteps(t, "arrival", &in, "decapsulate", "validate=lookup record 10.0.0.10 in VSID 5001", "deliver=port blue2", "fast-path")
	if in.Verdict != "to-port" || in.Ingress == nil || in.Ingress.SrcPA != pa1 {
		t.Fatalf("arrival: %+v", in)
	}
}

func TestTraceRouted(t *testing.T) {
	h1 := hostWith(t, pa1, nil, portBlue1)
	resolve, pkt := tracePacket(t, h1, "10.0.1.10", TraceFrame{})
	wantSteps(t, "ARP for the gateway", resolve, "arp")
	if !strings.Contains(resolve.Steps[len(resolve.Steps)-2].Detail, "10.0.0.1") {
		t.Errorf("the VM resolves its gateway 10.0.0.1:\n%s", stepsText(resolve.Steps))
	}
	wantSteps(t, "packet", pkt, "on-link", "route=customer route 10.0.1.0/24", "lookup=lookup record 10.0.1.10 in VSID 5002", "routed", "encapsulate=virtual subnet 5002", "outer")
	if pkt.Outer == nil || pkt.Outer.Dst != pa3 || pkt.Outer.VSID != 5002 {
		t.Fatalf("packet: %+v", pkt)
	}
	in := arrive(t, hostWith(t, pa3, nil, portBlue3), pkt)
	wantSteps(t, "arrival", &in, "decapsulate", "validate=lookup record 10.0.0.10 in VSID 5001", "deliver=port blue3")
	if !strings.Contains(in.Steps[1].Detail, "routed") {
		t.Errorf("arrival validates a routed frame:\n%s", stepsText(in.Steps))
	}
}

func TestTraceLocal(t *testing.T) {
	blue2Here := portBlue2
	blue2Here.Index = 1
	sw := hostWith(t, pa1, func(st *policy.Store) {
		must(st.SetLookupRecords(policy.LookupRecordFilter{MACAddress: []packet.MAC{macBlue2}}, policy.LookupRecordChange{ProviderAddress: &pa1}))
	}, portBlue1, blue2Here)
	_, pkt := tracePacket(t, sw, "10.0.0.11", TraceFrame{})
	wantSteps(t, "local", pkt, "lookup=lookup record 10.0.0.11", "deliver=port blue2", "fast-path")
	if pkt.Verdict != "to-port" || pkt.Port != 1 || pkt.Outer != nil || pkt.Decision == nil || pkt.Decision.Local != 1 {
		t.Fatalf("local: %+v", pkt)
	}
}

func TestTraceVXLAN(t *testing.T) {
	vx := func(st *policy.Store) {
		must(st.AddVirtualSubnet(policy.VirtualSubnet{VirtualSubnetID: 5001, Encapsulation: policy.EncapVXLAN}))
	}
	_, pkt := tracePacket(t, hostWith(t, pa1, vx, portBlue1), "fd00:0:0:1::11", TraceFrame{})
	wantSteps(t, "VXLAN", pkt, "source-ca", "lookup=lookup record fd00:0:0:1::11 in VSID 5001", "encapsulate", "outer")
	if pkt.Outer == nil || pkt.Outer.Encap != policy.EncapVXLAN || !strings.Contains(pkt.Steps[len(pkt.Steps)-3].Detail, "VNI 5001") {
		t.Fatalf("VXLAN:\n%s", stepsText(pkt.Steps))
	}
	in := arrive(t, hostWith(t, pa2, vx, portBlue2), pkt)
	wantSteps(t, "arrival", &in, "decapsulate", "validate", "deliver=port blue2")
	if in.Verdict != "to-port" || !strings.Contains(in.Steps[0].Detail, "VXLAN") {
		t.Fatalf("arrival:\n%s", stepsText(in.Steps))
	}
}

// TestTraceOnDemand traces a packet to a CA without a lookup record on a
// host that holds misses: the trace says the frame would wait for the
// record, and nothing is held and no notification raised.
func TestTraceOnDemand(t *testing.T) {
	sw, ev := host1(t)
	sw.SetHoldMisses(true)
	res := sw.TraceFromPort(0, udpTo("10.0.0.10", "10.0.0.99", macBlue2).frame)
	wantSteps(t, "on-demand", &res, "on-link", "on-demand=lookup record for 10.0.0.99 in VSID 5001")
	if res.Verdict != "hold" || res.Reason != "no-lookup-record" || len(ev.events) != 0 {
		t.Fatalf("on-demand: %s %s, events %v", res.Verdict, res.Reason, ev.events)
	}
}

// TestTraceMigratedVM traces a packet for a VM that moved away to the host
// it left, which forwards it, and then to the VM's new host.
func TestTraceMigratedVM(t *testing.T) {
	_, pkt := tracePacket(t, hostWith(t, pa1, nil, portBlue1), "10.0.0.11", TraceFrame{})
	old := hostWith(t, pa2, nil)
	old.SetMoved(NewMovedTable([]Moved{{VSID: 5001, MAC: macBlue2, NewPA: pa3}}))
	fwd := arrive(t, old, pkt)
	wantSteps(t, "old host", &fwd, "decapsulate", "migrated=moved VM "+macBlue2.String())
	if fwd.Verdict != "forward" || fwd.Outer == nil || fwd.Outer.Src != pa1 || fwd.Outer.Dst != pa3 {
		t.Fatalf("old host: %+v", fwd)
	}
	moved := func(st *policy.Store) {
		must(st.SetLookupRecords(policy.LookupRecordFilter{MACAddress: []packet.MAC{macBlue2}}, policy.LookupRecordChange{ProviderAddress: &pa3}))
	}
	in := arrive(t, hostWith(t, pa3, moved, portBlue2), &fwd)
	wantSteps(t, "new host", &in, "validate=lookup record 10.0.0.10", "deliver=port blue2")
	if in.Verdict != "to-port" {
		t.Fatalf("new host:\n%s", stepsText(in.Steps))
	}
}

// TestTraceLeavesNoTrace checks what counters cannot show: a trace takes no
// rate token, records no redirect sequence number and caches nothing.
func TestTraceLeavesNoTrace(t *testing.T) {
	sw := keyedHost1(t)
	if res := redirectFrom(signed(pa3, 10, &keyPA2)).trace(sw); res.Verdict != "redirect" {
		t.Fatalf("traced redirect: %+v", res)
	}
	if r := redirectFrom(signed(pa3, 10, &keyPA2)).run(sw); r.Action != Redirect {
		t.Fatalf("the redirect after its trace: %v %v; the trace took its sequence number", r.Action, r.Reason)
	}

	lim := New(Config{UnderlayMTU: 1500, Limits: Limits{MissRate: 1, MissBurst: 1}})
	lim.SetPolicy(sw.Policy())
	lim.SetPorts(sw.Ports())
	lim.Tick(time.Unix(1000, 0))
	miss := udpTo("10.0.0.10", "10.0.0.99", macBlue2)
	for range 3 {
		if res := miss.trace(lim); res.Reason != "no-lookup-record" {
			t.Fatalf("traced miss: %s %s", res.Verdict, res.Reason)
		}
	}
	if r := miss.run(lim); r.Reason != ReasonNoLookupRecord {
		t.Fatalf("the miss after traces: %v, want no-lookup-record (traces took the token)", r.Reason)
	}

	gen := sw.Generation()
	udpTo("10.0.0.10", "10.0.0.11", macBlue2).trace(sw)
	if sw.Generation() != gen {
		t.Error("a trace changed the generation")
	}
}

func TestTraceFrameRefusesBadInput(t *testing.T) {
	for _, f := range []TraceFrame{
		{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("fd00::1")},
		{Src: netip.MustParseAddr("10.0.0.1")},
		{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Len: 10},
		{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Len: 9001},
	} {
		if _, err := f.Frame(); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
}

// FuzzTrace traces any frame from a port and any packet from the underlay,
// as the provider API lets a caller ask: the trace must agree with the
// switch's verdict and end every drop with a reason and a fix.
func FuzzTrace(f *testing.F) {
	f.Add(udpTo("10.0.0.10", "10.0.0.11", macBlue2).frame, false)
	f.Add(udpTo("10.0.0.10", "10.0.1.10", GatewayMAC).frame, false)
	f.Add(encapFrom(5001, macBlue1, macBlue2, "10.0.0.11", "10.0.0.10"), true)
	f.Add(signed(pa3, 1, &keyPA2), true)
	f.Fuzz(func(t *testing.T, b []byte, underlay bool) {
		sw := keyedHost1(t)
		in := traceInput{port: 0, frame: b}
		if underlay {
			in = fromUnderlay(pa2, b)
		}
		res := in.trace(sw)
		if r := in.run(sw); r.Action.String() != res.Verdict {
			t.Fatalf("trace says %s, switch did %v %v", res.Verdict, r.Action, r.Reason)
		}
		for _, s := range res.Steps {
			if s.Step == "drop" && (s.Reason == "" || s.Fix == "") {
				t.Fatalf("drop step without reason or fix: %+v", s)
			}
		}
	})
}

// TestTraceIPRewrite traces green1 -> green2 (both Rule Nat) on host A, and
// the plain IP packet it gives on host B, which maps it back and delivers.
func TestTraceIPRewrite(t *testing.T) {
	a, b, _ := greenHosts(t)
	buf, n := udpFrame(macGreen2, macGreen1, "10.0.0.10", "10.0.0.11", 40, true)
	src := a.TraceFromPort(0, buf[Headroom:Headroom+n])
	wantSteps(t, "host A", &src, "port=port green1", "lookup", "rewrite", "outer=provider address "+green1PA4.String(), "fast-path")
	if !src.FastPath || src.Decision == nil || !src.Decision.Rewrite {
		t.Errorf("host A: fast path %v decision %+v, want a rewrite decision for the kernel", src.FastPath, src.Decision)
	}
	o := src.Outer
	if src.Verdict != Rewritten.String() || o == nil || !o.Rewritten || o.Src != green1PA4 || o.Dst != green2PA4 {
		t.Fatalf("host A: verdict %s, outer %+v: want rewritten from %s to %s\n%s", src.Verdict, o, green1PA4, green2PA4, stepsText(src.Steps))
	}
	dst := b.TraceFromRewritten(o.Payload)
	wantSteps(t, "host B", &dst, "rewrite-arrival=provider address "+green2PA4.String(), "lookup", "validate", "rewrite", "deliver=port green2", "fast-path")
	if ri := dst.RewriteIngress; !dst.FastPath || ri == nil || ri.SrcPA != green1PA4 || ri.DstPA != green2PA4 || ri.Port != 0 {
		t.Errorf("host B: fast path %v rewrite ingress %+v, want the PA pair's delivery to port 0", dst.FastPath, ri)
	}
	if dst.Verdict != ToPort.String() || dst.Port != 0 {
		t.Errorf("host B: verdict %s port %d, want to-port 0\n%s", dst.Verdict, dst.Port, stepsText(dst.Steps))
	}
	if r := b.FromRewritten(append([]byte(nil), o.Payload...), false); r.Action != ToPort || r.Port != 0 {
		t.Errorf("host B switched the traced packet: %v %v, want delivery to port 0", r.Action, r.Reason)
	}
}

// TestTraceLearning: a new source CA of an L2Only VM is traced as learned,
// and the trace neither learns it nor refreshes a learned one.
func TestTraceLearning(t *testing.T) {
	sw, _ := learnHost(t, Limits{LearnedPerPort: 2})
	buf, n := udpFrame(macL2c, macL2a, "10.7.0.20", "10.7.0.4", 10, true)
	res := sw.TraceFromPort(2, buf[Headroom:Headroom+n])
	wantSteps(t, "new CA", &res, "port=port l2a", "learn=L2Only record")
	if sw.LearnedCount() != 0 {
		t.Errorf("the trace learned %d CAs", sw.LearnedCount())
	}
	if r := send(sw, 2, macL2a, "10.7.0.20", false); r.Learn == nil {
		t.Fatal("10.7.0.20 not learned")
	}
	res = sw.TraceFromPort(2, buf[Headroom:Headroom+n])
	if !strings.Contains(stepsText(res.Steps), "was learned from this VM before") {
		t.Errorf("a learned CA:\n%s", stepsText(res.Steps))
	}
}
