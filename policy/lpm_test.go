package policy

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
)

func lpmStore(t *testing.T) *Store {
	s := NewStore()
	for _, r := range []CustomerRoute{
		route(rd1, 5001, "10.0.0.0/24", "", 0),
		route(rd1, 5001, "10.0.0.0/16", "10.0.0.2", 0),
		route(rd1, 5001, "0.0.0.0/0", "10.0.0.254", 10),
		route(rd1, 5002, "10.0.1.0/24", "", 0),
		route(rd1, 5002, "0.0.0.0/0", "10.0.1.254", 5),
		route(rd1, 5001, "fd00:0:0:1::/64", "", 0),
		route(rd1, 5001, "fd00::/48", "fd00:0:0:1::2", 0),
		route(rd1, 5001, "fd00:0:0:1::8000:0/97", "fd00:0:0:1::3", 0),
		route(rd1, 5001, "fd00:0:0:1::8000:1/128", "fd00:0:0:1::4", 0),
		route(rd1, 5001, "::/0", "fd00:0:0:1::fe", 0),
		route(rd2, 6001, "10.0.0.0/24", "", 0),
	} {
		ok(s.AddCustomerRoute(r))
	}
	return s
}

func TestRouteLongestPrefixMatch(t *testing.T) {
	s := lpmStore(t)
	tb := s.Table()
	for _, tc := range []struct {
		rd       GUID
		dst      string
		vsid     VSID
		prefix   string
		nextHop  string
		notFound bool
	}{
		{rd: rd1, dst: "10.0.0.9", vsid: 5001, prefix: "10.0.0.0/24", nextHop: "0.0.0.0"},
		{rd: rd1, dst: "10.0.5.5", vsid: 5001, prefix: "10.0.0.0/16", nextHop: "10.0.0.2"},
		{rd: rd1, dst: "10.0.1.7", vsid: 5002, prefix: "10.0.1.0/24", nextHop: "0.0.0.0"},
		// Two default routes in the domain: the lower Metric wins.
		{rd: rd1, dst: "8.8.8.8", vsid: 5002, prefix: "0.0.0.0/0", nextHop: "10.0.1.254"},
		{rd: rd1, dst: "fd00:0:0:1::77", vsid: 5001, prefix: "fd00:0:0:1::/64", nextHop: "::"},
		{rd: rd1, dst: "fd00:0:0:1::8000:5", vsid: 5001, prefix: "fd00:0:0:1::8000:0/97", nextHop: "fd00:0:0:1::3"},
		{rd: rd1, dst: "fd00:0:0:1::8000:1", vsid: 5001, prefix: "fd00:0:0:1::8000:1/128", nextHop: "fd00:0:0:1::4"},
		{rd: rd1, dst: "fd00:0:0:7::1", vsid: 5001, prefix: "fd00::/48", nextHop: "fd00:0:0:1::2"},
		{rd: rd1, dst: "2001:db8::1", vsid: 5001, prefix: "::/0", nextHop: "fd00:0:0:1::fe"},
		{rd: rd1, dst: "::ffff:10.0.0.9", vsid: 5001, prefix: "10.0.0.0/24", nextHop: "0.0.0.0"},
		// Routing domains are isolated: rd2 has the same prefix and no default.
		{rd: rd2, dst: "10.0.0.9", vsid: 6001, prefix: "10.0.0.0/24", nextHop: "0.0.0.0"},
		{rd: rd2, dst: "8.8.8.8", notFound: true},
		{rd: rd2, dst: "fd00:0:0:1::77", notFound: true},
		{rd: MustParseGUID("{99999999-0000-0000-0000-000000000000}"), dst: "10.0.0.9", notFound: true},
	} {
		r, found := tb.Route(tc.rd, addr(tc.dst))
		if tc.notFound {
			if found {
				t.Errorf("Route(%v, %s) = %+v, want none", tc.rd, tc.dst, r)
			}
			continue
		}
		if !found || r.VirtualSubnetID != tc.vsid || r.DestinationPrefix != pfx(tc.prefix) || r.NextHop != addr(tc.nextHop) {
			t.Errorf("Route(%v, %s) = %+v, %v; want %d %s via %s", tc.rd, tc.dst, r, found, tc.vsid, tc.prefix, tc.nextHop)
		}
	}
	// Changing metrics flips the winner among equal prefixes.
	ok(s.SetCustomerRoutes(CustomerRouteFilter{VirtualSubnetID: []VSID{5002}, DestinationPrefix: []netip.Prefix{pfx("0.0.0.0/0")}}, 20))
	if r, _ := s.Table().Route(rd1, addr("8.8.8.8")); r.VirtualSubnetID != 5001 {
		t.Errorf("after raising 5002's default Metric, Route picks %+v", r)
	}
	if r, _ := tb.Route(rd1, addr("8.8.8.8")); r.VirtualSubnetID != 5002 {
		t.Errorf("the old snapshot's routing changed")
	}
}

