package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

var (
	traceMAC1 = packet.MAC{2, 0, 0, 0, 0x50, 1}
	traceMAC2 = packet.MAC{2, 0, 0, 0, 0x50, 2}
	tracePA1  = netip.MustParseAddr("198.18.0.1")
	tracePA2  = netip.MustParseAddr("198.18.0.2")
)

// traceLab serves two hosts: blue1 (10.0.0.10) on host1, blue2 (10.0.0.11)
// on host2, in VSID 5001.
func traceLab(t *testing.T) (h1, h2 *providertest.Tracer, sock1, sock2 string) {
	mk := func(name string, pa netip.Addr, port provider.PortSpec) (*providertest.Tracer, string) {
		h := providertest.NewTracer(name)
		st := h.Store()
		if _, err := st.AddCustomerRoute(policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID(rdID), VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct {
			ca  string
			mac packet.MAC
			pa  netip.Addr
		}{{"10.0.0.10", traceMAC1, tracePA1}, {"10.0.0.11", traceMAC2, tracePA2}} {
			if _, err := st.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr(r.ca), VirtualSubnetID: 5001, MACAddress: r.mac,
				ProviderAddress: r.pa, Rule: policy.TranslationMethodEncap}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.AddProviderAddress(policy.ProviderAddress{ProviderAddress: pa, PrefixLength: 15, AddressState: policy.AddressPreferred}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.AttachPort(port); err != nil {
			t.Fatal(err)
		}
		return h, providertest.Serve(t, h)
	}
	h1, sock1 = mk("host1", tracePA1, provider.PortSpec{Name: "blue1", MACAddress: traceMAC1, VirtualSubnetID: 5001, CustomerAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.10")}})
	h2, sock2 = mk("host2", tracePA2, provider.PortSpec{Name: "blue2", MACAddress: traceMAC2, VirtualSubnetID: 5001, CustomerAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.11")}})
	return h1, h2, sock1, sock2
}

func TestTraceCommand(t *testing.T) {
	_, h2, sock1, sock2 := traceLab(t)
	out := ok(t, sock1, "trace", "--port", "blue1", "--to", "10.0.0.11", "--proto", "tcp", "--dport", "80", "--dest-host", sock2)
	for _, want := range []string{
		"== host1 (source", "arp ", "lookup record 10.0.0.11 in VSID 5001", "NVGRE, GRE key 5001", "198.18.0.1 -> destination PA 198.18.0.2",
		"verdict: to-underlay 198.18.0.1 -> 198.18.0.2; fast path",
		"== host2 (arrival", "validate", "deliver", "port blue2", "verdict: to-port port 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "DROPPED") {
		t.Errorf("a path that works was reported dropped:\n%s", out)
	}

	// host2 loses blue1's record: the arrival is dropped there, naming it.
	if _, err := h2.Store().RemoveLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.10")}}); err != nil {
		t.Fatal(err)
	}
	out = ok(t, sock1, "trace", "--port", "blue1", "--to", "10.0.0.11", "--dest-host", sock2)
	host2 := out[strings.Index(out, "== host2"):]
	for _, want := range []string{"DROPPED: policy-mismatch", "object: lookup record 10.0.0.10 in VSID 5001", "fix: this host has no lookup record for the inner source 10.0.0.10"} {
		if !strings.Contains(host2, want) {
			t.Errorf("host2's part lacks %q:\n%s", want, host2)
		}
	}

	var rep traceReport
	js := ok(t, sock1, "-o", "json", "trace", "--port", "blue1", "--to", "10.0.0.11", "--dest-host", sock2)
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, js)
	}
	if len(rep.Hops) != 2 || rep.Hops[1].Host != "host2" || rep.Hops[1].Trace.Packet.Reason != "policy-mismatch" || rep.Hops[0].Trace.Packet.Outer.Dst != tracePA2 {
		t.Errorf("-o json: %+v", rep)
	}

	// Without the destination's API the trace stops at the source and says how to go on.
	out = ok(t, sock1, "trace", "--port", "blue1", "--to", "10.0.0.11")
	if !strings.Contains(out, "give --dest-host") || strings.Contains(out, "== host2") {
		t.Errorf("without --dest-host:\n%s", out)
	}
}

func TestTraceCommandRefusals(t *testing.T) {
	_, _, sock1, _ := traceLab(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "--to", "10.0.0.11"}, "give --from VM"},
		{[]string{"trace", "--port", "blue1", "--from", "blue1", "--to", "10.0.0.11"}, "one of them"},
		{[]string{"trace", "--port", "blue1", "--to", "10.0.0.999"}, "--to"},
		{[]string{"trace", "--port", "blue1", "--to", "10.0.0.11", "--proto", "sctp"}, `Protocol "sctp" is not supported`},
		{[]string{"trace", "--port", "blue1", "--to", "10.0.0.11", "--proto", "icmp", "--dport", "80"}, "need Protocol tcp or udp"},
		{[]string{"trace", "--port", "nosuch", "--to", "10.0.0.11"}, `port "nosuch" is not attached`},
		{[]string{"trace", "--port", "blue1", "--to", "fd00::11"}, "no customer address of fd00::11's family"},
		{[]string{"trace", "--port", "blue1", "--to", "10.0.0.11", "--api", "host2"}, "is not HOST=ENDPOINT"},
	} {
		out, err := wnvctl(t, sock1, c.args...)
		if err == nil || !strings.Contains(err.Error()+out, c.want) {
			t.Errorf("%v: err %v, out %q; want %q", c.args, err, out, c.want)
		}
	}
}

// TestTraceFromVMThroughPolicyServer finds the VM's host and port, and the
// destination host by its PA, through the policy server.
func TestTraceFromVMThroughPolicyServer(t *testing.T) {
	_, _, sock1, sock2 := traceLab(t)
	s := startPolicyServer(t)
	for _, args := range [][]string{
		{"tenant", "create", "--id", "{aaaaaaaa-0000-0000-0000-000000000001}", "--name", "contoso"},
		{"routing-domain", "create", "--id", rdID, "--tenant", "{aaaaaaaa-0000-0000-0000-000000000001}"},
		nil, // the subnet, below: --prefix keeps the values of earlier tests' runs (resetFlags cannot clear it)
		{"host", "register", "--name", "host1", "--pa", "198.18.0.1"},
		{"host", "register", "--name", "host2", "--pa", "198.18.0.2"},
		{"vm", "create", "--name", "blue1", "--vsid", "5001", "--mac", traceMAC1.String(), "--ca", "10.0.0.10", "--host", "host1"},
		{"vm", "create", "--name", "blue2", "--vsid", "5001", "--mac", traceMAC2.String(), "--ca", "10.0.0.11", "--host", "host2"},
	} {
		if args == nil {
			if _, err := policyclient.New(s, nil).CreateSubnet(context.Background(), policyapi.Subnet{VirtualSubnetID: 5001,
				RoutingDomainID: policy.MustParseGUID(rdID), Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if out, err := psctl(t, s, args...); err != nil {
			t.Fatalf("wnvctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := psctl(t, s, "trace", "--from", "blue1", "--to", "10.0.0.11", "--api", "host1="+sock1, "--api", "host2="+sock2)
	if err != nil {
		t.Fatalf("trace --from: %v\n%s", err, out)
	}
	for _, want := range []string{"== host1 (source, " + sock1, "== host2 (arrival, " + sock2, "deliver", "port blue2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if out, err := psctl(t, s, "trace", "--from", "blue1", "--to", "10.0.0.11"); err == nil || !strings.Contains(err.Error(), "no provider API known for host host1") {
		t.Errorf("trace --from without the hosts' APIs: %v\n%s", err, out)
	}
}
