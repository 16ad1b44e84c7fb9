package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// TestFilterFlagLists: every filter flag takes a list, by commas or by
// repeating it, and the string and GUID ones take wildcards; MACs are taken
// in any form.
func TestFilterFlagLists(t *testing.T) {
	b, sock := setup(t)
	for i, vm := range []string{"web1", "web2", "db1"} {
		ca, mac := "10.0.0."+string(rune('5'+i)), "00155D01020"+string(rune('3'+i))
		ok(t, sock, "lookup-record", "new", "--CustomerAddress", ca, "--VirtualSubnetID", "5001", "--MACAddress", mac,
			"--ProviderAddress", "198.18.0.2", "--VMName", vm, "--Context", "tenant/"+vm)
	}
	cas := func(args ...string) string {
		t.Helper()
		var out []string
		for _, line := range strings.Split(ok(t, sock, append([]string{"lookup-record", "get"}, args...)...), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 {
				out = append(out, f[0])
			}
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "10.0.0.5 10.0.0.6 10.0.0.7"},
		{[]string{"--CustomerAddress", "10.0.0.5,10.0.0.7"}, "10.0.0.5 10.0.0.7"},
		{[]string{"--CustomerAddress", "10.0.0.5", "--CustomerAddress", "10.0.0.6"}, "10.0.0.5 10.0.0.6"},
		{[]string{"--VMName", "web*"}, "10.0.0.5 10.0.0.6"},
		{[]string{"--VMName", "DB?,web2"}, "10.0.0.6 10.0.0.7"},
		{[]string{"--Context", "tenant/[a-d]*"}, "10.0.0.7"},
		{[]string{"--MACAddress", "00:15:5d:01:02:03,0015.5d01.0205"}, "10.0.0.5 10.0.0.7"},
		{[]string{"--VirtualSubnetID", "5001,5002", "--Rule", "Encap", "--Type", "Static"}, "10.0.0.5 10.0.0.6 10.0.0.7"},
		{[]string{"--Rule", "Nat,None"}, ""},
		{[]string{"--CustomerID", "*"}, "10.0.0.5 10.0.0.6 10.0.0.7"},
	} {
		if got := cas(c.args...); got != c.want {
			t.Errorf("get %s = %q; want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
	// set chooses by list too.
	ok(t, sock, "lookup-record", "set", "--CustomerAddress", "10.0.0.5,10.0.0.6", "--Context", "moved")
	if got := cas("--Context", "moved"); got != "10.0.0.5 10.0.0.6" {
		t.Errorf("after set: %q", got)
	}
	out := ok(t, sock, "lookup-record", "remove", "--VMName", "web*")
	if strings.Count(out, "\n") != 3 || len(b.Store().LookupRecords(policy.LookupRecordFilter{})) != 1 {
		t.Errorf("remove --VMName web* printed\n%s", out)
	}

	ok(t, sock, "customer-route", "new", "--RoutingDomainID", rdID, "--VirtualSubnetID", "5002", "--DestinationPrefix", "10.0.1.0/24", "--Metric", "7")
	if out := ok(t, sock, "customer-route", "get", "--VirtualSubnetID", "5001,5002", "--Metric", "7", "--RoutingDomainID", "11111111-*"); !strings.Contains(out, "10.0.1.0/24") || strings.Contains(out, "10.0.0.0/24") {
		t.Errorf("customer-route get printed\n%s", out)
	}
	ok(t, sock, "provider-route", "new", "--InterfaceIndex", "2", "--DestinationPrefix", "198.19.0.0/16", "--NextHop", "198.18.0.1", "--Metric", "3")
	if out := ok(t, sock, "provider-route", "get", "--NextHop", "0.0.0.0,198.18.0.1", "--Metric", "1,3"); !strings.Contains(out, "198.19.0.0/16") {
		t.Errorf("provider-route get printed\n%s", out)
	}
}

// TestProviderAddressSet is Set-NetVirtualizationProviderAddress.
func TestProviderAddressSet(t *testing.T) {
	b, sock := setup(t)
	ok(t, sock, "provider-address", "new", "--ProviderAddress", "198.18.0.2", "--PrefixLength", "15", "--InterfaceIndex", "2")
	ok(t, sock, "provider-address", "new", "--ProviderAddress", "198.18.0.3", "--PrefixLength", "15", "--InterfaceIndex", "3")
	out := ok(t, sock, "provider-address", "set", "--ProviderAddress", "198.18.0.2,198.18.0.3", "--VlanID", "12", "--MACAddress", "02-00-00-00-00-01")
	want := "" +
		"ProviderAddress  PrefixLength  InterfaceIndex  VlanID  MACAddress         AddressState  ManagedByCluster\n" +
		"198.18.0.2       15            2               12      02:00:00:00:00:01  Invalid       false\n" +
		"198.18.0.3       15            3               12      02:00:00:00:00:01  Invalid       false\n"
	if out != want {
		t.Fatalf("set printed\n%s\nwant\n%s", out, want)
	}
	if out := ok(t, sock, "provider-address", "get", "--VlanID", "12", "--MACAddress", "020000000001", "--InterfaceIndex", "3"); !strings.Contains(out, "198.18.0.3") || strings.Contains(out, "198.18.0.2 ") {
		t.Errorf("get printed\n%s", out)
	}
	before := b.Store().Table()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--InterfaceIndex", "2,3", "--PrefixLength", "40"}, "PrefixLength 40 is out of range for IPv4 ProviderAddress 198.18.0.2: use 0..32"},
		{[]string{"--VlanID", "5"}, "no provider address chosen: give at least one of --ProviderAddress, --InterfaceIndex, --Interface"},
		{[]string{"--ProviderAddress", "198.18.0.2"}, "nothing to set: give at least one of --VlanID, --PrefixLength, --MACAddress"},
		{[]string{"--ProviderAddress", "198.18.0.2,nope", "--VlanID", "5"}, `--ProviderAddress "198.18.0.2,nope" is malformed: use IPv4 or IPv6 addresses such as 10.0.0.5, separated by commas`},
	} {
		_, err := wnvctl(t, sock, append([]string{"provider-address", "set"}, c.args...)...)
		if err == nil || err.Error() != c.want {
			t.Errorf("set %s: %v; want %s", strings.Join(c.args, " "), err, c.want)
		}
	}
	if b.Store().Table() != before {
		t.Fatal("a refused set changed the policy")
	}
	got := b.Store().ProviderAddresses(policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{netip.MustParseAddr("198.18.0.2")}})
	if len(got) != 1 || got[0].MACAddress != (packet.MAC{2, 0, 0, 0, 0, 1}) {
		t.Fatalf("stored %+v", got)
	}
}
