package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

// resetFlags puts every flag of the tree back to its default and unset, since
// rootCmd is a package global reused by every wnvctl run in the test.
func resetFlags(c *cobra.Command) {
	reset := func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			sv.Replace(nil)
		} else {
			f.Value.Set(f.DefValue)
		}
		f.Changed = false
	}
	c.Flags().VisitAll(reset)
	c.PersistentFlags().VisitAll(reset)
	for _, sub := range c.Commands() {
		resetFlags(sub)
	}
}

// wnvctl runs one command line against the socket and returns its output.
func wnvctl(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	return run(t, append([]string{"--socket", sock}, args...)...)
}

// run runs one command line and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	resetFlags(rootCmd)
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	return out.String(), err
}

// ok runs a command line that must succeed.
func ok(t *testing.T, sock string, args ...string) string {
	t.Helper()
	out, err := wnvctl(t, sock, args...)
	if err != nil {
		t.Fatalf("wnvctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

const rdID = "{11111111-2222-3333-4444-000000000000}"

func setup(t *testing.T) (*providertest.Backend, string) {
	b := providertest.NewBackend()
	sock := providertest.Serve(t, b)
	ok(t, sock, "customer-route", "create", "--routing-domain-id", rdID, "--virtual-subnet-id", "5001", "--destination-prefix", "10.0.0.0/24")
	return b, sock
}

func TestLookupRecordCommands(t *testing.T) {
	b, sock := setup(t)
	out := ok(t, sock, "lookup-record", "create", "--customer-address", "10.0.0.5", "--virtual-subnet-id", "5001",
		"--mac-address", "00-15-5D-01-02-03", "--provider-address", "198.18.0.2", "--vm-name", "web1")
	want := "" +
		"CustomerAddress  VirtualSubnetID  MACAddress         ProviderAddress  Rule   Type    CustomerID  VMName  Flags  UnusableReason\n" +
		"10.0.0.5         5001             00:15:5d:01:02:03  198.18.0.2       Encap  Static  -           web1    -      -\n"
	if out != want {
		t.Fatalf("new printed\n%s\nwant\n%s", out, want)
	}
	ok(t, sock, "lookup-record", "create", "--customer-address", "0.0.0.0", "--virtual-subnet-id", "5001",
		"--mac-address", "00:15:5d:01:02:04", "--provider-address", "198.18.0.3", "--type", "L2Only", "--rule", "Nat",
		"--customer-id", "{AAAAAAAA-0000-0000-0000-000000000001}", "--use-vm-mac-address")

	out = ok(t, sock, "-o", "json", "lookup-record", "get", "--virtual-subnet-id", "5001")
	var rs []policy.LookupRecord
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("get -o json printed %s: %v", out, err)
	}
	if len(rs) != 2 || rs[0].Type != policy.L2Only || rs[0].Rule != policy.TranslationMethodNat || !rs[0].UseVmMACAddress ||
		rs[0].CustomerID != policy.MustParseGUID("{aaaaaaaa-0000-0000-0000-000000000001}") || rs[1].VMName != "web1" {
		t.Fatalf("get -o json = %+v", rs)
	}
	out = ok(t, sock, "lookup-record", "get", "--provider-address", "198.18.0.3")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "Nat   L2Only  {aaaaaaaa-0000-0000-0000-000000000001}  -       UseVmMACAddress") {
		t.Fatalf("get --provider-address printed\n%s", out)
	}
	// IP Rewrite needs a CA per record: the L2Only Nat record waits, Unusable.
	out = ok(t, sock, "lookup-record", "get", "--unusable", "true")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
		!strings.HasSuffix(lines[1], "UseVmMACAddress,Unusable  Rule Nat needs a Static or Dynamic record: a record of Type L2Only stands for many CAs, which IP Rewrite cannot tell apart at one PA; use Rule Encap") {
		t.Fatalf("get --unusable true printed\n%s", out)
	}
	if out := ok(t, sock, "lookup-record", "get", "--unusable", "false", "--unsynchronized", "false"); !strings.Contains(out, "10.0.0.5") || strings.Contains(out, "0.0.0.0") {
		t.Fatalf("get --unusable false printed\n%s", out)
	}

	ok(t, sock, "lookup-record", "set", "--customer-address", "10.0.0.5", "--virtual-subnet-id", "5001",
		"--provider-address", "198.18.0.9", "--context", "moved")
	r := b.Store().LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{netip.MustParseAddr("10.0.0.5")}})
	if len(r) != 1 || r[0].ProviderAddress != netip.MustParseAddr("198.18.0.9") || r[0].Context != "moved" || r[0].VMName != "web1" {
		t.Fatalf("after set the store has %+v", r)
	}

	out = ok(t, sock, "lookup-record", "delete", "--mac-address", "00:15:5d:01:02:03")
	if !strings.Contains(out, "10.0.0.5") {
		t.Fatalf("remove printed\n%s", out)
	}
	ok(t, sock, "lookup-record", "delete")
	if n := len(b.Store().LookupRecords(policy.LookupRecordFilter{})); n != 0 {
		t.Fatalf("%d records left after remove with no filter", n)
	}
	if out := ok(t, sock, "lookup-record", "get"); strings.Count(out, "\n") != 1 {
		t.Fatalf("get on nothing printed\n%s\nwant the header only", out)
	}
}

