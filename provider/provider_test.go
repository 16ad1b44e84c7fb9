package provider_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

var (
	rd   = policy.MustParseGUID("{11111111-2222-3333-4444-000000000000}")
	cust = policy.MustParseGUID("{aaaaaaaa-0000-0000-0000-000000000001}")
	mac1 = packet.MAC{0x00, 0x15, 0x5d, 0x01, 0x02, 0x03}
	mac2 = packet.MAC{0x00, 0x15, 0x5d, 0x01, 0x02, 0x04}
	ca1  = netip.MustParseAddr("10.0.0.5")
	ca2  = netip.MustParseAddr("10.0.0.6")
	pa1  = netip.MustParseAddr("198.18.0.2")
	pa2  = netip.MustParseAddr("198.18.0.3")
)

// env is a fake backend served on a Unix socket, with a typed client and a
// raw HTTP client for requests the typed one cannot make.
type env struct {
	b    *providertest.Backend
	sock string
	c    *provider.Client
	raw  *http.Client
	ctx  context.Context
}

func newEnv(t *testing.T) *env {
	b := providertest.NewBackend()
	sock := providertest.Serve(t, b)
	raw := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	return &env{b: b, sock: sock, c: provider.NewClient(sock), raw: raw, ctx: t.Context()}
}

// seed installs one routing domain with subnet 10.0.0.0/24 in VSID 5001, a
// local PA and one lookup record.
func (e *env) seed(t *testing.T) {
	t.Helper()
	s := e.b.Store()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddCustomerRoute(policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}))
	must(s.AddProviderAddress(policy.ProviderAddress{ProviderAddress: pa1, PrefixLength: 15, InterfaceIndex: 2}))
	must(s.AddProviderRoute(policy.ProviderRoute{InterfaceIndex: 2, DestinationPrefix: netip.MustParsePrefix("198.18.0.0/15")}))
	must(s.AddLookupRecord(policy.LookupRecord{CustomerAddress: ca1, VirtualSubnetID: 5001, MACAddress: mac1, ProviderAddress: pa1, Rule: policy.TranslationMethodEncap}))
}

// do sends a raw request and returns the status and the body.
func (e *env) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, "http://wnvd"+path, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestLookupRecordLifecycle(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	r, err := e.c.AddLookupRecord(e.ctx, policy.LookupRecord{
		CustomerAddress: ca2, VirtualSubnetID: 5001, MACAddress: mac2, ProviderAddress: pa2,
		Rule: policy.TranslationMethodEncap, CustomerID: cust, VMName: "vm2", Context: "web",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.CustomerAddress != ca2 || r.ProviderAddress != pa2 || r.VMName != "vm2" || r.CustomerID != cust {
		t.Fatalf("AddLookupRecord returned %+v", r)
	}

	got, err := e.c.LookupRecords(e.ctx, policy.LookupRecordFilter{VMName: []policy.Wildcard{policy.MustParseWildcard("vm2")}})
	if err != nil || len(got) != 1 || got[0] != r {
		t.Fatalf("LookupRecords(VMName vm2) = %+v, %v; want [%+v]", got, err, r)
	}
	all, err := e.c.LookupRecords(e.ctx, policy.LookupRecordFilter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("LookupRecords() = %+v, %v; want 2 records", all, err)
	}

	pa := netip.MustParseAddr("198.18.0.9")
	name := "moved"
	set, err := e.c.SetLookupRecords(e.ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca2}, VirtualSubnetID: []policy.VSID{5001}},
		policy.LookupRecordChange{ProviderAddress: &pa, VMName: &name})
	if err != nil || len(set) != 1 || set[0].ProviderAddress != pa || set[0].VMName != "moved" || set[0].Context != "web" {
		t.Fatalf("SetLookupRecords = %+v, %v", set, err)
	}
	if st := e.b.Store().LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca2}}); st[0].ProviderAddress != pa {
		t.Fatalf("store has %+v after set", st)
	}

	removed, err := e.c.RemoveLookupRecords(e.ctx, policy.LookupRecordFilter{MACAddress: []packet.MAC{mac2}})
	if err != nil || len(removed) != 1 || removed[0].CustomerAddress != ca2 {
		t.Fatalf("RemoveLookupRecords = %+v, %v", removed, err)
	}
	removed, err = e.c.RemoveLookupRecords(e.ctx, policy.LookupRecordFilter{})
	if err != nil || len(removed) != 1 || removed[0].CustomerAddress != ca1 {
		t.Fatalf("RemoveLookupRecords(all) = %+v, %v", removed, err)
	}
	if n := len(e.b.Store().LookupRecords(policy.LookupRecordFilter{})); n != 0 {
		t.Fatalf("%d records left after removing all", n)
	}
}

