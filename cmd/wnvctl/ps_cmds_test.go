package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyserver"
)

// startStore runs an embedded etcd for the test and returns a store on it.
func startStore(t *testing.T) *policyserver.Store {
	t.Helper()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}
	cu := free()
	e, err := policyserver.StartEmbedded(context.Background(), policyserver.EmbedConfig{DataDir: t.TempDir(), ClientURL: cu, PeerURL: free(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := policyserver.Connect([]string{cu}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return policyserver.NewStore(cli)
}

// startPolicyServer runs a plain-HTTP policy server for the test.
func startPolicyServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(policyserver.NewHandler(startStore(t), slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return srv.URL
}

// psctl runs one wnvctl command line against the policy server.
func psctl(t *testing.T, server string, args ...string) (string, error) {
	t.Helper()
	resetFlags(rootCmd)
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(append(args, "--server", server))
	err := rootCmd.Execute()
	return out.String(), err
}

// rd is the routing domain contoso creates.
const rd = "{11111111-2222-3333-4444-000000000000}"

// contoso starts a policy server with tenant contoso and its routing domain
// rd, and returns it and a runner of wnvctl commands against it.
func contoso(t *testing.T) (server string, run func(args ...string) string) {
	s := startPolicyServer(t)
	run = func(args ...string) string {
		t.Helper()
		out, err := psctl(t, s, args...)
		if err != nil {
			t.Fatalf("wnvctl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	const tenant = "{aaaaaaaa-0000-0000-0000-000000000001}"
	run("tenant", "create", "--customer-id", tenant, "--name", "contoso")
	run("routing-domain", "create", "--routing-domain-id", rd, "--customer-id", tenant)
	return s, run
}

func TestVMCommands(t *testing.T) {
	s, run := contoso(t)
	out := run("subnet", "create", "--virtual-subnet-id", "5001", "--routing-domain-id", rd, "--prefix", "10.0.0.0/24", "--prefix", "fd00:0:0:1::/64", "--encapsulation", "VXLAN")
	if !strings.Contains(out, "10.0.0.1,fd00:0:0:1::1  VXLAN") {
		t.Fatalf("subnet create printed:\n%s", out)
	}
	run("host", "create", "--name", "host2", "--provider-address", "198.18.0.2")
	run("host", "create", "--name", "host3", "--provider-address", "198.18.0.3")
	run("vm", "create", "--name", "blue2", "--virtual-subnet-id", "5001", "--mac-address", "00:15:5d:00:00:02", "--customer-address", "10.0.0.6", "--customer-address", "fd00:0:0:1::6", "--host", "host2", "--interface", "vnet7")
	out = run("vm", "migrate", "blue2", "--to", "host3")
	if !strings.Contains(out, "host3  vnet7      198.18.0.3  host2") {
		t.Fatalf("vm migrate printed:\n%s", out)
	}
	var vms []policyapi.VM
	if err := json.Unmarshal([]byte(run("vm", "get", "--host", "host3", "-o", "json")), &vms); err != nil || len(vms) != 1 || len(vms[0].CustomerAddresses) != 2 {
		t.Fatalf("vm get -o json: %+v %v", vms, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vm", "create", "--name", "x", "--virtual-subnet-id", "5001", "--mac-address", "00:15:5d:00:00:09", "--customer-address", "10.0.1.6", "--host", "host2"},
			"CustomerAddresses 10.0.1.6 is outside the prefixes of VirtualSubnetID 5001 (10.0.0.0/24, fd00:0:0:1::/64): use an address inside them"},
		{[]string{"vm", "create", "--name", "x", "--virtual-subnet-id", "5001", "--mac-address", "00:15:5d:00:00:02", "--customer-address", "10.0.0.9", "--host", "host2"},
			"MACAddress 00:15:5d:00:00:02 is already used by VM blue2 in routing domain {11111111-2222-3333-4444-000000000000}: give each VM its own MAC"},
		{[]string{"vm", "migrate", "blue2", "--to", "host3"}, "Host host3 is the VM's own host: migrate VM blue2 to another host"},
		{[]string{"vm", "migrate", "blue2", "--to", "host9"}, "Host host9 is not a registered host: register it (its host agent does) first"},
		{[]string{"vm", "create", "--name", "x", "--virtual-subnet-id", "5001", "--mac-address", "zz", "--customer-address", "10.0.0.9", "--host", "host2"},
			`--mac-address "zz" is malformed: use 12 hex digits such as 00155D010203, or 00-15-5D-01-02-03, 00:15:5d:01:02:03 or 0015.5d01.0203`},
	} {
		_, err := psctl(t, s, tc.args...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("wnvctl %s:\n got %v\nwant %s", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	out = run("gateway", "create", "--name", "gw1", "--virtual-subnet-id", "5001", "--mac-address", "00:15:5d:00:00:fe", "--customer-address", "10.0.0.254", "--host", "host2")
	if !strings.Contains(out, "gw1   5001  00:15:5d:00:00:fe  10.0.0.254  host2  198.18.0.2  "+rd) {
		t.Fatalf("gateway create printed:\n%s", out)
	}
	var gws []policyapi.Gateway
	if err := json.Unmarshal([]byte(run("gateway", "get", "-o", "json")), &gws); err != nil || len(gws) != 1 || gws[0].Name != "gw1" {
		t.Fatalf("gateway get -o json: %+v %v", gws, err)
	}
	if _, err := psctl(t, s, "gateway", "create", "--name", "gw2", "--virtual-subnet-id", "5001", "--mac-address", "00:15:5d:00:00:fd", "--customer-address", "10.9.0.1", "--host", "host2"); err == nil || !strings.Contains(err.Error(), "10.9.0.1") {
		t.Errorf("gateway with a CA outside its subnet: %v, want an error naming the CA", err)
	}
	run("gateway", "delete", "gw1")
	if _, err := psctl(t, s, "gateway", "get", "gw1"); err == nil || !strings.Contains(err.Error(), "gw1") {
		t.Fatalf("gateway get after delete: %v", err)
	}
	run("vm", "delete", "blue2")
	if _, err := psctl(t, s, "vm", "get", "blue2"); err == nil || err.Error() != "VM blue2 does not exist" {
		t.Fatalf("vm get after delete: %v", err)
	}
}

// TestNatSubnetCommands: subnet create --rule Nat --provider-prefix makes an IP
// Rewrite subnet, and a VM in it shows the PA allocated to its CA.
func TestNatSubnetCommands(t *testing.T) {
	_, run := contoso(t)
	out := run("subnet", "create", "--virtual-subnet-id", "7001", "--routing-domain-id", rd, "--prefix", "10.0.0.0/24", "--rule", "Nat", "--provider-prefix", "198.18.64.0/30")
	if !strings.Contains(out, "NVGRE  Nat   198.18.64.0/30") {
		t.Fatalf("subnet create printed:\n%s", out)
	}
	run("host", "create", "--name", "host1", "--provider-address", "198.18.0.1")
	out = run("vm", "create", "--name", "g1", "--virtual-subnet-id", "7001", "--mac-address", "00:15:5d:00:00:01", "--customer-address", "10.0.0.5", "--host", "host1")
	if !strings.Contains(out, "-         198.18.64.1/30") && !strings.Contains(out, "-         198.18.64.2/30") {
		t.Fatalf("vm create printed:\n%s", out)
	}
}
