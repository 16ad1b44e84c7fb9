package jsonapi

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

func TestQueryRoundTrip(t *testing.T) {
	lf := policy.LookupRecordFilter{
		CustomerAddress: []netip.Addr{netip.MustParseAddr("fd00::5")},
		VirtualSubnetID: []policy.VSID{5001},
		MACAddress:      []packet.MAC{packet.MAC{0, 0x15, 0x5d, 1, 2, 3}},
		ProviderAddress: []netip.Addr{netip.MustParseAddr("198.18.0.2")},
		CustomerID:      []policy.Wildcard{policy.MustParseWildcard(policy.MustParseGUID("{11111111-2222-3333-4444-000000000000}").String())},
		VMName:          []policy.Wildcard{policy.MustParseWildcard("web 1 & co")},
	}
	q := EncodeQuery(lf)
	if len(q) != 6 || q.Get("MACAddress") != "00155D010203" || q.Get("CustomerID") != "{11111111-2222-3333-4444-000000000000}" {
		t.Fatalf("EncodeQuery = %v", q)
	}
	wire, err := url.ParseQuery(q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var got policy.LookupRecordFilter
	if err := DecodeQuery(wire, &got); err != nil || !reflect.DeepEqual(got, lf) {
		t.Fatalf("DecodeQuery = %+v, %v; want %+v", got, err, lf)
	}

	if q := EncodeQuery(policy.ProviderRouteFilter{}); len(q) != 0 {
		t.Fatalf("empty filter encodes as %v; want no parameters", q)
	}
	pf := policy.ProviderRouteFilter{InterfaceIndex: []int{7}, DestinationPrefix: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}
	var pgot policy.ProviderRouteFilter
	if err := DecodeQuery(EncodeQuery(pf), &pgot); err != nil || !reflect.DeepEqual(pgot, pf) {
		t.Fatalf("ProviderRouteFilter round trip = %+v, %v", pgot, err)
	}
	if err := DecodeQuery(url.Values{"InterfaceIndex": {"x"}}, &pgot); err == nil || err.Error() != `InterfaceIndex "x" is malformed: use a whole number up to 9223372036854775807` {
		t.Fatalf("bad InterfaceIndex: %v", err)
	}

	// Lists travel as repeated parameters; a single value is a list of one.
	lists := policy.CustomerRouteFilter{
		VirtualSubnetID: []policy.VSID{5001, 5002},
		CustomerID:      []policy.Wildcard{policy.MustParseWildcard("*-4444-*"), policy.MustParseWildcard("{11111111-2222-3333-4444-000000000000}")},
	}
	q = EncodeQuery(lists)
	if got := q.Encode(); got != "CustomerID=%2A-4444-%2A&CustomerID=%7B11111111-2222-3333-4444-000000000000%7D&VirtualSubnetID=5001&VirtualSubnetID=5002" {
		t.Fatalf("EncodeQuery(lists) = %s", got)
	}
	var lgot policy.CustomerRouteFilter
	if err := DecodeQuery(q, &lgot); err != nil || !reflect.DeepEqual(lgot, lists) {
		t.Fatalf("lists round trip = %+v, %v", lgot, err)
	}
	for _, c := range []struct{ query, want string }{
		{"VirtualSubnetID=5001&VirtualSubnetID=x", `VirtualSubnetID "x" is malformed: use 4096..16777214`},
		{"CustomerID=[a", "CustomerID \"[a\" is malformed: use text with the wildcards * (any text), ? (one character) and [a-c] (one of a set); ` escapes"},
		{"NextHop=10.0.0.1&NextHop=nope", `NextHop "nope" is malformed: use an IPv4 or IPv6 address such as 10.0.0.5`},
	} {
		vals, _ := url.ParseQuery(c.query)
		if err := DecodeQuery(vals, &lgot); err == nil || err.Error() != c.want {
			t.Errorf("DecodeQuery(%s) = %v; want %s", c.query, err, c.want)
		}
	}
}

func TestDecodeBodyKeepsDefaultsAndPointers(t *testing.T) {
	r := policy.LookupRecord{Rule: policy.TranslationMethodEncap}
	if err := DecodeBody(bytes.NewReader([]byte(`{"VMName":"a","Type":3}`)), &r); err != nil {
		t.Fatal(err)
	}
	if r.Rule != policy.TranslationMethodEncap || r.Type != policy.L2Only || r.VMName != "a" {
		t.Fatalf("decoded %+v", r)
	}
	var c policy.LookupRecordChange
	if err := DecodeBody(bytes.NewReader([]byte(`{"VMName":"b","Context":null}`)), &c); err != nil {
		t.Fatal(err)
	}
	if c.VMName == nil || *c.VMName != "b" || c.Context != nil || c.Rule != nil {
		t.Fatalf("decoded change %+v; want only VMName set", c)
	}
}

// FuzzDecodeLookupRecord (seeds in testdata/fuzz) checks that any body either fails with a one-line
// error or decodes to a record that survives a JSON round trip.
func FuzzDecodeLookupRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		r := policy.LookupRecord{Rule: policy.TranslationMethodEncap}
		err := DecodeBody(bytes.NewReader(body), &r)
		if err != nil {
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var again policy.LookupRecord
		if err := DecodeBody(bytes.NewReader(out), &again); err != nil || again != r {
			t.Fatalf("round trip of %s = %+v, %v; want %+v", out, again, err, r)
		}
	})
}

func TestDecodeLines(t *testing.T) {
	type ev struct{ N int }
	var got []int
	stopped, err := DecodeLines(strings.NewReader("{\"N\":1}\n{\"N\":2}\n"), 1<<10, "the test stream", func(e ev) bool { got = append(got, e.N); return true })
	if stopped || err != nil || !slices.Equal(got, []int{1, 2}) {
		t.Errorf("two lines: %v stopped %v err %v", got, stopped, err)
	}
	got = nil
	stopped, err = DecodeLines(strings.NewReader("{\"N\":1}\n{\"N\":2}\n"), 1<<10, "the test stream", func(e ev) bool { got = append(got, e.N); return false })
	if !stopped || err != nil || !slices.Equal(got, []int{1}) {
		t.Errorf("stopped after one: %v stopped %v err %v", got, stopped, err)
	}
	if _, err := DecodeLines(strings.NewReader("{\"N\":1}\nnot json\n"), 1<<10, "the test stream", func(ev) bool { return true }); err == nil || !strings.Contains(err.Error(), "the test stream") {
		t.Errorf("a bad line: %v, want an error naming the stream", err)
	}
	if _, err := DecodeLines(strings.NewReader(strings.Repeat("x", 100)+"\n"), 64, "the test stream", func(ev) bool { return true }); err == nil {
		t.Error("a line over the bound was read")
	}
}
