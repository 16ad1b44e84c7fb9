package provider_test

import (
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// TestFilterListsAndWildcards: query parameters take lists (repeated) and
// wildcards, a single value still works, and MACs are accepted in every form
// and printed as WMI prints them.
func TestFilterListsAndWildcards(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	if _, err := e.c.AddLookupRecord(e.ctx, policy.LookupRecord{CustomerAddress: ca2, VirtualSubnetID: 5001, MACAddress: mac2,
		ProviderAddress: pa2, Rule: policy.TranslationMethodEncap, VMName: "Web-2", Context: "tenant/blue"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		query string
		want  []netip.Addr
	}{
		{"", []netip.Addr{ca1, ca2}},
		{"?CustomerAddress=10.0.0.6", []netip.Addr{ca2}},
		{"?CustomerAddress=10.0.0.5&CustomerAddress=10.0.0.6&VirtualSubnetID=5001", []netip.Addr{ca1, ca2}},
		{"?VMName=web*", []netip.Addr{ca2}},
		{"?Context=*%2Fblue&Rule=1", []netip.Addr{ca2}},
		{"?MACAddress=00-15-5d-01-02-03&MACAddress=0015.5D01.0204", []netip.Addr{ca1, ca2}},
		{"?MACAddress=00155d010204", []netip.Addr{ca2}},
		{"?Type=3", nil},
	} {
		status, body := e.do(t, "GET", "/v1/lookup-records"+c.query, "")
		var got []netip.Addr
		for _, part := range strings.Split(body, `"CustomerAddress":"`)[1:] {
			got = append(got, netip.MustParseAddr(part[:strings.IndexByte(part, '"')]))
		}
		if status != http.StatusOK || !reflect.DeepEqual(got, c.want) {
			t.Errorf("GET %s = %d %s; want CAs %v", c.query, status, body, c.want)
		}
	}
	if _, body := e.do(t, "GET", "/v1/lookup-records?VMName=Web-2", ""); !strings.Contains(body, `"MACAddress":"00155D010204"`) {
		t.Errorf("MAC not in the WMI form: %s", body)
	}
	// The typed client sends lists and wildcards the same way.
	got, err := e.c.RemoveLookupRecords(e.ctx, policy.LookupRecordFilter{VMName: []policy.Wildcard{policy.MustParseWildcard("nobody"), policy.MustParseWildcard("W?B-*")}})
	if err != nil || len(got) != 1 || got[0].CustomerAddress != ca2 {
		t.Fatalf("RemoveLookupRecords(VMName nobody or W?B-*) = %+v, %v", got, err)
	}
	// A MAC given in any form is stored and printed in one.
	status, body := e.do(t, "POST", "/v1/provider-addresses", `{"ProviderAddress":"198.18.0.7","MACAddress":"02:00:5E:10:00:07"}`)
	if status != http.StatusCreated || !strings.Contains(body, `"MACAddress":"02005E100007"`) {
		t.Fatalf("POST PA = %d %s", status, body)
	}
}

func TestSetProviderAddresses(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	vlan, plen, m := uint16(12), uint8(24), packet.MAC{0x02, 0, 0, 0, 0, 0x01}
	got, err := e.c.SetProviderAddresses(e.ctx, policy.ProviderAddressFilter{InterfaceIndex: []int{2}},
		policy.ProviderAddressChange{VlanID: &vlan, PrefixLength: &plen, MACAddress: &m})
	want := policy.ProviderAddress{ProviderAddress: pa1, InterfaceIndex: 2, PrefixLength: 24, VlanID: 12, MACAddress: m}
	if err != nil || len(got) != 1 || got[0] != want {
		t.Fatalf("SetProviderAddresses = %+v, %v; want [%+v]", got, err, want)
	}
	before := e.b.Store().Table()
	for _, c := range []struct{ query, body, want string }{
		{"", `{"PrefixLength":33}`, "PrefixLength 33 is out of range for IPv4 ProviderAddress 198.18.0.2: use 0..32"},
		{"", `{"MACAddress":"01-00-5E-00-00-01"}`, "MACAddress 01:00:5e:00:00:01 is multicast"},
		{"?VlanID=99", `{"VlanID":1}`, "no provider address has VlanID 99"},
	} {
		status, body := e.do(t, "PATCH", "/v1/provider-addresses"+c.query, c.body)
		if status/100 != 4 || !strings.Contains(body, c.want) {
			t.Errorf("PATCH %s %s = %d %s; want %s", c.query, c.body, status, body, c.want)
		}
	}
	if e.b.Store().Table() != before {
		t.Fatal("a refused Set changed the policy")
	}
	if _, err := e.c.SetProviderAddresses(e.ctx, policy.ProviderAddressFilter{}, policy.ProviderAddressChange{}); err != nil {
		t.Fatalf("an empty change: %v", err)
	}
	if _, err := e.c.SetProviderAddresses(e.ctx, policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{pa2}}, policy.ProviderAddressChange{VlanID: &vlan}); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("set of an absent PA: %v; want ErrNotFound", err)
	}
}

