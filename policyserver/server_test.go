package policyserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// snapshot is every key and value under the server's prefix.
func snapshot(t *testing.T, cli *clientv3.Client) map[string]string {
	t.Helper()
	resp, err := cli.Get(context.Background(), Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range resp.Kvs {
		if !strings.HasPrefix(string(kv.Key), Prefix+"alive/") {
			m[string(kv.Key)] = string(kv.Value)
		}
	}
	return m
}

func TestVMLifecycle(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)

	vm, err := c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.0.5"), addr("fd00:0:0:1::5")}})
	if err != nil {
		t.Fatal(err)
	}
	if vm.RoutingDomainID != rdBlue || vm.CustomerID != tenantA || vm.ProviderAddress != addr("198.18.0.1") {
		t.Fatalf("server-filled fields: %+v", vm)
	}
	got, err := c.VM(ctx, "blue1")
	if err != nil || !slices.Equal(got.CustomerAddresses, vm.CustomerAddresses) || got.Host != "host1" {
		t.Fatalf("VM(blue1) = %+v, %v", got, err)
	}
	sn, err := c.Subnet(ctx, 5002)
	if err != nil || sn.Encapsulation != policyapi.VXLAN || !slices.Equal(sn.Gateways, []netip.Addr{addr("10.0.1.1")}) {
		t.Fatalf("Subnet(5002) = %+v, %v", sn, err)
	}

	p, err := c.Policy(ctx, rdBlue)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Routes) != 3 || len(p.Records) != 2 || len(p.Subnets) != 2 || p.Revision == 0 {
		t.Fatalf("policy of blue: %d routes, %d records, %d subnets, rev %d", len(p.Routes), len(p.Records), len(p.Subnets), p.Revision)
	}
	// The derived objects install as they are into a host's policy.Store.
	st := policy.NewStore()
	for _, r := range p.Routes {
		if _, err := st.AddCustomerRoute(r); err != nil {
			t.Fatalf("route %+v does not install: %v", r, err)
		}
	}
	for _, r := range p.Records {
		if _, err := st.AddLookupRecord(r); err != nil {
			t.Fatalf("record %+v does not install: %v", r, err)
		}
	}

	ans, err := c.Lookup(ctx, 5002, addr("10.0.0.5")) // routed: asked from the other subnet
	if err != nil || ans.Record.ProviderAddress != addr("198.18.0.1") || ans.Record.VirtualSubnetID != 5001 || ans.Encapsulation != policyapi.NVGRE {
		t.Fatalf("Lookup = %+v, %v", ans, err)
	}
	if _, err := c.Lookup(ctx, 6001, addr("10.0.0.5")); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("lookup in another routing domain: %v, want not found", err)
	}

	moved, err := c.MigrateVM(ctx, "blue1", "host2")
	if err != nil {
		t.Fatal(err)
	}
	if moved.Host != "host2" || moved.PreviousHost != "host1" || moved.ProviderAddress != addr("198.18.0.2") ||
		moved.PreviousProviderAddress != addr("198.18.0.1") || moved.MigratedAt.IsZero() {
		t.Fatalf("migrated VM: %+v", moved)
	}
	ans, _ = c.Lookup(ctx, 5001, addr("fd00:0:0:1::5"))
	if ans.Record.ProviderAddress != addr("198.18.0.2") {
		t.Fatalf("record after migration points at %s", ans.Record.ProviderAddress)
	}
	on2, err := c.VMs(ctx, policyapi.VMFilter{Host: "host2"})
	if err != nil || len(on2) != 1 {
		t.Fatalf("VMs on host2 = %v, %v", on2, err)
	}
	on1, _ := c.VMs(ctx, policyapi.VMFilter{Host: "host1"})
	if len(on1) != 0 {
		t.Fatalf("VMs on host1 after migration = %v", on1)
	}

	// A new PA for host2 moves its VMs' records.
	must(t)(c.RegisterHost(ctx, policyapi.Host{Name: "host2", ProviderAddresses: []netip.Addr{addr("198.18.1.2")}}))
	ans, _ = c.Lookup(ctx, 5001, addr("10.0.0.5"))
	if ans.Record.ProviderAddress != addr("198.18.1.2") {
		t.Fatalf("record after the host's PA changed points at %s", ans.Record.ProviderAddress)
	}

	if err := c.DeleteVM(ctx, "blue1"); err != nil {
		t.Fatal(err)
	}
	// Once deleted, its CA and MAC are free again.
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue9", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host3",
		CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))
}