func TestLookupRecordDefaultsRuleEncapTypeStatic(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	status, body := e.do(t, "POST", "/v1/lookup-records",
		`{"CustomerAddress":"10.0.0.6","VirtualSubnetID":5001,"MACAddress":"00-15-5D-01-02-04","ProviderAddress":"198.18.0.3"}`)
	if status != http.StatusCreated {
		t.Fatalf("POST = %d %s", status, body)
	}
	rs := e.b.Store().LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca2}})
	if len(rs) != 1 || rs[0].Rule != policy.TranslationMethodEncap || rs[0].Type != policy.Static || rs[0].MACAddress != mac2 {
		t.Fatalf("stored %+v; want Rule Encap, Type Static, MAC %s", rs, mac2)
	}
	// An explicit Rule 0 is Nat, not the default.
	status, body = e.do(t, "POST", "/v1/lookup-records",
		`{"CustomerAddress":"10.0.0.7","VirtualSubnetID":5001,"MACAddress":"00:15:5d:01:02:05","ProviderAddress":"198.18.0.3","Rule":0}`)
	if status != http.StatusCreated || !strings.Contains(body, `"Rule":0`) {
		t.Fatalf("POST Rule 0 = %d %s", status, body)
	}
}

func TestRoutesAddressesAndGlobal(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	cr, err := e.c.AddCustomerRoute(e.ctx, policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: 5002, DestinationPrefix: netip.MustParsePrefix("10.0.1.0/24"), Metric: 10})
	if err != nil || cr.NextHop != netip.IPv4Unspecified() {
		t.Fatalf("AddCustomerRoute = %+v, %v; want NextHop 0.0.0.0", cr, err)
	}
	crs, err := e.c.SetCustomerRoutes(e.ctx, policy.CustomerRouteFilter{VirtualSubnetID: []policy.VSID{5002}}, 20)
	if err != nil || len(crs) != 1 || crs[0].Metric != 20 {
		t.Fatalf("SetCustomerRoutes = %+v, %v", crs, err)
	}
	crs, err = e.c.CustomerRoutes(e.ctx, policy.CustomerRouteFilter{RoutingDomainID: []policy.Wildcard{policy.MustParseWildcard(rd.String())}})
	if err != nil || len(crs) != 2 {
		t.Fatalf("CustomerRoutes = %+v, %v; want 2", crs, err)
	}
	if crs, err = e.c.RemoveCustomerRoutes(e.ctx, policy.CustomerRouteFilter{VirtualSubnetID: []policy.VSID{5002}}); err != nil || len(crs) != 1 {
		t.Fatalf("RemoveCustomerRoutes = %+v, %v", crs, err)
	}

	pa, err := e.c.AddProviderAddress(e.ctx, policy.ProviderAddress{ProviderAddress: pa2, PrefixLength: 15, InterfaceIndex: 3, VlanID: 7})
	if err != nil || pa.ProviderAddress != pa2 {
		t.Fatalf("AddProviderAddress = %+v, %v", pa, err)
	}
	pas, err := e.c.ProviderAddresses(e.ctx, policy.ProviderAddressFilter{VlanID: []uint16{7}})
	if err != nil || len(pas) != 1 || pas[0].InterfaceIndex != 3 {
		t.Fatalf("ProviderAddresses(VlanID 7) = %+v, %v", pas, err)
	}
	if pas, err = e.c.RemoveProviderAddresses(e.ctx, policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{pa2}}); err != nil || len(pas) != 1 {
		t.Fatalf("RemoveProviderAddresses = %+v, %v", pas, err)
	}

	pr, err := e.c.AddProviderRoute(e.ctx, policy.ProviderRoute{InterfaceIndex: 2, DestinationPrefix: netip.MustParsePrefix("198.19.0.0/16"), NextHop: netip.MustParseAddr("198.18.0.1")})
	if err != nil || pr.NextHop != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("AddProviderRoute = %+v, %v", pr, err)
	}
	prs, err := e.c.SetProviderRoutes(e.ctx, policy.ProviderRouteFilter{DestinationPrefix: []netip.Prefix{pr.DestinationPrefix}}, 5)
	if err != nil || len(prs) != 1 || prs[0].Metric != 5 {
		t.Fatalf("SetProviderRoutes = %+v, %v", prs, err)
	}
	if prs, err = e.c.ProviderRoutes(e.ctx, policy.ProviderRouteFilter{InterfaceIndex: []int{2}}); err != nil || len(prs) != 2 {
		t.Fatalf("ProviderRoutes = %+v, %v; want 2", prs, err)
	}
	if prs, err = e.c.RemoveProviderRoutes(e.ctx, policy.ProviderRouteFilter{NextHop: []netip.Addr{pr.NextHop}}); err != nil || len(prs) != 1 {
		t.Fatalf("RemoveProviderRoutes = %+v, %v", prs, err)
	}

	g, err := e.c.Global(e.ctx)
	if err != nil || g.UseExternalRouter {
		t.Fatalf("Global = %+v, %v", g, err)
	}
	if g, err = e.c.SetGlobal(e.ctx, policy.Global{UseExternalRouter: true}); err != nil || !g.UseExternalRouter {
		t.Fatalf("SetGlobal = %+v, %v", g, err)
	}
	if !e.b.Store().Global().UseExternalRouter {
		t.Fatal("store's Global not changed by SetGlobal")
	}
	// A PUT naming no property keeps the current setting.
	if status, body := e.do(t, "PUT", "/v1/global", `{}`); status != 200 || !strings.Contains(body, `"UseExternalRouter":true`) {
		t.Fatalf("PUT {} = %d %s", status, body)
	}
}

