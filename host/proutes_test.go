package host

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/policy"
)

func TestDesiredRoutes(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	pas := []netip.Prefix{pfx("198.18.20.2/24"), pfx("198.18.10.2/24"), pfx("2001:db8:10::2/64")}
	rs := []policy.ProviderRoute{
		// Via a gateway in the second PA's subnet: that PA is the source.
		{InterfaceIndex: 3, DestinationPrefix: pfx("198.19.0.0/16"), NextHop: addr("198.18.20.1"), Metric: 5},
		// On-link (0.0.0.0), InterfaceIndex 0 for the underlay; no PA's
		// subnet overlaps it: the lowest PA of the family.
		{DestinationPrefix: pfx("203.0.113.0/24"), NextHop: netip.IPv4Unspecified()},
		// The same kernel route under another identity: one route.
		{InterfaceIndex: 3, DestinationPrefix: pfx("203.0.113.0/24"), NextHop: netip.IPv4Unspecified()},
		// Same destination and metric, another gateway: the kernel cannot
		// hold both.
		{InterfaceIndex: 3, DestinationPrefix: pfx("203.0.113.0/24"), NextHop: addr("198.18.10.1")},
		// Another interface.
		{InterfaceIndex: 7, DestinationPrefix: pfx("192.0.2.0/24"), NextHop: addr("198.18.10.1")},
		// IPv6 with metric 0 is stored by the kernel as 1024.
		{InterfaceIndex: 3, DestinationPrefix: pfx("2001:db8:20::/64"), NextHop: addr("2001:db8:10::1")},
		// No IPv4 PA covers the gateway: the lowest PA is the source.
		{InterfaceIndex: 3, DestinationPrefix: pfx("0.0.0.0/0"), NextHop: addr("192.0.2.1"), Metric: 100},
	}
	us := underlays{{name: "ul0", index: 3, mtu: 1500}}
	want, refused := desiredRoutes(rs, us, pas)
	exp := []dataplane.Route{
		{Ifindex: 3, Dst: pfx("0.0.0.0/0"), Gw: addr("192.0.2.1"), Src: addr("198.18.10.2"), Metric: 100},
		{Ifindex: 3, Dst: pfx("198.19.0.0/16"), Gw: addr("198.18.20.1"), Src: addr("198.18.20.2"), Metric: 5},
		{Ifindex: 3, Dst: pfx("203.0.113.0/24"), Src: addr("198.18.10.2")},
		{Ifindex: 3, Dst: pfx("2001:db8:20::/64"), Gw: addr("2001:db8:10::1"), Src: addr("2001:db8:10::2"), Metric: 1024},
	}
	if !slices.Equal(want, exp) {
		t.Errorf("desiredRoutes =\n%v\nwant\n%v", want, exp)
	}
	if len(refused) != 2 || refused[0].route.NextHop != addr("198.18.10.1") || !strings.Contains(refused[0].why, "another Metric") ||
		refused[1].route.InterfaceIndex != 7 || !strings.Contains(refused[1].why, "InterfaceIndex 7 is not an underlay interface of this host, which has ul0 (InterfaceIndex 3): use one of them, or 0 for ul0") {
		t.Errorf("refused = %+v", refused)
	}

	// Without a PA up, routes carry no source.
	want, _ = desiredRoutes(rs[:1], us, nil)
	if len(want) != 1 || want[0].Src.IsValid() {
		t.Errorf("without PAs: %v, want no source", want)
	}
}

func TestDiffRoutes(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	a := dataplane.Route{Dst: pfx("198.19.0.0/16"), Gw: addr("198.18.20.1")}
	b := dataplane.Route{Dst: pfx("198.20.0.0/16"), Gw: addr("198.18.20.1")}
	aSrc := a
	aSrc.Src = addr("198.18.20.2")
	aMetric := a
	aMetric.Metric = 9
	for _, c := range []struct {
		name           string
		want, have     []dataplane.Route
		adopted        map[routeKey]bool
		expDel, expAdd []dataplane.Route
	}{
		{"nothing installed", []dataplane.Route{a, b}, nil, nil, nil, []dataplane.Route{a, b}},
		{"in line", []dataplane.Route{a, b}, []dataplane.Route{b, a}, nil, nil, nil},
		{"removed from policy", nil, []dataplane.Route{a}, nil, []dataplane.Route{a}, nil},
		{"source came up", []dataplane.Route{aSrc}, []dataplane.Route{a}, nil, []dataplane.Route{a}, []dataplane.Route{aSrc}},
		{"metric set", []dataplane.Route{aMetric, b}, []dataplane.Route{a, b}, nil, []dataplane.Route{a}, []dataplane.Route{aMetric}},
		// An earlier wnvd's route stays while policy has no route of its key.
		{"adopted, not in policy", []dataplane.Route{b}, []dataplane.Route{a}, map[routeKey]bool{keyOf(a): true}, nil, []dataplane.Route{b}},
	} {
		del, add := diffRoutes(c.want, c.have, c.adopted)
		if !slices.Equal(del, c.expDel) || !slices.Equal(add, c.expAdd) {
			t.Errorf("%s: del %v add %v, want del %v add %v", c.name, del, add, c.expDel, c.expAdd)
		}
	}
}