func TestRouteAddressGlobalCommands(t *testing.T) {
	b, sock := setup(t)
	ok(t, sock, "customer-route", "create", "--routing-domain-id", rdID, "--virtual-subnet-id", "5002",
		"--destination-prefix", "0.0.0.0/0", "--next-hop", "10.0.0.1", "--metric", "5")
	ok(t, sock, "customer-route", "set", "--virtual-subnet-id", "5002", "--metric", "7")
	out := ok(t, sock, "customer-route", "get", "--routing-domain-id", rdID)
	want := "" +
		"RoutingDomainID                         VirtualSubnetID  DestinationPrefix  NextHop   Metric  CustomerID\n" +
		"{11111111-2222-3333-4444-000000000000}  5001             10.0.0.0/24        0.0.0.0   0       -\n" +
		"{11111111-2222-3333-4444-000000000000}  5002             0.0.0.0/0          10.0.0.1  7       -\n"
	if out != want {
		t.Fatalf("customer-route get printed\n%s\nwant\n%s", out, want)
	}
	ok(t, sock, "customer-route", "delete", "--virtual-subnet-id", "5002")
	if n := len(b.Store().CustomerRoutes(policy.CustomerRouteFilter{})); n != 1 {
		t.Fatalf("%d customer routes after remove; want 1", n)
	}

	out = ok(t, sock, "provider-address", "create", "--provider-address", "198.18.0.2", "--prefix-length", "15", "--interface", "lo", "--vlan-id", "12")
	if !strings.Contains(out, "198.18.0.2       15            1               12") {
		t.Fatalf("provider-address new printed\n%s", out)
	}
	out = ok(t, sock, "-o", "json", "provider-address", "get", "--interface-index", "1")
	var pas []policy.ProviderAddress
	if err := json.Unmarshal([]byte(out), &pas); err != nil || len(pas) != 1 || pas[0].VlanID != 12 {
		t.Fatalf("provider-address get -o json = %s (%v)", out, err)
	}
	ok(t, sock, "provider-address", "delete", "--provider-address", "198.18.0.2")

	ok(t, sock, "provider-route", "create", "--interface-index", "1", "--destination-prefix", "198.19.0.0/16", "--next-hop", "198.18.0.1")
	ok(t, sock, "provider-route", "set", "--destination-prefix", "198.19.0.0/16", "--metric", "3")
	out = ok(t, sock, "provider-route", "get")
	if !strings.Contains(out, "1               198.19.0.0/16      198.18.0.1  3       -") {
		t.Fatalf("provider-route get printed\n%s", out)
	}
	ok(t, sock, "provider-route", "delete", "--interface-index", "1")
	if n := len(b.Store().ProviderRoutes(policy.ProviderRouteFilter{})); n != 0 {
		t.Fatalf("%d provider routes after remove", n)
	}

	if out := ok(t, sock, "global", "get"); out != "UseExternalRouter\nfalse\n" {
		t.Fatalf("global get printed %q", out)
	}
	if out := ok(t, sock, "-o", "json", "global", "set", "--use-external-router"); out != "{\n  \"UseExternalRouter\": true\n}\n" {
		t.Fatalf("global set -o json printed %q", out)
	}
	if !b.Store().Global().UseExternalRouter {
		t.Fatal("global set did not reach the store")
	}
}