func TestListsAreArraysNotNull(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/v1/lookup-records", "/v1/customer-routes", "/v1/provider-addresses", "/v1/provider-routes", "/v1/ports"} {
		if status, body := e.do(t, "GET", path, ""); status != 200 || strings.TrimSpace(body) != "[]" {
			t.Errorf("GET %s = %d %q; want 200 []", path, status, body)
		}
	}
	if status, body := e.do(t, "GET", "/v1/counters", ""); status != 200 || strings.TrimSpace(body) != `{"Ports":[],"VSIDs":[],"Drops":[],"Notifications":[],"NotificationHandles":0,"Migration":{"Forwarded":0,"RedirectsSent":0,"RedirectsApplied":0}}` {
		t.Errorf("GET /v1/counters = %d %q", status, body)
	}
}

// TestBadInput sends each bad request and checks the status, the one-line
// message, and that the policy is unchanged.
func TestBadInput(t *testing.T) {
	const rec = `"VirtualSubnetID":5001,"MACAddress":"00:15:5d:01:02:04","ProviderAddress":"198.18.0.3"`
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"reserved VSID", "POST", "/v1/lookup-records", `{"CustomerAddress":"10.0.0.6","VirtualSubnetID":4095,"MACAddress":"00:15:5d:01:02:04","ProviderAddress":"198.18.0.3"}`,
			400, "VirtualSubnetID 4095 is reserved: use 4096..16777214"},
		{"malformed MAC", "POST", "/v1/lookup-records", `{"CustomerAddress":"10.0.0.6","VirtualSubnetID":5001,"MACAddress":"zz","ProviderAddress":"198.18.0.3"}`,
			400, `MACAddress "zz" is malformed: use 12 hex digits such as 00155D010203`},
		{"malformed CA", "POST", "/v1/lookup-records", `{"CustomerAddress":"10.0.0.300",` + rec + `}`,
			400, `CustomerAddress "10.0.0.300" is malformed: use an IPv4 or IPv6 address such as 10.0.0.5`},
		{"VSID not a number", "POST", "/v1/lookup-records", `{"CustomerAddress":"10.0.0.6","VirtualSubnetID":"x"}`,
			400, `VirtualSubnetID "x" is malformed: use 4096..16777214`},
		{"malformed prefix", "POST", "/v1/customer-routes", `{"RoutingDomainID":"{11111111-2222-3333-4444-000000000000}","VirtualSubnetID":5002,"DestinationPrefix":"10.0.1.0/33"}`,
			400, `DestinationPrefix "10.0.1.0/33" is malformed: use a prefix such as 10.0.0.0/24`},
		{"malformed GUID", "POST", "/v1/customer-routes", `{"RoutingDomainID":"{nope}","VirtualSubnetID":5002,"DestinationPrefix":"10.0.1.0/24"}`,
			400, `RoutingDomainID "{nope}" is malformed: use a GUID such as {11111111-2222-3333-4444-000000000000}`},
		{"unknown field", "POST", "/v1/lookup-records", `{"CustomerAddress":"10.0.0.6","Foo":1,` + rec + `}`,
			400, `unknown field "Foo": use CustomerAddress, VirtualSubnetID, MACAddress`},
		{"not an object", "POST", "/v1/lookup-records", `[1]`, 400, "request body is not a JSON object"},
		{"bad JSON", "POST", "/v1/lookup-records", `{"CustomerAddress":`, 400, "request body is not a JSON object"},
		{"two objects", "POST", "/v1/lookup-records", `{} {}`, 400, "request body has data after the JSON object"},
		{"empty body", "POST", "/v1/lookup-records", ``, 400, "request body is empty: send a JSON object"},
		{"duplicate identity", "POST", "/v1/lookup-records", `{"CustomerAddress":"10.0.0.5","VirtualSubnetID":5001,"MACAddress":"00:15:5d:01:02:03","ProviderAddress":"198.18.0.3"}`,
			409, "already"},
		{"set unknown record", "PATCH", "/v1/lookup-records?CustomerAddress=10.0.0.77&VirtualSubnetID=5001", `{"VMName":"x"}`,
			404, "no lookup record has"},
		{"remove unknown record", "DELETE", "/v1/lookup-records?CustomerAddress=10.0.0.77", "", 404, "no lookup record has"},
		{"set unknown field", "PATCH", "/v1/lookup-records?VirtualSubnetID=5001", `{"MACAddress":"00:15:5d:01:02:09"}`,
			400, `unknown field "MACAddress": use ProviderAddress, CustomerID, Context, Rule, VMName, UseVmMACAddress`},
		{"set bad Rule", "PATCH", "/v1/lookup-records?VirtualSubnetID=5001", `{"Rule":"Encap"}`,
			400, `Rule "Encap" is malformed: use 0 (Nat), 1 (Encap) or 2 (None)`},
		{"malformed query", "GET", "/v1/lookup-records?VirtualSubnetID=abc", "", 400, `VirtualSubnetID "abc" is malformed: use 4096..16777214`},
		{"unknown query", "GET", "/v1/lookup-records?Colour=red", "", 400, `unknown query parameter "Colour": use CustomerAddress`},
		{"repeated query", "GET", "/v1/next-hop?SourceVirtualSubnetID=5001&SourceVirtualSubnetID=5002", "", 400, "query parameter SourceVirtualSubnetID is given 2 times: give it once"},
		{"bad list element", "GET", "/v1/lookup-records?VirtualSubnetID=5001&VirtualSubnetID=50x1", "", 400, `VirtualSubnetID "50x1" is malformed: use 4096..16777214`},
		{"bad wildcard", "GET", "/v1/lookup-records?VMName=web%5B1", "", 400, `VMName "web[1" is malformed: use text with the wildcards`},
		{"bad MAC filter", "DELETE", "/v1/provider-addresses?MACAddress=00155D01020", "", 400, `MACAddress "00155D01020" is malformed: use 12 hex digits such as 00155D010203`},
		{"route set without Metric", "PATCH", "/v1/customer-routes?VirtualSubnetID=5001", `{}`, 400, "Metric is missing"},
		{"route set unknown", "PATCH", "/v1/customer-routes?VirtualSubnetID=6000", `{"Metric":3}`, 404, "no customer route has"},
		{"PA bad prefix length", "POST", "/v1/provider-addresses", `{"ProviderAddress":"198.18.0.9","PrefixLength":33}`, 400, "PrefixLength 33 is out of range"},
		{"PA patch unknown field", "PATCH", "/v1/provider-addresses", `{"AddressState":4}`, 400, `unknown field "AddressState": use PrefixLength, VlanID, MACAddress`},
		{"PA patch bad VlanID", "PATCH", "/v1/provider-addresses", `{"VlanID":4095}`, 400, "VlanID 4095 is out of range: use 0 (none) or 1..4094"},
		{"global patch", "PATCH", "/v1/global", `{}`, 405, "method PATCH is not allowed on /v1/global: use GET, PUT"},
		{"global unknown field", "PUT", "/v1/global", `{"UseExternalRouters":true}`, 400, `unknown field "UseExternalRouters": use UseExternalRouter`},
		{"global bool", "PUT", "/v1/global", `{"UseExternalRouter":"yes"}`, 400, `UseExternalRouter "yes" is malformed: use true or false`},
		{"unknown path", "GET", "/v2/things", "", 404, "path /v2/things is not part of the provider API"},
		{"next-hop missing source", "GET", "/v1/next-hop?DestinationCustomerAddress=10.0.0.5&SourceVirtualSubnetID=5001", "", 400, "SourceCustomerAddress is missing"},
		{"next-hop reserved VSID", "GET", "/v1/next-hop?SourceCustomerAddress=10.0.0.5&DestinationCustomerAddress=10.0.0.6&SourceVirtualSubnetID=10", "", 400, "SourceVirtualSubnetID 10 is reserved: use 4096..16777214"},
		{"next-hop unknown destination", "GET", "/v1/next-hop?SourceCustomerAddress=10.0.0.5&DestinationCustomerAddress=10.0.0.99&SourceVirtualSubnetID=5001", "", 404, "DestinationCustomerAddress 10.0.0.99 has no lookup record"},
		{"port without name", "POST", "/v1/ports", `{"MACAddress":"00:15:5d:01:02:03"}`, 400, "Name is missing"},
		{"port name too long", "POST", "/v1/ports", `{"Name":"` + strings.Repeat("a", 64) + `","MACAddress":"00:15:5d:01:02:03"}`, 400, `is invalid: use 1..63 characters`},
		{"port name too long for its interface", "POST", "/v1/ports", `{"Name":"a-very-long-port-name","MACAddress":"00:15:5d:01:02:03"}`, 400, `Interface is missing and Name "a-very-long-port-name" is longer than an interface name`},
		{"port multicast MAC", "POST", "/v1/ports", `{"Name":"vm1","MACAddress":"01:00:5e:00:00:01"}`, 400, "MACAddress 01:00:5e:00:00:01 is invalid"},
		{"port reserved VSID", "POST", "/v1/ports", `{"Name":"vm1","MACAddress":"00:15:5d:01:02:03","VirtualSubnetID":16777215}`, 400, "VirtualSubnetID 16777215 is reserved"},
		{"port bad CA", "POST", "/v1/ports", `{"Name":"vm1","MACAddress":"00:15:5d:01:02:03","CustomerAddresses":["10.0.0.1","x"]}`, 400, `CustomerAddresses ["10.0.0.1","x"] is malformed: use a list of IPv4 or IPv6 addresses`},
		{"port Interface too long", "POST", "/v1/ports", `{"Name":"vm1","Interface":"a-very-long-ifname","MACAddress":"00:15:5d:01:02:03"}`, 400, `Interface "a-very-long-ifname"`},
		{"port Interface with slash", "POST", "/v1/ports", `{"Name":"vm1","Interface":"a/b","MACAddress":"00:15:5d:01:02:03"}`, 400, `Interface "a/b"`},
		{"port of the removed TAP API", "POST", "/v1/ports", `{"Name":"vm1","MACAddress":"00:15:5d:01:02:03","Netns":"ns1"}`, 400, `unknown field "Netns"`},
		{"detach unknown port", "DELETE", "/v1/ports/vm9", "", 404, `port "vm9" is not attached`},
		{"get unknown port", "GET", "/v1/ports/vm9", "", 404, `port "vm9" is not attached`},
	}
	e := newEnv(t)
	e.seed(t)
	before := e.b.Store().Objects()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.do(t, c.method, c.path, c.body)
			if status != c.status {
				t.Errorf("status %d, want %d (body %s)", status, c.status, body)
			}
			var eb struct{ Error string }
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error == "" || strings.Count(body, "\n") != 1 {
				t.Errorf("body %q is not one JSON error line", body)
			}
			if !strings.Contains(eb.Error, c.msg) {
				t.Errorf("error %q does not contain %q", eb.Error, c.msg)
			}
			if after := e.b.Store().Objects(); !reflect.DeepEqual(before, after) {
				t.Errorf("policy changed:\nbefore %+v\nafter  %+v", before, after)
			}
			if ps := e.b.Ports(); len(ps) != 0 {
				t.Errorf("ports changed: %+v", ps)
			}
		})
	}
}