func TestGateway(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))
	g, err := c.CreateGateway(ctx, policyapi.Gateway{Name: "gw1", VirtualSubnetID: 5002, MACAddress: mac(99), CustomerAddress: addr("10.0.1.254"), Host: "host3"})
	if err != nil {
		t.Fatal(err)
	}
	if g.ProviderAddress != addr("198.18.0.3") {
		t.Fatalf("gateway PA %s", g.ProviderAddress)
	}
	p, err := c.Policy(ctx, rdBlue)
	if err != nil {
		t.Fatal(err)
	}
	st := policy.NewStore()
	for _, r := range p.Routes {
		if _, err := st.AddCustomerRoute(r); err != nil {
			t.Fatalf("route %+v does not install: %v", r, err)
		}
	}
	for _, r := range p.Records {
		if _, err := st.AddLookupRecord(r); err != nil {
			t.Fatalf("record %+v does not install: %v", r, err)
		}
	}
	wild := st.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{addr("0.0.0.0")}})
	if len(wild) != 1 || wild[0].MACAddress != mac(99) || wild[0].Type != policy.GatewayWildcard {
		t.Fatalf("wildcard records: %+v", wild)
	}
	def := st.CustomerRoutes(policy.CustomerRouteFilter{DestinationPrefix: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
	if len(def) != 1 || def[0].NextHop != addr("10.0.1.254") {
		t.Fatalf("default routes: %+v", def)
	}
	// The gateway's CA and MAC are taken in its routing domain.
	if _, err := c.CreateVM(ctx, policyapi.VM{Name: "x", MACAddress: mac(99), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.0.9")}}); !errors.Is(err, policy.ErrExists) {
		t.Fatalf("VM with the gateway's MAC: %v", err)
	}
	if err := c.DeleteHost(ctx, "host3"); !errors.Is(err, policy.ErrExists) || !strings.Contains(err.Error(), "gateway gw1") {
		t.Fatalf("deleting the gateway's host: %v", err)
	}
	if err := c.DeleteGateway(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteHost(ctx, "host3"); err != nil {
		t.Fatal(err)
	}
}

// TestRulesWriteNothing checks each validation rule: one clear sentence,
// the right status, and no key changed in etcd.
func TestRulesWriteNothing(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue2", MACAddress: mac(2), VirtualSubnetID: 5002, Host: "host2",
		CustomerAddresses: []netip.Addr{addr("10.0.1.5")}}))

	vm := func(f func(*policyapi.VM)) policyapi.VM {
		v := policyapi.VM{Name: "new", MACAddress: mac(50), VirtualSubnetID: 5001, Host: "host1", CustomerAddresses: []netip.Addr{addr("10.0.0.50")}}
		f(&v)
		return v
	}
	cases := []struct {
		name   string
		call   func() error
		status int
		want   string
	}{
		{"CA outside subnet", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.CustomerAddresses = []netip.Addr{addr("10.0.9.5")} }))
			return err
		}, 400, "CustomerAddresses 10.0.9.5 is outside the prefixes of VirtualSubnetID 5001 (10.0.0.0/24, fd00:0:0:1::/64): use an address inside them"},
		{"CA is the gateway", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.CustomerAddresses = []netip.Addr{addr("10.0.0.1")} }))
			return err
		}, 400, "CustomerAddresses 10.0.0.1 is the gateway address of VirtualSubnetID 5001: use another host address"},
		{"CA used in routing domain", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.CustomerAddresses = []netip.Addr{addr("10.0.0.5")} }))
			return err
		}, 409, "CustomerAddresses 10.0.0.5 is already used by blue1 in routing domain {11111111-2222-3333-4444-000000000001}: use a free address"},
		{"MAC used in routing domain (other subnet)", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.MACAddress = mac(2) }))
			return err
		}, 409, "MACAddress 00:15:5d:00:00:02 is already used by VM blue2 in routing domain {11111111-2222-3333-4444-000000000001}: give each VM its own MAC"},
		{"unknown host", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.Host = "host9" }))
			return err
		}, 404, "Host host9 is not a registered host: register it (its host agent does) first"},
		{"unknown subnet", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.VirtualSubnetID = 7777 }))
			return err
		}, 404, "VirtualSubnetID 7777 is not a known subnet: create the subnet first"},
		{"reserved VSID", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.VirtualSubnetID = 4095 }))
			return err
		}, 400, "VirtualSubnetID 4095 is reserved: use 4096..16777214"},
		{"duplicate VM name", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.Name = "blue1" }))
			return err
		}, 409, "VM blue1 already exists: use another name"},
		{"malformed name", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.Name = "a/b" }))
			return err
		}, 400, `Name "a/b" is malformed: use 1..63 letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"interface name with a slash", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.Interface = "vnet/1" }))
			return err
		}, 400, `Interface "vnet/1" is not an interface name: use 1..15 bytes without '/', ':' or spaces`},
		{"name too long to stand for the interface", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.Name = "a-vm-with-a-long-name" }))
			return err
		}, 400, `Interface is missing and Name "a-vm-with-a-long-name" is longer than an interface name (15 bytes): name the VM's interface`},
		{"multicast MAC", func() error {
			_, err := c.CreateVM(ctx, vm(func(v *policyapi.VM) { v.MACAddress[0] = 1 }))
			return err
		}, 400, "MACAddress 01:15:5d:00:00:32 is multicast: use a unicast MAC"},
		{"migration to own host", func() error { _, err := c.MigrateVM(ctx, "blue1", "host1"); return err },
			400, "Host host1 is the VM's own host: migrate VM blue1 to another host"},
		{"migration to unknown host", func() error { _, err := c.MigrateVM(ctx, "blue1", "host7"); return err },
			404, "Host host7 is not a registered host: register it (its host agent does) first"},
		{"migration of unknown VM", func() error { _, err := c.MigrateVM(ctx, "nope", "host2"); return err },
			404, "VM nope does not exist"},
		{"duplicate VSID", func() error {
			_, err := c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 6001, RoutingDomainID: rdBlue, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}})
			return err
		}, 409, "VirtualSubnetID 6001 already exists in routing domain {11111111-2222-3333-4444-000000000002}: use another VSID"},
		{"overlapping prefix in routing domain", func() error {
			_, err := c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5003, RoutingDomainID: rdBlue, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.128/25")}})
			return err
		}, 409, "Prefixes 10.0.0.128/25 overlaps 10.0.0.0/24 of VirtualSubnetID 5001 in the same routing domain: give a disjoint prefix"},
		{"prefix with host bits", func() error {
			_, err := c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5003, RoutingDomainID: rdBlue, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.5.1/24")}})
			return err
		}, 400, "Prefixes 10.0.5.1/24 has host bits set: use 10.0.5.0/24"},
		{"unknown routing domain", func() error {
			_, err := c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5003, RoutingDomainID: policy.MustParseGUID("{99999999-2222-3333-4444-000000000001}"), Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.5.0/24")}})
			return err
		}, 404, "RoutingDomainID {99999999-2222-3333-4444-000000000001} is not a known routing domain: create it first"},
		{"bad encapsulation", func() error {
			_, err := c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5003, RoutingDomainID: rdBlue, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.5.0/24")}, Encapsulation: "GENEVE"})
			return err
		}, 400, `Encapsulation "GENEVE" is not supported: use NVGRE or VXLAN`},
		{"unknown tenant", func() error {
			_, err := c.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-000000000009}"), CustomerID: policy.MustParseGUID("{bbbbbbbb-0000-0000-0000-000000000001}")})
			return err
		}, 404, "CustomerID {bbbbbbbb-0000-0000-0000-000000000001} is not a known tenant: create the tenant first"},
		{"PA of another host", func() error {
			_, err := c.RegisterHost(ctx, policyapi.Host{Name: "host4", ProviderAddresses: []netip.Addr{addr("198.18.0.1")}})
			return err
		}, 409, "ProviderAddresses 198.18.0.1 is already assigned to host host1: a PA belongs to one host"},
		{"delete subnet with VMs", func() error { return c.DeleteSubnet(ctx, 5001) },
			409, "VirtualSubnetID 5001 still has VM blue1: delete it first"},
		{"delete routing domain with subnets", func() error { return c.DeleteRoutingDomain(ctx, rdRed) },
			409, "routing domain {11111111-2222-3333-4444-000000000002} still has VirtualSubnetID 6001: delete the subnet first"},
		{"delete tenant with routing domains", func() error { return c.DeleteTenant(ctx, tenantA) },
			409, "tenant {aaaaaaaa-0000-0000-0000-000000000001} still has routing domain {11111111-2222-3333-4444-000000000001}: delete it first"},
		{"delete host with VMs", func() error { return c.DeleteHost(ctx, "host2") },
			409, "host host2 still has VM blue2: delete or migrate it first"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refusedUnchanged(t, cli, tc.call, tc.status, tc.want)
		})
	}
}