func TestPortNextHopCounterCommands(t *testing.T) {
	b, sock := setup(t)
	out := ok(t, sock, "port", "attach", "--name", "vm1", "--interface", "vnet3", "--mac-address", "00:15:5d:01:02:03",
		"--virtual-subnet-id", "5001", "--customer-address", "10.0.0.5", "--customer-address", "fd00::5,10.0.0.6")
	want := "" +
		"Name  Index  Interface  Ifindex  MACAddress         VirtualSubnetID  CustomerAddresses          MTU  RxFrames  TxFrames  Drops\n" +
		"vm1   1      vnet3      0        00:15:5d:01:02:03  5001             10.0.0.5,fd00::5,10.0.0.6  -    0         0         0\n"
	if out != want {
		t.Fatalf("port attach printed\n%s\nwant\n%s", out, want)
	}
	ok(t, sock, "port", "attach", "--name", "vm2", "--mac-address", "00:15:5d:01:02:04")
	out = ok(t, sock, "-o", "json", "port", "get", "--name", "vm2")
	var p provider.Port
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Name != "vm2" || p.Interface != "vm2" || len(p.CustomerAddresses) != 0 {
		t.Fatalf("port get --name vm2 -o json = %s (%v)", out, err)
	}
	if out := ok(t, sock, "port", "get"); strings.Count(out, "\n") != 3 {
		t.Fatalf("port get printed\n%s\nwant two ports", out)
	}
	ok(t, sock, "port", "detach", "--name", "vm1")
	if ps := b.Ports(); len(ps) != 1 || ps[0].Name != "vm2" {
		t.Fatalf("ports after detach: %+v", ps)
	}
	if _, err := wnvctl(t, sock, "port", "detach", "--name", "vm1"); err == nil || err.Error() != `port "vm1" is not attached: list ports with wnvctl port get` {
		t.Fatalf("second detach: %v", err)
	}

	for _, ca := range []string{"10.0.0.5", "10.0.0.6"} {
		mac := map[string]string{"10.0.0.5": "00:15:5d:01:02:03", "10.0.0.6": "00:15:5d:01:02:04"}[ca]
		ok(t, sock, "lookup-record", "create", "--customer-address", ca, "--virtual-subnet-id", "5001", "--mac-address", mac, "--provider-address", "198.18.0.2")
	}
	out = ok(t, sock, "next-hop", "--source-customer-address", "10.0.0.5", "--destination-customer-address", "10.0.0.6", "--source-virtual-subnet-id", "5001")
	want = "" +
		"SourceCustomerAddress  DestinationCustomerAddress  SourceVirtualSubnetID  NextHopAddress  SourceMACAddress   NextHopMACAddress  ProviderAddress  VirtualSubnetID\n" +
		"10.0.0.5               10.0.0.6                    5001                   10.0.0.6        00:15:5d:01:02:03  00:15:5d:01:02:04  198.18.0.2       5001\n"
	if out != want {
		t.Fatalf("next-hop printed\n%s\nwant\n%s", out, want)
	}

	b.SetCounters(provider.Counters{
		Ports:         []provider.NamedPortCounters{{Name: "vm2", PortCounters: provider.PortCounters{RxFrames: 4, RxBytes: 400, TxFrames: 3, TxBytes: 300, Drops: 1}}},
		VSIDs:         []provider.VSIDCounters{{VirtualSubnetID: 5001, TxFrames: 3, RxFrames: 4, Encapsulated: 2, Decapsulated: 2, Local: 6, Replies: 8, Flooded: 5, Drops: 1}},
		Drops:         []provider.DropCount{{Reason: "no-lookup-record", Count: 1}},
		Notifications: []provider.NotificationCounters{{Type: "WnvPolicyMismatchType", Raised: 2, RateLimited: 7, Merged: 1, Delivered: 2}},
		Migration:     provider.MigrationCounters{Forwarded: 12, RedirectsSent: 2, RedirectsApplied: 1},
		GSO:           &provider.GSOCounters{Redirected: 900, Dropped: 1},
		Paths:         &provider.PathCounters{KernelFromPorts: 1000, KernelFromUnderlay: 990, SlowFromPorts: 10, SlowFromUnderlay: 9},
		Underlays:     []provider.UnderlayCounters{{Name: "ul0", InterfaceIndex: 3, TxTagged: 70, RxTagged: 60, WrongVLAN: 2}, {Name: "ul1", InterfaceIndex: 4}},
	})
	out = ok(t, sock, "counters")
	want = "" +
		"Port  RxFrames  RxBytes  TxFrames  TxBytes  Drops\n" +
		"vm2   4         400      3         300      1\n" +
		"\n" +
		"VirtualSubnetID  TxFrames  RxFrames  Encapsulated  Decapsulated  Local  Replies  Flooded  Drops\n" +
		"5001             3         4         2             2             6      8        5        1\n" +
		"\n" +
		"DropReason        Count\n" +
		"no-lookup-record  1\n" +
		"\n" +
		"Notification           Raised  RateLimited  Merged  Delivered  Dropped\n" +
		"WnvPolicyMismatchType  2       7            1       2          0\n" +
		"\n" +
		"Migration  Forwarded  RedirectsSent  RedirectsApplied\n" +
		"packets    12         2              1\n" +
		"\n" +
		"Path    FromPorts  FromUnderlay\n" +
		"kernel  1000       990\n" +
		"slow    10         9\n" +
		"\n" +
		"TunnelGSO     Redirected  Dropped  Refused\n" +
		"super-frames  900         1        0\n" +
		"\n" +
		"Underlay  InterfaceIndex  TxTagged  RxTagged  WrongVLAN\n" +
		"ul0       3               70        60        2\n" +
		"ul1       4               0         0         0\n"
	if out != want {
		t.Fatalf("counters printed\n%s\nwant\n%s", out, want)
	}
}