func TestPorts(t *testing.T) {
	e := newEnv(t)
	spec := provider.PortSpec{Name: "vm1", MACAddress: mac1, VirtualSubnetID: 5001,
		CustomerAddresses: []netip.Addr{ca1}, ManagedBy: "policy-server"}
	p, err := e.c.AttachPort(e.ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Interface != "vm1" || p.Index != 1 || p.ManagedBy != "policy-server" || p.CustomerAddresses[0] != ca1 {
		t.Fatalf("AttachPort = %+v; want Interface defaulted to Name, Index 1", p)
	}
	_, err = e.c.AttachPort(e.ctx, spec)
	if !errors.Is(err, policy.ErrExists) || err.Error() != `port "vm1" is already attached: detach it first or pick another Name` {
		t.Fatalf("second AttachPort: %v; want ErrExists with the backend's message", err)
	}
	if _, err := e.c.AttachPort(e.ctx, provider.PortSpec{Name: "vm0", Interface: "tap0", MACAddress: mac2}); err != nil {
		t.Fatal(err)
	}
	ps, err := e.c.Ports(e.ctx)
	if err != nil || len(ps) != 2 || ps[0].Name != "vm0" || ps[1].Name != "vm1" || ps[0].Interface != "tap0" {
		t.Fatalf("Ports = %+v, %v; want vm0, vm1 by name", ps, err)
	}
	if got, err := e.c.Port(e.ctx, "vm1"); err != nil || got.Name != "vm1" || got.VirtualSubnetID != 5001 {
		t.Fatalf("Port(vm1) = %+v, %v", got, err)
	}
	if err := e.c.DetachPort(e.ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DetachPort(e.ctx, "vm1"); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("second DetachPort: %v; want ErrNotFound", err)
	}
	if _, err := e.c.Port(e.ctx, "vm1"); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("Port after detach: %v; want ErrNotFound", err)
	}
}