// TestRuleOmissionIsNeverNat: Nat is 0 on the wire, so a Go record without a
// Rule must not become Nat through the typed client.
func TestRuleOmissionIsNeverNat(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	r, err := e.c.AddLookupRecord(e.ctx, policy.LookupRecord{CustomerAddress: ca2, VirtualSubnetID: 5001, MACAddress: mac2, ProviderAddress: pa2})
	if err != nil || r.Rule != policy.TranslationMethodEncap {
		t.Fatalf("AddLookupRecord without Rule = %+v, %v; want Rule Encap", r, err)
	}
	nat := netip.MustParseAddr("10.0.0.8")
	r, err = e.c.AddLookupRecord(e.ctx, policy.LookupRecord{CustomerAddress: nat, VirtualSubnetID: 5001, MACAddress: packet.MAC{2, 0, 0, 0, 0, 8},
		ProviderAddress: pa2, Rule: policy.TranslationMethodNat})
	if err != nil || r.Rule != policy.TranslationMethodNat {
		t.Fatalf("AddLookupRecord with Rule Nat = %+v, %v", r, err)
	}
	if status, body := e.do(t, "GET", "/v1/lookup-records?CustomerAddress=10.0.0.8&Rule=0", ""); status != http.StatusOK || !strings.Contains(body, `"Rule":0,`) {
		t.Fatalf("GET Rule=0 = %d %s; want the Nat record with its wire number", status, body)
	}
	if status, body := e.do(t, "POST", "/v1/lookup-records", `{"CustomerAddress":"10.0.0.9","VirtualSubnetID":5001,"MACAddress":"020000000009","ProviderAddress":"198.18.0.3","Rule":null}`); status != http.StatusCreated || !strings.Contains(body, `"Rule":1,`) {
		t.Fatalf("POST Rule null = %d %s; want Encap", status, body)
	}
	for _, body := range []string{`{"Rule":3}`, `{"Rule":-1}`} {
		if status, out := e.do(t, "PATCH", "/v1/lookup-records?CustomerAddress=10.0.0.9", body); status != http.StatusBadRequest || !strings.Contains(out, "is malformed: use 0 (Nat), 1 (Encap) or 2 (None)") {
			t.Errorf("PATCH %s = %d %s", body, status, out)
		}
	}
	// The store, below the API's default, refuses a record without Rule.
	if _, err := e.b.Store().AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr("10.0.0.10"), VirtualSubnetID: 5001,
		MACAddress: packet.MAC{2, 0, 0, 0, 0, 10}, ProviderAddress: pa2}); !errors.Is(err, policy.ErrInvalid) || err.Error() != "Rule is missing: use 0 (Nat), 1 (Encap) or 2 (None)" {
		t.Fatalf("store add without Rule: %v", err)
	}
}
