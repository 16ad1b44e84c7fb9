package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/wnv/wnv/packet"
)

func yes() *bool { b := true; return &b }

// states maps each record's CA to its UnusableReason ("" when usable), and
// checks that the Unusable flag and the data path's lookup agree with it.
func states(t *testing.T, s *Store) map[string]string {
	t.Helper()
	tb := s.Table()
	out := map[string]string{}
	for _, r := range s.LookupRecords(LookupRecordFilter{}) {
		out[r.CustomerAddress.String()] = r.UnusableReason
		if r.Unusable != (r.UnusableReason != "") {
			t.Errorf("%s: Unusable %v with reason %q", r.CustomerAddress, r.Unusable, r.UnusableReason)
		}
		if zeroCA(r.Type) {
			continue
		}
		if _, found := tb.LookupCA(r.VirtualSubnetID, r.CustomerAddress); found == r.Unusable {
			t.Errorf("%s: LookupCA found %v, Unusable %v", r.CustomerAddress, found, r.Unusable)
		}
		if _, found := tb.LookupMAC(r.VirtualSubnetID, r.MACAddress); found == r.Unusable {
			t.Errorf("%s: LookupMAC found %v, Unusable %v", r.CustomerAddress, found, r.Unusable)
		}
	}
	return out
}

// TestWS2012ProvisioningOrder follows Microsoft's sample scripts: lookup
// records first, customer routes after. The records are accepted, wait
// Unusable, become usable with their routes and unusable again without.
func TestWS2012ProvisioningOrder(t *testing.T) {
	s := NewStore()
	ok(s.AddLookupRecord(rec("10.0.0.5", 5001, "00:15:5d:00:00:05", "198.18.0.2")))
	ok(s.AddLookupRecord(rec("10.0.0.6", 5001, "00:15:5d:00:00:06", "198.18.0.3")))
	ok(s.AddLookupRecord(rec("10.0.1.6", 5002, "00:15:5d:00:01:06", "198.18.0.3")))
	for ca, why := range states(t, s) {
		if !strings.HasPrefix(why, "no customer route: no on-link route of VirtualSubnetID") || !strings.HasSuffix(why, "covers CustomerAddress "+ca) {
			t.Errorf("%s before any route: reason %q", ca, why)
		}
	}
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.0.1"), PrefixLength: 15}))
	ok(s.AddCustomerRoute(route(rd1, 5001, "10.0.0.0/24", "", 0)))
	if got := states(t, s); got["10.0.0.5"] != "" || got["10.0.0.6"] != "" || got["10.0.1.6"] == "" {
		t.Errorf("after the route of 5001: %q", got)
	}
	ok(s.AddCustomerRoute(route(rd1, 5002, "10.0.1.0/24", "", 0)))
	if got := states(t, s); got["10.0.1.6"] != "" {
		t.Errorf("after the route of 5002: %q", got)
	}

	ok(s.RemoveCustomerRoutes(CustomerRouteFilter{VirtualSubnetID: []VSID{5002}}))
	got := states(t, s)
	if want := "no customer route: no on-link route of VirtualSubnetID 5002 covers CustomerAddress 10.0.1.6"; got["10.0.1.6"] != want {
		t.Errorf("after removing the route of 5002: %q, want %q", got["10.0.1.6"], want)
	}
	if got["10.0.0.5"] != "" || got["10.0.0.6"] != "" {
		t.Errorf("removing the route of 5002 changed 5001: %q", got)
	}
	if rs := s.LookupRecords(LookupRecordFilter{Unusable: []bool{true}}); len(rs) != 1 || rs[0].CustomerAddress != addr("10.0.1.6") {
		t.Errorf("Get with Unusable true = %+v", rs)
	}

	// A narrower route covers 10.0.1.6 again; a route elsewhere does not.
	ok(s.AddCustomerRoute(route(rd1, 5002, "10.0.2.0/24", "", 0)))
	if states(t, s)["10.0.1.6"] == "" {
		t.Errorf("a route of 10.0.2.0/24 made 10.0.1.6 usable")
	}
	ok(s.AddCustomerRoute(route(rd1, 5002, "10.0.1.0/28", "", 0)))
	if why := states(t, s)["10.0.1.6"]; why != "" {
		t.Errorf("after 10.0.1.0/28: %q", why)
	}
}

// TestLoadInAnyOrder: a checkpoint or a policy-server download whose records
// lack routes is installed, the records waiting Unusable.
func TestLoadInAnyOrder(t *testing.T) {
	s := fixture(t)
	o := s.Objects()
	o.CustomerRoutes = o.CustomerRoutes[:1] // 5001's IPv4 prefix only
	o.LookupRecords[0].Unusable, o.LookupRecords[0].UnusableReason = true, "given by the caller"
	if err := s.Load(o); err != nil {
		t.Fatal(err)
	}
	if got := states(t, s); got["10.0.0.5"] != "" || !strings.HasPrefix(got["10.0.1.6"], "no customer route") {
		t.Errorf("after Load: %q", got)
	}
}

