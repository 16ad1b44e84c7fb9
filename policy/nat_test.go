package policy

import (
	"net/netip"
	"testing"
)

func natRec(ca string, vsid VSID, m, pa string) LookupRecord {
	r := rec(ca, vsid, m, pa)
	r.Rule = TranslationMethodNat
	return r
}

// IP Rewrite maps one CA to one PA: records with Rule Nat that share a PA
// are both Unusable, saying which CA the other is, until one goes.
func TestNatNeedsAPAPerCA(t *testing.T) {
	s := fixture(t)
	ok(s.AddLookupRecord(natRec("10.0.0.20", 5001, "00:15:5d:00:00:20", "198.18.1.20")))
	if r, found := s.Table().LookupPA(addr("198.18.1.20")); !found || r.CustomerAddress != addr("10.0.0.20") {
		t.Fatalf("LookupPA = %+v, %v; want the record of 10.0.0.20", r, found)
	}
	ok(s.AddLookupRecord(natRec("10.0.1.21", 5002, "00:15:5d:00:00:21", "198.18.1.20")))
	st := states(t, s)
	if want := "ProviderAddress 198.18.1.20 is also the PA of CustomerAddress 10.0.1.21 in VirtualSubnetID 5002, and IP Rewrite needs a PA of its own for every CA"; st["10.0.0.20"] != want {
		t.Errorf("first record: %q, want %q", st["10.0.0.20"], want)
	}
	if want := "ProviderAddress 198.18.1.20 is also the PA of CustomerAddress 10.0.0.20 in VirtualSubnetID 5001, and IP Rewrite needs a PA of its own for every CA"; st["10.0.1.21"] != want {
		t.Errorf("second record: %q, want %q", st["10.0.1.21"], want)
	}
	if _, found := s.Table().LookupPA(addr("198.18.1.20")); found {
		t.Errorf("LookupPA found a record of a shared PA")
	}
	ok(s.RemoveLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{addr("10.0.1.21")}}))
	if why := states(t, s)["10.0.0.20"]; why != "" {
		t.Errorf("after the other record went: %q, want usable", why)
	}
	// Moving a record to another PA frees the old one too.
	ok(s.AddLookupRecord(natRec("10.0.1.21", 5002, "00:15:5d:00:00:21", "198.18.1.20")))
	pa := addr("198.18.1.21")
	ok(s.SetLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{addr("10.0.1.21")}}, LookupRecordChange{ProviderAddress: &pa}))
	if st := states(t, s); st["10.0.0.20"] != "" || st["10.0.1.21"] != "" {
		t.Errorf("after moving one to its own PA: %q", st)
	}
}

// Records IP Rewrite cannot carry wait, Unusable, each with its reason.
func TestNatUnusableReasons(t *testing.T) {
	s := fixture(t)
	gw := natRec("0.0.0.0", 5001, "00:15:5d:00:00:30", "198.18.1.30")
	gw.Type = GatewayWildcard
	ok(s.AddLookupRecord(gw))
	ok(s.AddLookupRecord(natRec("10.0.0.31", 5001, "00:15:5d:00:00:31", "fd01::31")))
	var why string
	for _, r := range s.LookupRecords(LookupRecordFilter{}) {
		if r.CustomerAddress.IsUnspecified() {
			why = r.UnusableReason
		}
	}
	if want := "Rule Nat needs a Static or Dynamic record: a record of Type GatewayWildcard stands for many CAs, which IP Rewrite cannot tell apart at one PA; use Rule Encap"; why != want {
		t.Errorf("GatewayWildcard: %q, want %q", why, want)
	}
	st := states(t, s)
	if want := "Rule Nat needs a ProviderAddress of the CustomerAddress's family: IP Rewrite cannot turn IPv4 into IPv6 in an IP header"; st["10.0.0.31"] != want {
		t.Errorf("IPv4 CA at an IPv6 PA: %q, want %q", st["10.0.0.31"], want)
	}
}

// A Nat record with UseVmMACAddress is usable, and its PA, once local, maps
// to its VM's MAC for what leaves from it.
func TestNatUseVmMACAddress(t *testing.T) {
	s := fixture(t)
	vmMAC := natRec("10.0.0.32", 5001, "00:15:5d:00:00:32", "198.18.1.32")
	vmMAC.UseVmMACAddress = true
	ok(s.AddLookupRecord(vmMAC))
	ok(s.AddLookupRecord(natRec("10.0.0.33", 5001, "00:15:5d:00:00:33", "198.18.1.33")))
	if why := states(t, s)["10.0.0.32"]; why != "" {
		t.Errorf("UseVmMACAddress: %q, want usable", why)
	}
	if got := s.Table().VMMACPAs(); len(got) != 0 {
		t.Errorf("VMMACPAs = %v before the PA is this host's, want none", got)
	}
	for _, pa := range []string{"198.18.1.32", "198.18.1.33"} {
		ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr(pa), PrefixLength: 15, AddressState: AddressPreferred}))
	}
	got := s.Table().VMMACPAs()
	if len(got) != 1 || got[addr("198.18.1.32")] != vmMAC.MACAddress {
		t.Errorf("VMMACPAs = %v, want only 198.18.1.32 -> %v", got, vmMAC.MACAddress)
	}
}

// A VM's own PA is a rewrite PA of its host, never the PA the host
// encapsulates from.
func TestNatPAIsNotTheHostsPA(t *testing.T) {
	s := fixture(t)
	ok(s.AddLookupRecord(natRec("10.0.0.20", 5001, "00:15:5d:00:00:20", "198.18.0.0")))
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.0.0"), PrefixLength: 15, AddressState: AddressPreferred}))
	tb := s.Table()
	if pa, _ := tb.LocalPA(false); pa != addr("198.18.0.1") {
		t.Errorf("LocalPA = %s, want 198.18.0.1: 198.18.0.0 is a VM's", pa)
	}
	if got := tb.RewritePAs(); len(got) != 1 || got[0] != addr("198.18.0.0") {
		t.Errorf("RewritePAs = %v, want [198.18.0.0]", got)
	}
	ok(s.RemoveLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{addr("10.0.0.20")}}))
	tb = s.Table()
	if pa, _ := tb.LocalPA(false); pa != addr("198.18.0.0") {
		t.Errorf("LocalPA = %s after the Nat record went, want 198.18.0.0 (the lowest)", pa)
	}
	if got := tb.RewritePAs(); len(got) != 0 {
		t.Errorf("RewritePAs = %v, want none", got)
	}
}
