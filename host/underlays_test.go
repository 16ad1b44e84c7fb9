package host

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/policy"
)

func TestParseUnderlays(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		err  string
	}{
		{"ul0", []string{"ul0"}, ""},
		{"ul0,ul1", []string{"ul0", "ul1"}, ""},
		{" eth1 , eth2,eth3 ", []string{"eth1", "eth2", "eth3"}, ""},
		{"", nil, `--underlay "" names no interface`},
		{" , ", nil, "has an empty interface name: remove the extra comma"},
		{"ul0,", nil, "has an empty interface name"},
		{"ul0,,ul1", nil, "has an empty interface name"},
		{"ul0,ul1,ul0", nil, `--underlay "ul0,ul1,ul0" names ul0 twice: name each interface once`},
		{"averyveryverylongname", nil, `--underlay interface "averyveryverylongname" is invalid: use 1..15 characters`},
		{"ul0,a/b", nil, `--underlay interface "a/b" is invalid`},
		{"..", nil, `--underlay interface ".." is invalid`},
	} {
		got, err := ParseUnderlays(c.in)
		if c.err == "" {
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("ParseUnderlays(%q) = %q, %v, want %q", c.in, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParseUnderlays(%q) = %q, %v, want an error with %q", c.in, got, err, c.err)
		}
	}
}

// FuzzParseUnderlays: whatever it accepts is a list of distinct names an
// interface may have, at least one, that reads back the same.
func FuzzParseUnderlays(f *testing.F) {
	for _, s := range []string{"ul0", "ul0,ul1", " a , b ", "", ",", "a,a", "a/b", "0123456789abcdef"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ParseUnderlays(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseUnderlays(%q): the error has more than one line: %q", s, err)
			}
			return
		}
		if len(names) == 0 {
			t.Fatalf("ParseUnderlays(%q) accepted no names", s)
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || len(n) > 15 || strings.ContainsAny(n, "/: \t\n,") || n == "." || n == ".." || seen[n] {
				t.Fatalf("ParseUnderlays(%q) accepted %q among %q", s, n, names)
			}
			seen[n] = true
		}
		again, err := ParseUnderlays(strings.Join(names, ","))
		if err != nil || !slices.Equal(again, names) {
			t.Fatalf("ParseUnderlays of its own %q = %q, %v", names, again, err)
		}
	})
}

var twoUnderlays = underlays{{name: "ul0", index: 3, mtu: 1500}, {name: "ul1", index: 4, mtu: 1400}}

func TestUnderlayOfInterfaceIndex(t *testing.T) {
	for _, c := range []struct {
		ifindex int
		want    string
	}{{0, "ul0"}, {3, "ul0"}, {4, "ul1"}} {
		if u, err := twoUnderlays.of(c.ifindex); err != nil || u.name != c.want {
			t.Errorf("of(%d) = %+v, %v, want %s", c.ifindex, u, err, c.want)
		}
	}
	_, err := twoUnderlays.of(7)
	if want := "InterfaceIndex 7 is not an underlay interface of this host, which has ul0 (InterfaceIndex 3), ul1 (InterfaceIndex 4): use one of them, or 0 for ul0"; err == nil || err.Error() != want {
		t.Errorf("of(7) = %v, want %q", err, want)
	}
	if m := twoUnderlays.mtu(); m != 1400 {
		t.Errorf("mtu = %d, want the smallest, 1400", m)
	}
}

// TestWantedPAs: each PA goes on the underlay its InterfaceIndex names,
// with its VLAN; one on no underlay is left out, with the reason.
func TestWantedPAs(t *testing.T) {
	addr := netip.MustParseAddr
	want, refused := wantedPAs([]policy.ProviderAddress{
		{ProviderAddress: addr("198.18.1.1"), PrefixLength: 24},
		{ProviderAddress: addr("198.18.2.1"), PrefixLength: 24, InterfaceIndex: 4, VlanID: 100},
		{ProviderAddress: addr("198.18.3.1"), PrefixLength: 16, InterfaceIndex: 3, VlanID: 4094},
		{ProviderAddress: addr("198.18.4.1"), PrefixLength: 24, InterfaceIndex: 9},
	}, twoUnderlays)
	exp := map[netip.Addr]paWant{
		addr("198.18.1.1"): {prefix: netip.MustParsePrefix("198.18.1.1/24"), on: twoUnderlays[0]},
		addr("198.18.2.1"): {prefix: netip.MustParsePrefix("198.18.2.1/24"), on: twoUnderlays[1], vlan: 100},
		addr("198.18.3.1"): {prefix: netip.MustParsePrefix("198.18.3.1/16"), on: twoUnderlays[0], vlan: 4094},
	}
	if len(want) != len(exp) {
		t.Errorf("wanted %d PAs %+v, want %d", len(want), want, len(exp))
	}
	for a, w := range exp {
		if want[a] != w {
			t.Errorf("PA %s: %+v, want %+v", a, want[a], w)
		}
	}
	if why := refused[addr("198.18.4.1")]; len(refused) != 1 || !strings.Contains(why, "InterfaceIndex 9 is not an underlay interface") {
		t.Errorf("refused = %v, want 198.18.4.1 on InterfaceIndex 9", refused)
	}
}

// TestDesiredRoutesOnTwoUnderlays: a route goes out of the underlay its
// InterfaceIndex names, and two with one destination and metric are one
// too many even on different interfaces.
func TestDesiredRoutesOnTwoUnderlays(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	pas := []netip.Prefix{pfx("198.18.1.1/24"), pfx("198.18.2.1/24")}
	want, refused := desiredRoutes([]policy.ProviderRoute{
		{DestinationPrefix: pfx("198.19.1.0/24"), NextHop: addr("198.18.1.254")},
		{InterfaceIndex: 4, DestinationPrefix: pfx("198.19.2.0/24"), NextHop: addr("198.18.2.254")},
		{InterfaceIndex: 4, DestinationPrefix: pfx("198.19.1.0/24"), NextHop: addr("198.18.2.254")},
	}, twoUnderlays, pas)
	exp := []dataplane.Route{
		{Ifindex: 3, Dst: pfx("198.19.1.0/24"), Gw: addr("198.18.1.254"), Src: addr("198.18.1.1")},
		{Ifindex: 4, Dst: pfx("198.19.2.0/24"), Gw: addr("198.18.2.254"), Src: addr("198.18.2.1")},
	}
	if !slices.Equal(want, exp) {
		t.Errorf("desiredRoutes =\n%v\nwant\n%v", want, exp)
	}
	if len(refused) != 1 || refused[0].route.InterfaceIndex != 4 || !strings.Contains(refused[0].why, "another Metric") {
		t.Errorf("refused = %+v, want the second route to 198.19.1.0/24", refused)
	}
}