// refusedUnchanged checks that call is refused with status and the one-line
// message want, and leaves etcd as it was.
func refusedUnchanged(t *testing.T, cli *clientv3.Client, call func() error, status int, want string) {
	t.Helper()
	before := snapshot(t, cli)
	err := call()
	var se *jsonapi.Error
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a server error", err)
	}
	if se.Status != status || se.Message != want {
		t.Fatalf("got %d %q\nwant %d %q", se.Status, se.Message, status, want)
	}
	if after := snapshot(t, cli); !mapsEqual(before, after) {
		t.Fatalf("a rejected request changed etcd")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestMalformedRequests(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	ctx := ctxT(t)
	cases := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/vms", `{"Name":"a","MACAddress":"zz"}`, 400, `MACAddress "zz" is malformed: use 12 hex digits such as 00155D010203, or 00-15-5D-01-02-03, 00:15:5d:01:02:03 or 0015.5d01.0203`},
		{"POST", "/v1/vms", `{"Name":"a","Colour":"blue"}`, 400, `unknown field "Colour": use Name, Interface, MACAddress, CustomerAddresses, VirtualSubnetID, Host, RoutingDomainID, CustomerID, ProviderAddress, RewriteAddresses, L2Only, PreviousHost, PreviousProviderAddress, MigratedAt, CreatedAt`},
		{"POST", "/v1/subnets", `{"VirtualSubnetID":5001,"Prefixes":["10.0.0.0/33"]}`, 400, `Prefixes ["10.0.0.0/33"] is malformed: use a list of prefixes such as ["10.0.0.0/24", "fd00:0:0:1::/64"]`},
		{"POST", "/v1/tenants", `[]`, 400, `request body is not a JSON object: got array`},
		{"GET", "/v1/lookup?vsid=abc&ca=10.0.0.1", "", 400, `vsid "abc" is malformed: use 4096..16777214`},
		{"GET", "/v1/watch?rev=x", "", 400, `rev "x" is malformed: use a whole number up to 9223372036854775807`},
		{"GET", "/v1/policy", "", 400, "routingDomain is missing: use a GUID such as {11111111-2222-3333-4444-000000000000}"},
	}
	for _, tc := range cases {
		p, q, _ := strings.Cut(tc.path, "?")
		vals, _ := url.ParseQuery(q)
		var body any
		if tc.body != "" {
			body = json.RawMessage(tc.body)
		}
		err := c.Do(ctx, tc.method, p, vals, body, nil)
		var se *jsonapi.Error
		if !errors.As(err, &se) || se.Status != tc.status || se.Message != tc.want {
			t.Errorf("%s %s %s:\n got %v\nwant %d %s", tc.method, tc.path, tc.body, err, tc.status, tc.want)
		}
	}
}