func TestNextHopAndCounters(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	if _, err := e.b.Store().AddLookupRecord(policy.LookupRecord{CustomerAddress: ca2, VirtualSubnetID: 5001, MACAddress: mac2, ProviderAddress: pa2, Rule: policy.TranslationMethodEncap}); err != nil {
		t.Fatal(err)
	}
	nh, err := e.c.NextHop(e.ctx, provider.NextHopQuery{SourceCustomerAddress: ca1, DestinationCustomerAddress: ca2, SourceVirtualSubnetID: 5001})
	want := provider.NextHop{
		NextHopQuery:   provider.NextHopQuery{SourceCustomerAddress: ca1, DestinationCustomerAddress: ca2, SourceVirtualSubnetID: 5001},
		NextHopAddress: ca2, SourceMACAddress: mac1, NextHopMACAddress: mac2, ProviderAddress: pa2, VirtualSubnetID: 5001}
	if err != nil || nh != want {
		t.Fatalf("NextHop = %+v, %v; want %+v", nh, err, want)
	}
	// Select-NetVirtualizationNextHop's output: the inputs, then the answer,
	// MACs as WMI prints them.
	status, body := e.do(t, "GET", "/v1/next-hop?SourceCustomerAddress=10.0.0.5&DestinationCustomerAddress=10.0.0.6&SourceVirtualSubnetID=5001", "")
	if wantBody := `{"SourceCustomerAddress":"10.0.0.5","DestinationCustomerAddress":"10.0.0.6","SourceVirtualSubnetID":5001,` +
		`"NextHopAddress":"10.0.0.6","SourceMACAddress":"00155D010203","NextHopMACAddress":"00155D010204","ProviderAddress":"198.18.0.3","VirtualSubnetID":5001}` + "\n"; status != http.StatusOK || body != wantBody {
		t.Fatalf("GET /v1/next-hop = %d %s; want %s", status, body, wantBody)
	}
	_, err = e.c.NextHop(e.ctx, provider.NextHopQuery{SourceCustomerAddress: ca1, DestinationCustomerAddress: ca2})
	if !errors.Is(err, policy.ErrInvalid) || err.Error() != "SourceVirtualSubnetID is missing: use 4096..16777214" {
		t.Fatalf("NextHop without VSID: %v", err)
	}

	c := provider.Counters{
		Ports:               []provider.NamedPortCounters{{Name: "vm1", PortCounters: provider.PortCounters{RxFrames: 3, RxBytes: 300, TxFrames: 2, TxBytes: 200, Drops: 1}}},
		VSIDs:               []provider.VSIDCounters{{VirtualSubnetID: 5001, TxFrames: 2, RxFrames: 3, Encapsulated: 2, Decapsulated: 1, Drops: 1}},
		Drops:               []provider.DropCount{{Reason: "no-lookup-record", Count: 1}},
		Notifications:       []provider.NotificationCounters{{Type: "WnvPolicyMismatchType", Raised: 4, RateLimited: 90, Delivered: 4}},
		NotificationHandles: 2,
	}
	e.b.SetCounters(c)
	got, err := e.c.Counters(e.ctx)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("Counters = %+v, %v; want %+v", got, err, c)
	}
	status, body = e.do(t, "GET", "/v1/counters", "")
	if status != 200 || !strings.Contains(body, `{"Name":"vm1","RxFrames":3,"RxBytes":300,`) {
		t.Fatalf("counters JSON = %s; want port counters flattened next to Name", body)
	}
}

