package policy

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wnv/wnv/packet"
)

func TestWildcard(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"web1", "WEB1", true},
		{"web1", "web10", false},
		{"web*", "web-east/1", true}, // unlike path.Match, * crosses '/'
		{"web*", "db1", false},
		{"*", "", true},
		{"w?b", "wEb", true},
		{"w?b", "wb", false},
		{"vm[1-3]", "vm2", true},
		{"vm[1-3]", "vm4", false},
		{"vm[A-C]", "VMb", true}, // sets ignore case too
		{"vm[-x]", "vm-", true},
		{"DOMAIN\\web*", `domain\web7`, true}, // '\' is a plain character
		{"a`*b", "a*b", true},
		{"a`*b", "axb", false},
		{"[[]x]", "[x]", true},
		{"a.b", "axb", false},
		{"tenant(blue)+", "tenant(blue)+", true},
	} {
		w, err := ParseWildcard(c.pattern)
		if err != nil {
			t.Fatalf("ParseWildcard(%q): %v", c.pattern, err)
		}
		if got := w.Match(c.s); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
	for _, p := range []string{"vm[1-3", "vm[]", "ab`", "vm[z-a]"} {
		if _, err := ParseWildcard(p); err == nil {
			t.Errorf("ParseWildcard(%q) accepted", p)
		}
	}
}

func TestFilterListsAndWildcards(t *testing.T) {
	s := fixture(t)
	cid := MustParseGUID("{aaaaaaaa-2222-3333-4444-000000000001}")
	ok(s.AddLookupRecord(with(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "198.18.0.3"), func(r *LookupRecord) {
		r.VMName, r.Context, r.CustomerID, r.Rule = "Web-East/1", "tenant/blue", cid, TranslationMethodNone
	})))
	ok(s.AddLookupRecord(with(rec("10.0.0.8", 5001, "00:15:5d:00:00:08", "198.18.0.3"), func(r *LookupRecord) { r.VMName = "db1" })))
	ok(s.AddLookupRecord(with(rec("0.0.0.0", 5002, "00:15:5d:00:00:09", "198.18.0.4"), func(r *LookupRecord) { r.Type = L2Only })))

	w := func(ps ...string) []Wildcard {
		out := make([]Wildcard, len(ps))
		for i, p := range ps {
			out[i] = MustParseWildcard(p)
		}
		return out
	}
	a := func(ss ...string) []netip.Addr {
		out := make([]netip.Addr, len(ss))
		for i, s := range ss {
			out[i] = addr(s)
		}
		return out
	}
	for _, c := range []struct {
		name string
		f    LookupRecordFilter
		want []string // CAs in listing order
	}{
		{"empty", LookupRecordFilter{}, []string{"10.0.0.5", "10.0.0.7", "10.0.0.8", "0.0.0.0", "10.0.1.6"}},
		{"CA list", LookupRecordFilter{CustomerAddress: a("10.0.0.7", "10.0.1.6")}, []string{"10.0.0.7", "10.0.1.6"}},
		{"CA list, mapped form", LookupRecordFilter{CustomerAddress: a("::ffff:10.0.0.8")}, []string{"10.0.0.8"}},
		{"VSID x CA index", LookupRecordFilter{VirtualSubnetID: []VSID{5001, 5002}, CustomerAddress: a("10.0.0.5", "10.0.1.6", "10.0.0.5")}, []string{"10.0.0.5", "10.0.1.6"}},
		{"VSID x MAC index", LookupRecordFilter{VirtualSubnetID: []VSID{5001, 5002}, MACAddress: []packet.MAC{mac("00:15:5d:00:00:08"), mac("00155D000009")}}, []string{"10.0.0.8", "0.0.0.0"}},
		{"zero CA", LookupRecordFilter{CustomerAddress: a("0.0.0.0")}, []string{"0.0.0.0"}},
		{"VMName glob", LookupRecordFilter{VMName: w("web*")}, []string{"10.0.0.7"}},
		{"VMName list", LookupRecordFilter{VMName: w("WEB-EAST/1", "d?1")}, []string{"10.0.0.7", "10.0.0.8"}},
		{"VMName set", LookupRecordFilter{VMName: w("[a-d]*")}, []string{"10.0.0.8"}},
		{"Context glob", LookupRecordFilter{Context: w("tenant/*")}, []string{"10.0.0.7"}},
		{"CustomerID bare glob", LookupRecordFilter{CustomerID: w("AAAAAAAA-*")}, []string{"10.0.0.7"}},
		{"CustomerID braced", LookupRecordFilter{CustomerID: w(cid.String())}, []string{"10.0.0.7"}},
		{"Rule list", LookupRecordFilter{Rule: []Rule{TranslationMethodNone, TranslationMethodNat}}, []string{"10.0.0.7"}},
		{"Type", LookupRecordFilter{Type: []RecordType{L2Only}}, []string{"0.0.0.0"}},
		{"UseVmMACAddress", LookupRecordFilter{UseVmMACAddress: []bool{true}}, nil},
		{"PA list and VSID", LookupRecordFilter{ProviderAddress: a("198.18.0.3", "198.18.0.4"), VirtualSubnetID: []VSID{5002}}, []string{"0.0.0.0", "10.0.1.6"}},
		{"no match", LookupRecordFilter{VMName: w("nobody")}, nil},
	} {
		var got []string
		for _, r := range s.LookupRecords(c.f) {
			got = append(got, r.CustomerAddress.String())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}

	if _, err := s.RemoveLookupRecords(LookupRecordFilter{VMName: w("nobody", "none*")}); err == nil || err.Error() != "no lookup record has VMName nobody or none*" {
		t.Errorf("remove unmatched: %v", err)
	}
	gone := ok(s.RemoveLookupRecords(LookupRecordFilter{VMName: w("web*", "db?")}))
	if len(gone) != 2 || len(s.LookupRecords(LookupRecordFilter{})) != 3 {
		t.Errorf("removed %v", gone)
	}
}

