package policyserver

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

func edgeGateway() policyapi.Gateway {
	return policyapi.Gateway{Name: "red-gw", VirtualSubnetID: 6001, MACAddress: packet.MAC{2, 0, 0, 0, 0x60, 0xfe},
		CustomerAddress: netip.MustParseAddr("10.0.0.254"), CustomerAddress6: netip.MustParseAddr("fd00:0:0:1::fe"), Host: "gwhost",
		Mode: policyapi.GatewayNAT, ExternalInterface: "ext0",
		ExternalAddresses: []netip.Prefix{netip.MustParsePrefix("203.0.113.3/24"), netip.MustParsePrefix("2001:db8:e::3/64")},
		ExternalGateways:  []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8:e::1")}}
}

func TestDualStackGatewayDerivesBothFamilies(t *testing.T) {
	g := edgeGateway()
	if err := checkGateway(&g); err != nil {
		t.Fatal(err)
	}
	recs := GatewayRecords(&g)
	if len(recs) != 4 || recs[0].CustomerAddress != g.CustomerAddress || recs[1].CustomerAddress != g.CustomerAddress6 ||
		recs[2].Type != policy.GatewayWildcard || recs[2].CustomerAddress != netip.IPv4Unspecified() ||
		recs[3].Type != policy.GatewayWildcard || recs[3].CustomerAddress != netip.IPv6Unspecified() {
		t.Fatalf("records %+v: want Static 10.0.0.254, fd00:0:0:1::fe, then the wildcards 0.0.0.0 and ::", recs)
	}
	if s := GatewayStaticRecords(&g); len(s) != 2 || s[0].Type != policy.Static || s[1].Type != policy.Static {
		t.Errorf("static records %+v", s)
	}
	rts := GatewayRoutes(&g)
	if len(rts) != 2 || rts[0].DestinationPrefix.String() != "0.0.0.0/0" || rts[0].NextHop != g.CustomerAddress ||
		rts[1].DestinationPrefix.String() != "::/0" || rts[1].NextHop != g.CustomerAddress6 {
		t.Fatalf("routes %+v: want a default route per family through the gateway's CA", rts)
	}
}

func TestEdgeGatewayRules(t *testing.T) {
	cases := []struct {
		change func(*policyapi.Gateway)
		want   string
	}{
		{func(g *policyapi.Gateway) { g.Mode = "bridge" }, `Mode "bridge" is unknown`},
		{func(g *policyapi.Gateway) { g.Mode = "" }, "Mode is empty but the External fields are set"},
		{func(g *policyapi.Gateway) { g.Name = "a-very-long-gw" }, "longer than 12 bytes"},
		{func(g *policyapi.Gateway) { g.ExternalInterface = "" }, "ExternalInterface is missing"},
		{func(g *policyapi.Gateway) { g.ExternalInterface = "ul0" }, `ExternalInterface "ul0" is an interface the host keeps for itself`},
		{func(g *policyapi.Gateway) { g.ExternalInterface = "wnvgso" }, `ExternalInterface "wnvgso" is an interface the host keeps`},
		{func(g *policyapi.Gateway) { g.ExternalAddresses = g.ExternalAddresses[:1] }, "ExternalAddresses has no IPv6 address for CustomerAddress fd00:0:0:1::fe"},
		{func(g *policyapi.Gateway) { g.ExternalAddresses[0] = netip.MustParsePrefix("203.0.113.0/24") }, "ExternalAddresses 203.0.113.0/24 is not a host address"},
		{func(g *policyapi.Gateway) { g.ExternalAddresses[1] = netip.MustParsePrefix("203.0.113.4/24") }, "ExternalAddresses 203.0.113.4/24 is a second address of its family"},
		{func(g *policyapi.Gateway) { g.ExternalGateways[0] = netip.MustParseAddr("198.51.100.1") }, "ExternalGateways 198.51.100.1 is not another address"},
		{func(g *policyapi.Gateway) { g.ExternalGateways[1] = netip.MustParseAddr("203.0.113.9") }, "ExternalGateways 203.0.113.9 is a second router"},
		{func(g *policyapi.Gateway) { g.CustomerAddress6 = netip.MustParseAddr("10.0.0.253") }, "is not a dual-stack pair"},
	}
	for _, tc := range cases {
		g := edgeGateway()
		tc.change(&g)
		err := checkGateway(&g)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
	plain := policyapi.Gateway{Name: "a-very-long-gateway-name", VirtualSubnetID: 5001, MACAddress: packet.MAC{2, 0, 0, 0, 0, 9},
		CustomerAddress: netip.MustParseAddr("10.0.0.254"), Host: "h"}
	if err := checkGateway(&plain); err != nil {
		t.Errorf("a gateway VM without Mode: %v", err)
	}
}