func TestClientErrors(t *testing.T) {
	e := newEnv(t)
	_, err := e.c.AddLookupRecord(e.ctx, policy.LookupRecord{CustomerAddress: ca1, VirtualSubnetID: 4095, MACAddress: mac1, ProviderAddress: pa1})
	var pe *jsonapi.Error
	if !errors.As(err, &pe) || pe.Status != 400 || pe.Message != "VirtualSubnetID 4095 is reserved: use 4096..16777214" {
		t.Fatalf("error = %#v; want the server's one line with status 400", err)
	}
	if !errors.Is(err, policy.ErrInvalid) || errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("error %v does not classify as ErrInvalid only", err)
	}
	_, err = e.c.SetCustomerRoutes(e.ctx, policy.CustomerRouteFilter{VirtualSubnetID: []policy.VSID{7000}}, 1)
	if !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("SetCustomerRoutes on nothing: %v; want ErrNotFound", err)
	}

	missing := filepath.Join(t.TempDir(), "none.sock")
	_, err = provider.NewClient(missing).Global(e.ctx)
	want := "cannot reach wnvd at " + missing + ": is it running? (dial unix " + missing + ": connect: no such file or directory)"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v; want %s", err, want)
	}
}

func TestServeSocketLifecycle(t *testing.T) {
	dir, err := os.MkdirTemp("", "wnvs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "run", "wnvd.sock")
	h := provider.NewHandler(providertest.NewBackend())

	// A stale socket (bound, nobody listening) is replaced.
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- provider.Serve(ctx, sock, h) }()
	c := provider.NewClient(sock)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Global(ctx); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %v, %v; want 0660", fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o755 {
		t.Fatalf("directory mode = %v, %v; want 0755", di.Mode(), err)
	}

	// A live socket is not taken over.
	err = provider.Serve(t.Context(), sock, h)
	if err == nil || err.Error() != "socket "+sock+" is in use: another wnvd is listening there" {
		t.Fatalf("second Serve = %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel = %v; want nil", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind after exit: %v", err)
	}

	// A regular file at the path is never removed.
	if err := os.WriteFile(sock, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = provider.Serve(t.Context(), sock, h)
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("Serve over a file = %v", err)
	}
	if b, err := os.ReadFile(sock); err != nil || string(b) != "x" {
		t.Fatalf("regular file was touched: %q, %v", b, err)
	}
}