// TestRouteMatchesReference checks the bucketed LPM against a linear scan on
// random routes and destinations of both families.
func TestRouteMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewStore()
	var routes []CustomerRoute
	randAddr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			b[0], b[1] = 0xfd, 0
			for i := 2; i < 16; i++ {
				b[i] = byte(rng.IntN(4)) // few distinct values, so prefixes nest
			}
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(256))})
	}
	for i := range 400 {
		v6 := i%2 == 1
		bitsMax := 32
		if v6 {
			bitsMax = 128
		}
		p := netip.PrefixFrom(randAddr(v6), rng.IntN(bitsMax+1)).Masked()
		r := CustomerRoute{RoutingDomainID: rd1, VirtualSubnetID: VSID(5000 + rng.IntN(3)), DestinationPrefix: p, Metric: uint32(rng.IntN(3))}
		if rng.IntN(2) == 0 {
			if v6 {
				r.NextHop = netip.MustParseAddr("fd00::1")
			} else {
				r.NextHop = netip.MustParseAddr("10.0.0.1")
			}
		}
		if stored, err := s.AddCustomerRoute(r); err == nil {
			routes = append(routes, stored)
		}
	}
	tb := s.Table()
	for i := range 5000 {
		dst := randAddr(i%2 == 1)
		var want *CustomerRoute
		for j := range routes {
			r := &routes[j]
			if !r.DestinationPrefix.Contains(dst) {
				continue
			}
			if want == nil || r.DestinationPrefix.Bits() > want.DestinationPrefix.Bits() ||
				r.DestinationPrefix.Bits() == want.DestinationPrefix.Bits() && better(r, want) {
				want = r
			}
		}
		got, found := tb.Route(rd1, dst)
		if (want == nil) != !found || want != nil && !reflect.DeepEqual(*got, *want) {
			t.Fatalf("Route(%s) = %+v, %v; reference says %+v", dst, got, found, want)
		}
	}
}

func TestOnLinkPrefixLongest(t *testing.T) {
	s := NewStore()
	ok(s.AddCustomerRoute(route(rd1, 5001, "10.0.0.0/16", "", 0)))
	ok(s.AddCustomerRoute(route(rd1, 5001, "10.0.3.0/24", "", 0)))
	ok(s.AddCustomerRoute(route(rd1, 5001, "10.0.3.0/24", "10.0.0.1", 0)))
	tb := s.Table()
	if p, _ := tb.OnLinkPrefix(5001, addr("10.0.3.3")); p != pfx("10.0.3.0/24") {
		t.Errorf("OnLinkPrefix(10.0.3.3) = %v, want the longest on-link prefix", p)
	}
	if p, _ := tb.OnLinkPrefix(5001, addr("10.0.9.3")); p != pfx("10.0.0.0/16") {
		t.Errorf("OnLinkPrefix(10.0.9.3) = %v", p)
	}
	if _, found := tb.OnLinkPrefix(5001, addr("10.1.0.1")); found {
		t.Errorf("OnLinkPrefix found a prefix for an outside address")
	}
}

// RouteVia picks, for UseExternalRouter, the longest route naming a next
// hop in the sender's own subnet, whatever other subnets' routes say.
func TestRouteVia(t *testing.T) {
	s := lpmStore(t)
	for _, r := range []CustomerRoute{
		route(rd1, 5001, "192.168.0.0/16", "10.0.0.1", 0), // the gateway address: the host, no router
		route(rd1, 5001, "172.16.0.0/12", "10.0.0.3", 7),
		route(rd1, 5001, "172.16.0.0/12", "10.0.0.4", 3),
	} {
		ok(s.AddCustomerRoute(r))
	}
	tb := s.Table()
	for _, tc := range []struct {
		rd      GUID
		vsid    VSID
		dst     string
		prefix  string
		nextHop string
	}{
		{rd1, 5001, "10.0.1.7", "10.0.0.0/16", "10.0.0.2"}, // not 5002's on-link route
		{rd1, 5002, "10.0.5.5", "0.0.0.0/0", "10.0.1.254"}, // 10.0.0.2 is not in 5002
		{rd1, 5001, "8.8.8.8", "0.0.0.0/0", "10.0.0.254"},  // 5002's router has the lower Metric, 5001's is in 5001
		{rd1, 5001, "192.168.1.1", "0.0.0.0/0", "10.0.0.254"},
		{rd1, 5001, "172.16.0.9", "172.16.0.0/12", "10.0.0.4"},
		{rd1, 5001, "2001:db8::1", "::/0", "fd00:0:0:1::fe"},
		{rd1, 5001, "::ffff:8.8.8.8", "0.0.0.0/0", "10.0.0.254"},
		{rd2, 6001, "8.8.8.8", "", ""},
		{rd1, 5003, "8.8.8.8", "", ""},
	} {
		r, found := tb.RouteVia(tc.rd, tc.vsid, netip.MustParseAddr(tc.dst))
		if tc.prefix == "" {
			if found {
				t.Errorf("RouteVia(%d, %s) = %+v, want none", tc.vsid, tc.dst, r)
			}
			continue
		}
		if !found || r.DestinationPrefix.String() != tc.prefix || r.NextHop.String() != tc.nextHop {
			t.Errorf("RouteVia(%d, %s) = %+v, %v; want %s via %s", tc.vsid, tc.dst, r, found, tc.prefix, tc.nextHop)
		}
	}
}
