package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
)

// TestWS2012ScriptOrderThroughRemoteProviderAPIs provisions three hosts the
// way Microsoft's Windows Server 2012 scripts do, in their order (lookup
// records, then customer routes, then provider addresses, then the VMs'
// ports), through wnvctl on one machine (host1's namespace) against every
// host's provider API over TCP and mutual TLS, as the cmdlets' -CimSession
// does. Records without their routes are accepted and shown Unusable with
// a reason; once everything is there the VMs reach each other and the
// tenants stay isolated. Green's records are TranslationMethodNat, and each
// host gets the PAs of its Green VMs as provider addresses, as the
// scripts' IP Rewrite variant gives each VM's CA a PA of its own.
func TestWS2012ScriptOrderThroughRemoteProviderAPIs(t *testing.T) {
	needRoot(t)
	topo := staticDefault()
	topo.RemoteAPI, topo.Unprovisioned = true, true
	l := upLab(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := func(to string, args ...string) string {
		t.Helper()
		out, err := l.RemoteWnvctl(ctx, "host1", to, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	records := func(to string) []policy.LookupRecord {
		t.Helper()
		var rs []policy.LookupRecord
		if err := json.Unmarshal([]byte(run(to, "-o", "json", "lookup-record", "get")), &rs); err != nil {
			t.Fatalf("lookup records of %s: %v", to, err)
		}
		return rs
	}

	for _, h := range topo.Hosts {
		for _, r := range topo.lookupRecords() {
			run(h.Name, "lookup-record", "create", "--customer-address", r.CustomerAddress.String(), "--virtual-subnet-id", fmt.Sprint(r.VirtualSubnetID),
				"--mac-address", r.MACAddress.String(), "--provider-address", r.ProviderAddress.String(), "--customer-id", r.CustomerID.String(),
				"--rule", "TranslationMethod"+r.Rule.String(), "--vm-name", r.VMName)
		}
	}
	for _, h := range topo.Hosts {
		rs := records(h.Name)
		if len(rs) != len(topo.lookupRecords()) {
			t.Fatalf("%s holds %d lookup records, want %d", h.Name, len(rs), len(topo.lookupRecords()))
		}
		for _, r := range rs {
			if !r.Unusable || r.UnusableReason == "" {
				t.Errorf("%s: record %v VSID %d without its customer route: Unusable %v (%q), want Unusable with a reason",
					h.Name, r.CustomerAddress, r.VirtualSubnetID, r.Unusable, r.UnusableReason)
			}
		}
	}

	for _, h := range topo.Hosts {
		for _, r := range topo.customerRoutes() {
			run(h.Name, "customer-route", "create", "--routing-domain-id", r.RoutingDomainID.String(), "--virtual-subnet-id", fmt.Sprint(r.VirtualSubnetID),
				"--destination-prefix", r.DestinationPrefix.String(), "--next-hop", r.NextHop.String(), "--customer-id", r.CustomerID.String())
		}
		pa := h.PA
		run(h.Name, "provider-address", "create", "--provider-address", pa.Addr().String(), "--prefix-length", fmt.Sprint(pa.Bits()), "--interface", "ul0")
	}
	rw := topo.staticRewritePAs()
	for _, v := range topo.VMs {
		for _, pa := range rw[v.Name] {
			run(v.Host, "provider-address", "create", "--provider-address", pa.Addr().String(), "--prefix-length", fmt.Sprint(pa.Bits()), "--interface", "ul0")
		}
	}
	for _, v := range topo.VMs {
		args := []string{"port", "attach", "--name", v.Name, "--mac-address", v.MAC.String(), "--virtual-subnet-id", fmt.Sprint(v.VSID)}
		for _, ca := range v.CAs() {
			args = append(args, "--customer-address", ca.String())
		}
		run(v.Host, args...)
	}
	if err := l.waitPAs(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range topo.Hosts {
		for _, r := range records(h.Name) {
			if r.Unusable {
				t.Errorf("%s: record %v VSID %d is still Unusable (%s) with its routes, PAs and ports in place", h.Name, r.CustomerAddress, r.VirtualSubnetID, r.UnusableReason)
			}
		}
	}
	requireMatrix(t, l)
}