// TestGatewayWildcardWithoutType: Windows Server 2012 has no Type; its
// wildcard is a record with CA 0.0.0.0 or ::, which arrives as Static.
func TestGatewayWildcardWithoutType(t *testing.T) {
	s := fixture(t)
	for _, ca := range []string{"0.0.0.0", "::"} {
		r := ok(s.AddLookupRecord(rec(ca, 5001, "00:15:5d:00:00:fe", "198.18.0.9")))
		if r.Type != GatewayWildcard || r.Unusable {
			t.Errorf("record with CA %s and no Type stored as %s, Unusable %v (%s)", ca, r.Type, r.Unusable, r.UnusableReason)
		}
		if _, found := s.Table().GatewayWildcard(5001, ca == "::"); !found {
			t.Errorf("no gateway wildcard for CA %s", ca)
		}
	}
	if r := ok(s.AddLookupRecord(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "198.18.0.2"))); r.Type != Static {
		t.Errorf("record with CA 10.0.0.7 and no Type stored as %s", r.Type)
	}
}

// TestLinkLocalPAAndRule: a link-local PA names no other host, so the record
// waits until this host configures it; a Rule the data path does not
// implement keeps a record unusable, an L2Only one out of its subnet too.
func TestLinkLocalPAAndRule(t *testing.T) {
	s := fixture(t)
	// The gateway's own record only names its MAC: usable at once.
	ok(s.AddLookupRecord(rec("10.0.0.1", 5001, "00:15:5d:00:00:01", "169.254.254.254")))
	if why := states(t, s)["10.0.0.1"]; why != "" {
		t.Errorf("the gateway address's record at 169.254.254.254: %q, want usable", why)
	}
	ok(s.AddLookupRecord(rec("10.0.0.9", 5001, "00:15:5d:00:00:09", "169.254.254.254")))
	want := "ProviderAddress 169.254.254.254 is link-local, so it can only be this host's, and this host has not configured it"
	if why := states(t, s)["10.0.0.9"]; why != want {
		t.Errorf("before the PA: %q, want %q", why, want)
	}
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("169.254.254.254"), PrefixLength: 16}))
	if why := states(t, s)["10.0.0.9"]; why != "" {
		t.Errorf("with the PA: %q", why)
	}
	if err := s.SetAddressState(addr("169.254.254.254"), AddressDuplicate); err != nil {
		t.Fatal(err)
	}
	if why := states(t, s)["10.0.0.9"]; why != want {
		t.Errorf("with the PA a duplicate: %q", why)
	}
	ok(s.RemoveProviderAddresses(ProviderAddressFilter{ProviderAddress: []netip.Addr{addr("169.254.254.254")}}))
	if why := states(t, s)["10.0.0.9"]; why != want {
		t.Errorf("after removing the PA: %q", why)
	}

	l2 := rec("0.0.0.0", 5001, "00:15:5d:00:00:20", "198.18.0.2")
	l2.Type, l2.Rule = L2Only, TranslationMethodNat
	r := ok(s.AddLookupRecord(l2))
	if want := "Rule Nat needs a Static or Dynamic record: a record of Type L2Only stands for many CAs, which IP Rewrite cannot tell apart at one PA; use Rule Encap"; r.UnusableReason != want {
		t.Errorf("L2Only record with Rule Nat: %q, want %q", r.UnusableReason, want)
	}
	if s.Table().L2Only(5001) != nil {
		t.Errorf("the unusable L2Only record made 5001 an L2Only subnet")
	}
	enc := TranslationMethodEncap
	ok(s.SetLookupRecords(LookupRecordFilter{MACAddress: []packet.MAC{l2.MACAddress}}, LookupRecordChange{Rule: &enc}))
	if rs := s.Table().L2Only(5001).Records(l2.MACAddress); len(rs) != 1 || rs[0].Unusable {
		t.Errorf("L2Only records after Rule Encap: %+v", rs)
	}
}

// TestUnsynchronized: a redirect marks the record it moves; a Set or Put
// through the provider API (the host agent confirming it) clears the mark,
// and a checkpoint keeps it.
func TestUnsynchronized(t *testing.T) {
	s := fixture(t)
	pa := addr("198.18.0.7")
	f := LookupRecordFilter{CustomerAddress: []netip.Addr{addr("10.0.0.5")}, VirtualSubnetID: []VSID{5001}}
	got := ok(s.SetLookupRecords(f, LookupRecordChange{ProviderAddress: &pa, Unsynchronized: true}))
	if len(got) != 1 || !got[0].Unsynchronized || got[0].Unusable {
		t.Fatalf("after the redirect's Set: %+v", got)
	}
	if rs := s.LookupRecords(LookupRecordFilter{Unsynchronized: []bool{true}}); len(rs) != 1 || rs[0].CustomerAddress != addr("10.0.0.5") {
		t.Errorf("Get with Unsynchronized true = %+v", rs)
	}
	if _, found := s.Table().LookupCA(5001, addr("10.0.0.5")); !found {
		t.Errorf("an Unsynchronized record is not used")
	}

	o := s.Objects()
	l := NewStore()
	if err := l.Load(o); err != nil {
		t.Fatal(err)
	}
	if rs := l.LookupRecords(LookupRecordFilter{Unsynchronized: []bool{true}}); len(rs) != 1 {
		t.Errorf("Load dropped the mark: %+v", l.LookupRecords(LookupRecordFilter{}))
	}

	put := got[0]
	put.Unsynchronized = false
	if err := s.Apply(Batch{PutLookupRecords: []LookupRecord{put}}); err != nil {
		t.Fatal(err)
	}
	if rs := s.LookupRecords(LookupRecordFilter{Unsynchronized: []bool{true}}); len(rs) != 0 {
		t.Errorf("Put left the mark: %+v", rs)
	}
}