func TestHostLiveness(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	ctx := ctxT(t)
	h, err := c.RegisterHost(ctx, policyapi.Host{Name: "h1", ProviderAddresses: []netip.Addr{addr("198.18.0.7")}, TTLSeconds: 1})
	if err != nil || !h.Alive {
		t.Fatalf("register: %+v %v", h, err)
	}
	if _, err := c.Heartbeat(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err = c.Host(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		if !h.Alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("host stayed alive without heartbeats")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if h, err = c.Heartbeat(ctx, "h1"); err != nil || !h.Alive {
		t.Fatalf("heartbeat after expiry: %+v %v", h, err)
	}
	if h, _ = c.Host(ctx, "h1"); !h.Alive {
		t.Fatal("heartbeat after expiry did not revive the host")
	}
	if _, err := c.Heartbeat(ctx, "h2"); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("heartbeat of unknown host: %v", err)
	}
}

// TestReplicasRaceOnCA: two servers on one etcd create VMs with the same CA
// at once; exactly one wins and the other gets a 409.
func TestReplicasRaceOnCA(t *testing.T) {
	cli := startEtcd(t)
	a, b := serve(t, cli), serve(t, cli)
	provision(t, a)
	ctx := ctxT(t)
	for round := range 20 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range []*policyclient.Client{a, b} {
			wg.Go(func() {
				_, errs[i] = c.CreateVM(ctx, policyapi.VM{Name: "r" + string(rune('a'+round)) + string(rune('0'+i)), MACAddress: mac(100*round + i + 10),
					VirtualSubnetID: 5001, Host: "host1", CustomerAddresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + round)})}})
			})
		}
		wg.Wait()
		ok, lost := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, policy.ErrExists):
				lost++
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if ok != 1 || lost != 1 {
			t.Fatalf("round %d: %d won, %d lost, want 1 and 1", round, ok, lost)
		}
	}
	p, err := a.Policy(ctx, rdBlue)
	if err != nil || len(p.Records) != 20 {
		t.Fatalf("records after the races: %d, %v", len(p.Records), err)
	}
}

func TestNotFoundRoute(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	err := c.Do(ctxT(t), http.MethodGet, "/v2/x", nil, nil, nil)
	if !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("unknown route: %v", err)
	}
}