// kindPrefixBackend classifies errors the fmt.Errorf("%w: ...") way.
type kindPrefixBackend struct{ *providertest.Backend }

func (kindPrefixBackend) DetachPort(name string) error {
	return fmt.Errorf("%w: port %q is not attached", policy.ErrNotFound, name)
}

func TestKindPrefixIsStripped(t *testing.T) {
	sock := providertest.Serve(t, kindPrefixBackend{providertest.NewBackend()})
	err := provider.NewClient(sock).DetachPort(t.Context(), "vm1")
	if !errors.Is(err, policy.ErrNotFound) || err.Error() != `port "vm1" is not attached` {
		t.Fatalf("DetachPort: %v; want ErrNotFound without the \"not found: \" prefix", err)
	}
}

func TestReadOnlyRecordFlagsRejected(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	body := `{"CustomerAddress":"10.0.0.9","VirtualSubnetID":5001,"MACAddress":"02:00:00:00:00:09","ProviderAddress":"198.18.0.9","Unusable":true}`
	status, msg := e.do(t, "POST", "/v1/lookup-records", body)
	if status != 400 || !strings.Contains(msg, "read-only") {
		t.Fatalf("got %d %q, want 400 naming the read-only property", status, msg)
	}
	if n := len(e.b.Store().LookupRecords(policy.LookupRecordFilter{})); n != 1 {
		t.Fatalf("%d records after the rejected request, want the 1 seeded", n)
	}
}
