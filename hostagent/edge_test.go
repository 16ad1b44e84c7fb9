package hostagent

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/edge"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

func TestEdgeSpecRoutesTheRoutingDomainThroughTheSubnetGateway(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	subnets := map[policy.VSID]policyapi.Subnet{
		5001: {VirtualSubnetID: 5001, Prefixes: []netip.Prefix{p("10.0.0.0/24"), p("fd00:0:0:1::/64")}, Gateways: []netip.Addr{a("10.0.0.1"), a("fd00:0:0:1::1")}},
		5002: {VirtualSubnetID: 5002, Prefixes: []netip.Prefix{p("10.0.1.0/24"), p("fd00:0:0:2::/64")}, Gateways: []netip.Addr{a("10.0.1.1"), a("fd00:0:0:2::1")}},
	}
	g := policyapi.Gateway{Name: "blue-gw", VirtualSubnetID: 5001, MACAddress: packet.MAC{2, 0, 0, 0, 0x50, 0xfe},
		CustomerAddress: a("10.0.0.254"), CustomerAddress6: a("fd00:0:0:1::fe"), Mode: policyapi.GatewayForward,
		ExternalInterface: "ext0", ExternalAddresses: []netip.Prefix{p("203.0.113.2/24")}}
	s, ok := edgeSpec(g, subnets, "wgx-gw-", 1400)
	if !ok {
		t.Fatal("no spec")
	}
	want := edge.Spec{Name: "blue-gw", Namespace: "wgx-gw-blue-gw", Port: "gw-blue-gw", MAC: g.MACAddress, MTU: 1400,
		Addresses:         []netip.Prefix{p("10.0.0.254/24"), p("fd00:0:0:1::fe/64")},
		Routes:            []edge.Route{{Prefix: p("10.0.1.0/24"), Via: a("10.0.0.1")}, {Prefix: p("fd00:0:0:2::/64"), Via: a("fd00:0:0:1::1")}},
		ExternalInterface: "ext0", ExternalAddresses: g.ExternalAddresses}
	if !s.Equal(want) {
		t.Fatalf("spec\n %+v\nwant\n %+v", s, want)
	}
	if _, ok := edgeSpec(g, map[policy.VSID]policyapi.Subnet{5002: subnets[5002]}, "wgx-gw-", 1400); ok {
		t.Error("a spec for a gateway whose subnet is gone")
	}
}
