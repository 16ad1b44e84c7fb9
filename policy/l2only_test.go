package policy

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/wnv/wnv/packet"
)

func l2rec(ca string, vsid VSID, m, pa string) LookupRecord {
	r := rec(ca, vsid, m, pa)
	r.Type = L2Only
	return r
}

// TestL2SubnetFloodPaths: one path per distinct remote PA, sorted, from the
// local PA of its family; local PAs and families without a local PA left
// out; kept in step with Set, Remove and changes of the local PAs.
func TestL2SubnetFloodPaths(t *testing.T) {
	s := fixture(t) // local PA 198.18.0.1
	ok(s.AddLookupRecord(l2rec("0.0.0.0", 5001, "02:00:00:00:00:03", "198.18.0.3")))
	ok(s.AddLookupRecord(l2rec("::", 5001, "02:00:00:00:00:03", "198.18.0.3")))
	ok(s.AddLookupRecord(l2rec("0.0.0.0", 5001, "02:00:00:00:00:02", "198.18.0.2")))
	ok(s.AddLookupRecord(l2rec("0.0.0.0", 5001, "02:00:00:00:00:01", "198.18.0.1")))
	ok(s.AddLookupRecord(l2rec("0.0.0.0", 5001, "02:00:00:00:00:06", "fd00::6")))
	old := s.Table()
	l2 := old.L2Only(5001)
	want := []Path{{addr("198.18.0.1"), addr("198.18.0.2")}, {addr("198.18.0.1"), addr("198.18.0.3")}}
	if got := l2.Flood(); !reflect.DeepEqual(got, want) {
		t.Errorf("Flood = %v, want %v", got, want)
	}
	if rs := l2.Records(mac("02:00:00:00:00:03")); len(rs) != 2 || !rs[0].CustomerAddress.Is4() || !rs[1].CustomerAddress.Is6() {
		t.Errorf("Records(…:03) = %v, want the IPv4 then the IPv6 record", rs)
	}
	if old.L2Only(5002) != nil || old.L2Only(5002).Records(mac("02:00:00:00:00:03")) != nil {
		t.Error("VSID 5002 has no L2Only records, yet L2Only(5002) is not nil")
	}

	ok(s.SetLookupRecords(LookupRecordFilter{MACAddress: []packet.MAC{mac("02:00:00:00:00:02")}}, LookupRecordChange{ProviderAddress: new(addr("198.18.0.4"))}))
	want = []Path{{addr("198.18.0.1"), addr("198.18.0.3")}, {addr("198.18.0.1"), addr("198.18.0.4")}}
	if got := s.Table().L2Only(5001).Flood(); !reflect.DeepEqual(got, want) {
		t.Errorf("after Set: Flood = %v, want %v", got, want)
	}
	if got := old.L2Only(5001).Records(mac("02:00:00:00:00:02"))[0].ProviderAddress; got != addr("198.18.0.2") {
		t.Errorf("the old Table changed: PA %s", got)
	}

	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("fd00::1"), PrefixLength: 64, AddressState: AddressPreferred}))
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.0.3"), PrefixLength: 15, AddressState: AddressPreferred}))
	want = []Path{{addr("198.18.0.1"), addr("198.18.0.4")}, {addr("fd00::1"), addr("fd00::6")}}
	if got := s.Table().L2Only(5001).Flood(); !reflect.DeepEqual(got, want) {
		t.Errorf("after adding PAs: Flood = %v, want %v", got, want)
	}

	ok(s.RemoveLookupRecords(LookupRecordFilter{VirtualSubnetID: []VSID{5001}, CustomerAddress: []netip.Addr{addr("0.0.0.0")}}))
	if l2 := s.Table().L2Only(5001); l2 == nil || l2.Records(mac("02:00:00:00:00:01")) != nil || len(l2.Records(mac("02:00:00:00:00:03"))) != 1 {
		t.Errorf("after removing the IPv4 L2Only records: %v", l2)
	}
	ok(s.RemoveLookupRecords(LookupRecordFilter{VirtualSubnetID: []VSID{5001}, CustomerAddress: []netip.Addr{addr("::")}}))
	if l2 := s.Table().L2Only(5001); l2 != nil {
		t.Errorf("L2Only(5001) = %v after removing every L2Only record, want nil", l2)
	}
}