func TestRouteAndPAFilterLists(t *testing.T) {
	s := fixture(t)
	ok(s.AddCustomerRoute(route(rd2, 6001, "10.9.0.0/24", "", 7)))
	for _, c := range []struct {
		name string
		f    CustomerRouteFilter
		want int
	}{
		{"RD glob", CustomerRouteFilter{RoutingDomainID: []Wildcard{MustParseWildcard("*0001}")}}, 3},
		{"RD bare", CustomerRouteFilter{RoutingDomainID: []Wildcard{MustParseWildcard("11111111-2222-3333-4444-000000000002")}}, 1},
		{"VSID list", CustomerRouteFilter{VirtualSubnetID: []VSID{5002, 6001}}, 2},
		{"prefix list", CustomerRouteFilter{DestinationPrefix: []netip.Prefix{pfx("10.0.0.0/24"), pfx("fd00:0:0:1::/64")}}, 2},
		{"Metric", CustomerRouteFilter{Metric: []uint32{7}}, 1},
		{"on-link v4", CustomerRouteFilter{NextHop: []netip.Addr{addr("0.0.0.0")}}, 3},
	} {
		if got := s.CustomerRoutes(c.f); len(got) != c.want {
			t.Errorf("%s: %d routes, want %d", c.name, len(got), c.want)
		}
	}
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.0.9"), PrefixLength: 24, VlanID: 12, MACAddress: mac("02:00:00:00:00:09"), ManagedByCluster: true}))
	for _, c := range []struct {
		name string
		f    ProviderAddressFilter
		want int
	}{
		{"PrefixLength list", ProviderAddressFilter{PrefixLength: []uint8{15, 24}}, 2},
		{"VlanID", ProviderAddressFilter{VlanID: []uint16{12}}, 1},
		{"AddressState", ProviderAddressFilter{AddressState: []AddressState{AddressPreferred}}, 1},
		{"MACAddress", ProviderAddressFilter{MACAddress: []packet.MAC{mac("020000000009")}}, 1},
		{"ManagedByCluster", ProviderAddressFilter{ManagedByCluster: []bool{false}}, 1},
	} {
		if got := s.ProviderAddresses(c.f); len(got) != c.want {
			t.Errorf("%s: %d PAs, want %d", c.name, len(got), c.want)
		}
	}
}

// TestRuleWireNumbers: Go's Rule is the wire number plus one, so that its
// zero value is RuleUnset; JSON and text keep the original numbers.
func TestRuleWireNumbers(t *testing.T) {
	for _, c := range []struct {
		r    Rule
		json string
	}{{RuleUnset, "null"}, {TranslationMethodNat, "0"}, {TranslationMethodEncap, "1"}, {TranslationMethodNone, "2"}} {
		if b, err := json.Marshal(c.r); err != nil || string(b) != c.json {
			t.Errorf("Marshal(%v) = %s, %v; want %s", c.r, b, err, c.json)
		}
		r := TranslationMethodEncap
		if err := json.Unmarshal([]byte(c.json), &r); err != nil || (c.r != RuleUnset && r != c.r) || (c.r == RuleUnset && r != TranslationMethodEncap) {
			t.Errorf("Unmarshal(%s) = %v, %v", c.json, r, err)
		}
	}
	for _, s := range []string{"0", "nat", "TranslationMethodNat"} {
		if r, err := ParseRule(s); err != nil || r != TranslationMethodNat {
			t.Errorf("ParseRule(%q) = %v, %v", s, r, err)
		}
	}
	var r Rule
	for _, s := range []string{"3", "-1", `"Nat"`, "1.0"} {
		if err := json.Unmarshal([]byte(s), &r); err == nil {
			t.Errorf("Unmarshal(%s) accepted", s)
		}
	}
}

// FuzzParseWildcard checks that any pattern compiles or fails without a
// panic, and that escaping every character of s gives a pattern matching
// exactly s.
func FuzzParseWildcard(f *testing.F) {
	for _, s := range []string{"web*", "vm[1-3]?", "a`*b", "[[]x]", "[a`]", "DOMAIN\\web", "[z-a]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		if w, err := ParseWildcard(s); err == nil {
			w.Match(s)
		}
		var esc strings.Builder
		for _, c := range s {
			esc.WriteRune('`')
			esc.WriteRune(c)
		}
		w, err := ParseWildcard(esc.String())
		if err != nil || !w.Match(s) || (s != "" && w.Match(s+"x")) {
			t.Fatalf("escaped %q: %v, matches itself %v", s, err, err == nil && w.Match(s))
		}
	})
}