// TestBadFlags checks that each bad command line fails with one line naming
// the flag or field and the rule, and changes nothing.
func TestBadFlags(t *testing.T) {
	b, sock := setup(t)
	rec := []string{"lookup-record", "create", "--customer-address", "10.0.0.5", "--virtual-subnet-id", "5001", "--mac-address", "00:15:5d:01:02:03", "--provider-address", "198.18.0.2"}
	with := func(flag, value string) []string {
		out := append([]string{}, rec...)
		for i := range out {
			if out[i] == flag {
				out[i+1] = value
				return out
			}
		}
		return append(out, flag, value)
	}
	cases := []struct {
		args []string
		msg  string
	}{
		{with("--virtual-subnet-id", "abc"), `--virtual-subnet-id "abc" is malformed: use a number 4096..16777214`},
		{with("--virtual-subnet-id", "4095"), "VirtualSubnetID 4095 is reserved: use 4096..16777214"},
		{with("--mac-address", "zz"), `--mac-address "zz" is malformed: use 12 hex digits such as 00155D010203, or 00-15-5D-01-02-03, 00:15:5d:01:02:03 or 0015.5d01.0203`},
		{with("--customer-address", "10.0.0.300"), `--customer-address "10.0.0.300" is malformed: use an IPv4 or IPv6 address such as 10.0.0.5`},
		{[]string{"lookup-record", "get", "--unusable", "maybe"}, `--unusable "maybe" is malformed: use true or false`},
		{with("--rule", "Tunnel"), `--rule "Tunnel" is malformed: use Nat, Encap or None (or 0..2)`},
		{with("--type", "9"), `--type "9" is malformed: use Static, Dynamic, GatewayWildcard or L2Only (or 0..3)`},
		{with("--customer-id", "{bad}"), `--customer-id "{bad}" is malformed: use a GUID such as {11111111-2222-3333-4444-000000000000}`},
		{append(rec[:len(rec):len(rec)], "--use-vm-mac-address=maybe"), `--use-vm-mac-address "maybe" is malformed: use true or false`},
		{rec[:4], `required flag(s) "mac-address", "provider-address", "virtual-subnet-id" not set`},
		{[]string{"lookup-record", "set", "--virtual-subnet-id", "5001"}, "nothing to set: give at least one of --provider-address"},
		{[]string{"lookup-record", "set", "--vm-name", "x"}, "no record chosen: give at least one of --customer-address, --virtual-subnet-id, --mac-address"},
		{[]string{"lookup-record", "set", "--customer-address", "10.0.0.77", "--vm-name", "x"}, "no lookup record has CustomerAddress 10.0.0.77"},
		{[]string{"lookup-record", "delete", "--customer-address", "10.0.0.77"}, "no lookup record has CustomerAddress 10.0.0.77"},
		{[]string{"customer-route", "create", "--routing-domain-id", rdID, "--virtual-subnet-id", "5002", "--destination-prefix", "10.0.0.0/33"},
			`--destination-prefix "10.0.0.0/33" is malformed: use a prefix such as 10.0.0.0/24 or fd00::/64`},
		{[]string{"customer-route", "create", "--routing-domain-id", rdID, "--virtual-subnet-id", "5001", "--destination-prefix", "10.0.0.0/24"},
			"CustomerRoute 10.0.0.0/24 via 0.0.0.0 in VirtualSubnetID 5001 of RoutingDomainID {11111111-2222-3333-4444-000000000000} already exists"},
		{[]string{"customer-route", "set", "--virtual-subnet-id", "5001", "--metric", "-1"}, `--metric "-1" is malformed: use a whole number 0..4294967295`},
		{[]string{"customer-route", "set", "--virtual-subnet-id", "5001"}, `required flag(s) "metric" not set`},
		{[]string{"provider-address", "create", "--provider-address", "198.18.0.2", "--interface", "no-such-if0"}, `--interface "no-such-if0" was not found`},
		{[]string{"provider-address", "create", "--provider-address", "198.18.0.2", "--vlan-id", "70000"}, `--vlan-id "70000" is malformed: use a whole number 0..65535`},
		{[]string{"provider-address", "create", "--provider-address", "198.18.0.2", "--vlan-id", "4095"}, "VlanID 4095 is out of range: use 0 (none) or 1..4094"},
		{[]string{"global", "set", "--use-external-router=2"}, `--use-external-router "2" is malformed: use true or false`},
		{[]string{"port", "attach", "--name", "vm1", "--mac-address", "00:15:5d:01:02:03", "--customer-address", "10.0.0.5,nope"},
			`--customer-address "10.0.0.5,nope" is malformed: use IPv4 or IPv6 addresses such as 10.0.0.5, repeat the flag for more`},
		{[]string{"port", "attach", "--name", "vm1", "--mac-address", "00:15:5d:01:02:03", "--interface", "vnet/0"}, `Interface "vnet/0" is invalid: use 1..15 characters, no '/', ':' or spaces`},
		{[]string{"port", "attach", "--name", "vm/1", "--mac-address", "00:15:5d:01:02:03"}, `Name "vm/1" is invalid: use 1..63 characters, no '/', ':' or spaces`},
		{[]string{"next-hop", "--source-customer-address", "10.0.0.5", "--destination-customer-address", "10.0.0.6", "--source-virtual-subnet-id", "1"},
			"SourceVirtualSubnetID 1 is reserved: use 4096..16777214"},
		{[]string{"-o", "xml", "global", "get"}, `--output "xml" is not supported: use table, json or yaml`},
		{[]string{"lookup-record", "get", "--Colour", "red"}, "unknown flag: --Colour"},
	}
	before := b.Store().Objects()
	for _, c := range cases {
		out, err := wnvctl(t, sock, c.args...)
		if err == nil {
			t.Errorf("wnvctl %s succeeded:\n%s", strings.Join(c.args, " "), out)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, c.msg) || strings.Contains(msg, "\n") {
			t.Errorf("wnvctl %s: error %q; want one line starting %q", strings.Join(c.args, " "), msg, c.msg)
		}
	}
	if after := b.Store().Objects(); !equalJSON(t, before, after) || len(b.Ports()) != 0 {
		t.Errorf("bad command lines changed the policy or ports")
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func TestUnreachableDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "wnvd.sock")
	_, err := wnvctl(t, sock, "lookup-record", "get")
	want := "cannot reach wnvd at " + sock + ": is it running? (dial unix " + sock + ": connect: no such file or directory)"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v; want %s", err, want)
	}
}
