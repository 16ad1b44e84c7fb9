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
		ok(t, sock, "lookup-record", "create", "--customer-address", ca, "--virtual-subnet-id", "5001", "--mac-address", mac,
			"--provider-address", "198.18.0.2", "--vm-name", vm, "--context", "tenant/"+vm)
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
		{[]string{"--customer-address", "10.0.0.5,10.0.0.7"}, "10.0.0.5 10.0.0.7"},
		{[]string{"--customer-address", "10.0.0.5", "--customer-address", "10.0.0.6"}, "10.0.0.5 10.0.0.6"},
		{[]string{"--vm-name", "web*"}, "10.0.0.5 10.0.0.6"},
		{[]string{"--vm-name", "DB?,web2"}, "10.0.0.6 10.0.0.7"},
		{[]string{"--context", "tenant/[a-d]*"}, "10.0.0.7"},
		{[]string{"--mac-address", "00:15:5d:01:02:03,0015.5d01.0205"}, "10.0.0.5 10.0.0.7"},
		{[]string{"--virtual-subnet-id", "5001,5002", "--rule", "Encap", "--type", "Static"}, "10.0.0.5 10.0.0.6 10.0.0.7"},
		{[]string{"--rule", "Nat,None"}, ""},
		{[]string{"--customer-id", "*"}, "10.0.0.5 10.0.0.6 10.0.0.7"},
	} {
		if got := cas(c.args...); got != c.want {
			t.Errorf("get %s = %q; want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
	// set chooses by list too.
	ok(t, sock, "lookup-record", "set", "--customer-address", "10.0.0.5,10.0.0.6", "--context", "moved")
	if got := cas("--context", "moved"); got != "10.0.0.5 10.0.0.6" {
		t.Errorf("after set: %q", got)
	}
	out := ok(t, sock, "lookup-record", "delete", "--vm-name", "web*")
	if strings.Count(out, "\n") != 3 || len(b.Store().LookupRecords(policy.LookupRecordFilter{})) != 1 {
		t.Errorf("remove --vm-name web* printed\n%s", out)
	}

	ok(t, sock, "customer-route", "create", "--routing-domain-id", rdID, "--virtual-subnet-id", "5002", "--destination-prefix", "10.0.1.0/24", "--metric", "7")
	if out := ok(t, sock, "customer-route", "get", "--virtual-subnet-id", "5001,5002", "--metric", "7", "--routing-domain-id", "11111111-*"); !strings.Contains(out, "10.0.1.0/24") || strings.Contains(out, "10.0.0.0/24") {
		t.Errorf("customer-route get printed\n%s", out)
	}
	ok(t, sock, "provider-route", "create", "--interface-index", "2", "--destination-prefix", "198.19.0.0/16", "--next-hop", "198.18.0.1", "--metric", "3")
	if out := ok(t, sock, "provider-route", "get", "--next-hop", "0.0.0.0,198.18.0.1", "--metric", "1,3"); !strings.Contains(out, "198.19.0.0/16") {
		t.Errorf("provider-route get printed\n%s", out)
	}
}

// TestProviderAddressSet is Set-NetVirtualizationProviderAddress.
func TestProviderAddressSet(t *testing.T) {
	b, sock := setup(t)
	ok(t, sock, "provider-address", "create", "--provider-address", "198.18.0.2", "--prefix-length", "15", "--interface-index", "2")
	ok(t, sock, "provider-address", "create", "--provider-address", "198.18.0.3", "--prefix-length", "15", "--interface-index", "3")
	out := ok(t, sock, "provider-address", "set", "--provider-address", "198.18.0.2,198.18.0.3", "--vlan-id", "12", "--mac-address", "02-00-00-00-00-01")
	want := "" +
		"ProviderAddress  PrefixLength  InterfaceIndex  VlanID  MACAddress         AddressState  ManagedByCluster\n" +
		"198.18.0.2       15            2               12      02:00:00:00:00:01  Invalid       false\n" +
		"198.18.0.3       15            3               12      02:00:00:00:00:01  Invalid       false\n"
	if out != want {
		t.Fatalf("set printed\n%s\nwant\n%s", out, want)
	}
	if out := ok(t, sock, "provider-address", "get", "--vlan-id", "12", "--mac-address", "020000000001", "--interface-index", "3"); !strings.Contains(out, "198.18.0.3") || strings.Contains(out, "198.18.0.2 ") {
		t.Errorf("get printed\n%s", out)
	}
	before := b.Store().Table()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--interface-index", "2,3", "--prefix-length", "40"}, "PrefixLength 40 is out of range for IPv4 ProviderAddress 198.18.0.2: use 0..32"},
		{[]string{"--vlan-id", "5"}, "no provider address chosen: give at least one of --provider-address, --interface-index, --interface"},
		{[]string{"--provider-address", "198.18.0.2"}, "nothing to set: give at least one of --vlan-id, --prefix-length, --mac-address"},
		{[]string{"--provider-address", "198.18.0.2,nope", "--vlan-id", "5"}, `--provider-address "198.18.0.2,nope" is malformed: use IPv4 or IPv6 addresses such as 10.0.0.5, separated by commas`},
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
