package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wnv/wnv/packet"
)

func TestLookupIndexes(t *testing.T) {
	s := fixture(t)
	l2 := rec("::", 5001, "00:15:5d:00:00:05", "198.18.0.2")
	l2.Type = L2Only
	gw4 := rec("0.0.0.0", 5002, "00:15:5d:00:00:fe", "198.18.0.9")
	gw4.Type = GatewayWildcard
	ok(s.AddLookupRecord(l2))
	ok(s.AddLookupRecord(gw4))
	tb := s.Table()

	if r, found := tb.LookupCA(5001, addr("10.0.0.5")); !found || r.ProviderAddress != addr("198.18.0.2") {
		t.Errorf("LookupCA(5001, 10.0.0.5) = %v, %v", r, found)
	}
	if _, found := tb.LookupCA(5002, addr("10.0.0.5")); found {
		t.Errorf("LookupCA found 10.0.0.5 in the wrong VSID")
	}
	if _, found := tb.LookupCA(5001, addr("::")); found {
		t.Errorf("LookupCA matched the L2Only record's :: CA; zero-CA records are not CA mappings")
	}
	if r, found := tb.LookupMAC(5001, mac("00:15:5d:00:00:05")); !found || r.ProviderAddress != addr("198.18.0.2") {
		t.Errorf("LookupMAC = %v, %v", r, found)
	}
	if r, found := tb.GatewayWildcard(5002, false); !found || r.MACAddress != mac("00:15:5d:00:00:fe") {
		t.Errorf("GatewayWildcard(5002, v4) = %v, %v", r, found)
	}
	if _, found := tb.GatewayWildcard(5002, true); found {
		t.Errorf("GatewayWildcard(5002, v6) found an IPv4-only gateway")
	}
	if tb.L2Only(5001) == nil || tb.L2Only(5002) != nil {
		t.Errorf("L2Only: 5001=%v 5002=%v, want a subnet and nil", tb.L2Only(5001), tb.L2Only(5002))
	}
	if rd, found := tb.RoutingDomain(5002); !found || rd != rd1 {
		t.Errorf("RoutingDomain(5002) = %v, %v", rd, found)
	}
	if _, found := tb.RoutingDomain(5009); found {
		t.Errorf("RoutingDomain of an unknown VSID was found")
	}
	if p, found := tb.OnLinkPrefix(5001, addr("fd00:0:0:1::77")); !found || p != pfx("fd00:0:0:1::/64") {
		t.Errorf("OnLinkPrefix = %v, %v", p, found)
	}
	if got := GatewayAddress(pfx("10.0.0.0/24")); got != addr("10.0.0.1") {
		t.Errorf("GatewayAddress(10.0.0.0/24) = %v", got)
	}
	if got := GatewayAddress(pfx("fd00:0:0:1::/64")); got != addr("fd00:0:0:1::1") {
		t.Errorf("GatewayAddress(fd00:0:0:1::/64) = %v", got)
	}
	if r, c, pa, pr := tb.Counts(); r != 4 || c != 3 || pa != 1 || pr != 0 {
		t.Errorf("Counts = %d %d %d %d, want 4 3 1 0", r, c, pa, pr)
	}

	// Removing the CA record of a MAC leaves LookupMAC answering from the
	// MAC's other (L2Only) record.
	ok(s.RemoveLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{addr("10.0.0.5")}, VirtualSubnetID: []VSID{5001}}))
	if r, found := s.Table().LookupMAC(5001, mac("00:15:5d:00:00:05")); !found || r.Type != L2Only {
		t.Errorf("after removing the CA record, LookupMAC = %v, %v; want the L2Only record", r, found)
	}
	ok(s.RemoveLookupRecords(LookupRecordFilter{MACAddress: []packet.MAC{mac("00:15:5d:00:00:05")}}))
	if _, found := s.Table().LookupMAC(5001, mac("00:15:5d:00:00:05")); found || s.Table().L2Only(5001) != nil {
		t.Errorf("MAC still known after removing all its records")
	}
	ok(s.RemoveLookupRecords(LookupRecordFilter{VirtualSubnetID: []VSID{5002}, CustomerAddress: []netip.Addr{addr("0.0.0.0")}}))
	if _, found := s.Table().GatewayWildcard(5002, false); found {
		t.Errorf("gateway wildcard still present after removal")
	}
}

func TestSetLookupRecords(t *testing.T) {
	s := fixture(t)
	old := s.Table()
	pa, vm, none := addr("198.18.0.42"), "vm-a", TranslationMethodNone
	got, err := s.SetLookupRecords(LookupRecordFilter{MACAddress: []packet.MAC{mac("00:15:5d:00:00:05")}},
		LookupRecordChange{ProviderAddress: &pa, VMName: &vm, Rule: &none})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ProviderAddress != pa || got[0].VMName != vm || got[0].Rule != none {
		t.Fatalf("Set returned %+v", got)
	}
	// The data path has no Rule None: the record waits, Unusable.
	if !got[0].Unusable || !strings.HasPrefix(got[0].UnusableReason, "Rule None is not implemented") {
		t.Errorf("record with Rule None: Unusable %v, reason %q", got[0].Unusable, got[0].UnusableReason)
	}
	if _, found := s.Table().LookupCA(5001, addr("10.0.0.5")); found {
		t.Errorf("LookupCA found the unusable record")
	}
	enc := TranslationMethodEncap
	ok(s.SetLookupRecords(LookupRecordFilter{MACAddress: []packet.MAC{mac("00:15:5d:00:00:05")}}, LookupRecordChange{Rule: &enc}))
	tb := s.Table()
	if r, _ := tb.LookupCA(5001, addr("10.0.0.5")); r.ProviderAddress != pa || r.VMName != vm {
		t.Errorf("LookupCA after Set = %+v", r)
	}
	if r, _ := tb.LookupMAC(5001, mac("00:15:5d:00:00:05")); r.ProviderAddress != pa {
		t.Errorf("LookupMAC after Set still gives PA %v", r.ProviderAddress)
	}
	if r, _ := old.LookupCA(5001, addr("10.0.0.5")); r.ProviderAddress != addr("198.18.0.2") || r.VMName != "" {
		t.Errorf("old snapshot changed by Set: %+v", r)
	}
	if r, _ := tb.LookupCA(5002, addr("10.0.1.6")); r.ProviderAddress != addr("198.18.0.3") {
		t.Errorf("Set touched a record outside its filter: %+v", r)
	}
	// A change that breaks a rule is refused as a whole.
	useMAC := true
	_, err = s.SetLookupRecords(LookupRecordFilter{}, LookupRecordChange{UseVmMACAddress: &useMAC, Rule: &enc})
	if !errors.Is(err, ErrInvalid) || s.Table() != tb {
		t.Errorf("invalid Set: err %v, table replaced %v", err, s.Table() != tb)
	}
}

func TestRoutesSetAndRemove(t *testing.T) {
	s := fixture(t)
	ok(s.AddCustomerRoute(route(rd1, 5001, "0.0.0.0/0", "10.0.0.254", 10)))
	got := ok(s.SetCustomerRoutes(CustomerRouteFilter{DestinationPrefix: []netip.Prefix{pfx("0.0.0.0/0")}}, 3))
	if len(got) != 1 || got[0].Metric != 3 || got[0].NextHop != addr("10.0.0.254") {
		t.Errorf("SetCustomerRoutes returned %+v", got)
	}
	if r, _ := s.Table().Route(rd1, addr("8.8.8.8")); r.Metric != 3 {
		t.Errorf("Route after Set has Metric %d, want 3", r.Metric)
	}
	// Removing the records first lets the on-link routes go.
	ok(s.RemoveLookupRecords(LookupRecordFilter{}))
	removed := ok(s.RemoveCustomerRoutes(CustomerRouteFilter{}))
	if len(removed) != 4 {
		t.Errorf("removed %d routes, want 4", len(removed))
	}
	tb := s.Table()
	if _, found := tb.RoutingDomain(5001); found {
		t.Errorf("VSID 5001 still has a routing domain after all routes were removed")
	}
	if _, found := tb.Route(rd1, addr("10.0.0.1")); found {
		t.Errorf("Route found after all routes were removed")
	}
	// With its old routes gone, 5001 may join another routing domain.
	ok(s.AddCustomerRoute(route(rd2, 5001, "10.0.0.0/24", "", 0)))
	// An empty filter on an empty kind removes nothing and is no error.
	if out, err := s.RemoveLookupRecords(LookupRecordFilter{}); err != nil || len(out) != 0 {
		t.Errorf("Remove all on no records = %v, %v", out, err)
	}
}

func TestProviderAddressesAndLocalPA(t *testing.T) {
	s := NewStore()
	if _, found := s.Table().LocalPA(false); found {
		t.Errorf("LocalPA found on an empty store")
	}
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.0.9"), PrefixLength: 15, AddressState: AddressTentative}))
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.0.5"), PrefixLength: 15, AddressState: AddressDuplicate}))
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("fd00:198::1"), PrefixLength: 64, AddressState: AddressPreferred}))
	tb := s.Table()
	if a, _ := tb.LocalPA(false); a != addr("198.18.0.9") {
		t.Errorf("LocalPA(v4) = %v, want the Tentative one: a Duplicate is never used", a)
	}
	if a, _ := tb.LocalPA(true); a != addr("fd00:198::1") {
		t.Errorf("LocalPA(v6) = %v", a)
	}
	if !tb.IsLocalPA(addr("198.18.0.9")) || tb.IsLocalPA(addr("198.18.0.6")) {
		t.Errorf("IsLocalPA wrong")
	}
	if tb.IsLocalPA(addr("198.18.0.5")) {
		t.Errorf("IsLocalPA true for a Duplicate PA, which belongs to another host")
	}
	if err := s.SetAddressState(addr("198.18.0.5"), AddressPreferred); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Table().LocalPA(false); a != addr("198.18.0.5") {
		t.Errorf("LocalPA(v4) = %v after 198.18.0.5 became Preferred", a)
	}
	v := s.Table().Version()
	if err := s.SetAddressState(addr("198.18.0.5"), AddressPreferred); err != nil || s.Table().Version() != v {
		t.Errorf("setting the same state published a new Table (err %v)", err)
	}
	got := s.ProviderAddresses(ProviderAddressFilter{})
	if len(got) != 3 || got[0].ProviderAddress != addr("198.18.0.5") || got[2].ProviderAddress != addr("fd00:198::1") {
		t.Errorf("ProviderAddresses not in address order: %+v", got)
	}
	ok(s.RemoveProviderAddresses(ProviderAddressFilter{ProviderAddress: []netip.Addr{addr("198.18.0.5")}}))
	if a, _ := s.Table().LocalPA(false); a != addr("198.18.0.9") {
		t.Errorf("LocalPA(v4) = %v after removing the preferred one", a)
	}
}

func TestProviderRoutes(t *testing.T) {
	s := NewStore()
	r := ok(s.AddProviderRoute(ProviderRoute{InterfaceIndex: 2, DestinationPrefix: pfx("198.18.0.0/15")}))
	if r.NextHop != netip.IPv4Unspecified() {
		t.Errorf("on-link NextHop stored as %v", r.NextHop)
	}
	ok(s.AddProviderRoute(ProviderRoute{InterfaceIndex: 2, DestinationPrefix: pfx("0.0.0.0/0"), NextHop: addr("198.18.0.254")}))
	got := ok(s.SetProviderRoutes(ProviderRouteFilter{NextHop: []netip.Addr{addr("0.0.0.0")}}, 50))
	if len(got) != 1 || got[0].Metric != 50 || got[0].DestinationPrefix != pfx("198.18.0.0/15") {
		t.Errorf("SetProviderRoutes = %+v", got)
	}
	if all := s.ProviderRoutes(ProviderRouteFilter{}); len(all) != 2 || all[0].DestinationPrefix != pfx("0.0.0.0/0") {
		t.Errorf("ProviderRoutes = %+v", all)
	}
	ok(s.RemoveProviderRoutes(ProviderRouteFilter{}))
	if _, _, _, n := s.Table().Counts(); n != 0 {
		t.Errorf("%d provider routes left after removing all", n)
	}
}

func TestGlobalAndVersion(t *testing.T) {
	s := NewStore()
	if s.Table().Version() != 0 {
		t.Fatalf("new store at version %d", s.Table().Version())
	}
	s.SetGlobal(Global{UseExternalRouter: true})
	if !s.Global().UseExternalRouter || s.Table().Version() != 1 {
		t.Errorf("SetGlobal: %+v at version %d", s.Global(), s.Table().Version())
	}
	s.SetGlobal(Global{UseExternalRouter: true})
	if s.Table().Version() != 1 {
		t.Errorf("an unchanged Global published version %d", s.Table().Version())
	}
}

func TestFiltersAndOrder(t *testing.T) {
	s := fixture(t)
	cid := MustParseGUID("{aaaaaaaa-0000-0000-0000-000000000001}")
	r := rec("10.0.0.3", 5001, "00:15:5d:00:00:03", "198.18.0.2")
	r.CustomerID, r.VMName = cid, "web"
	ok(s.AddLookupRecord(r))
	all := s.LookupRecords(LookupRecordFilter{})
	var order []string
	for _, r := range all {
		order = append(order, fmt.Sprint(r.VirtualSubnetID, " ", r.CustomerAddress))
	}
	if want := []string{"5001 10.0.0.3", "5001 10.0.0.5", "5002 10.0.1.6"}; !reflect.DeepEqual(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	for name, f := range map[string]LookupRecordFilter{
		"CustomerID": {CustomerID: []Wildcard{MustParseWildcard(cid.String())}},
		"VMName":     {VMName: []Wildcard{MustParseWildcard("web")}},
		"PA and VSID": {ProviderAddress: []netip.Addr{addr("198.18.0.2")}, VirtualSubnetID: []VSID{5001},
			MACAddress: []packet.MAC{mac("00:15:5d:00:00:03")}},
	} {
		if got := s.LookupRecords(f); len(got) != 1 || got[0].CustomerAddress != addr("10.0.0.3") {
			t.Errorf("filter %s matched %+v", name, got)
		}
	}
	if got := s.LookupRecords(LookupRecordFilter{ProviderAddress: []netip.Addr{addr("198.18.0.2")}}); len(got) != 2 {
		t.Errorf("PA filter matched %d records, want 2", len(got))
	}
	if got := s.CustomerRoutes(CustomerRouteFilter{NextHop: []netip.Addr{addr("::")}}); len(got) != 1 || got[0].DestinationPrefix != pfx("fd00:0:0:1::/64") {
		t.Errorf("NextHop :: filter matched %+v", got)
	}
}

func TestApplyAndPut(t *testing.T) {
	s := fixture(t)
	moved := rec("10.0.0.5", 5001, "00:15:5d:00:00:05", "198.18.0.77")
	err := s.Apply(Batch{
		RemoveLookupRecords:  []LookupRecord{rec("10.0.1.6", 5002, "00:15:5d:00:00:06", "198.18.0.3")},
		RemoveCustomerRoutes: []CustomerRoute{route(rd1, 5002, "10.0.1.0/24", "", 0)},
		AddCustomerRoutes:    []CustomerRoute{route(rd1, 5003, "10.0.3.0/24", "", 0)},
		AddLookupRecords:     []LookupRecord{rec("10.0.3.1", 5003, "00:15:5d:00:03:01", "198.18.0.4")},
		PutLookupRecords:     []LookupRecord{moved, rec("10.0.0.6", 5001, "00:15:5d:00:00:06", "198.18.0.4")},
	})
	if err != nil {
		t.Fatal(err)
	}
	tb := s.Table()
	if tb.Version() != 7 {
		t.Errorf("Apply published version %d, want 7 (6 for the fixture + 1)", tb.Version())
	}
	if r, _ := tb.LookupCA(5001, addr("10.0.0.5")); r.ProviderAddress != addr("198.18.0.77") {
		t.Errorf("Put did not replace the record: %+v", r)
	}
	if r, _ := tb.LookupMAC(5001, mac("00:15:5d:00:00:05")); r.ProviderAddress != addr("198.18.0.77") {
		t.Errorf("Put left a stale MAC index entry: %+v", r)
	}
	if _, found := tb.LookupCA(5001, addr("10.0.0.6")); !found {
		t.Errorf("Put did not add a new record")
	}
	if _, found := tb.RoutingDomain(5002); found {
		t.Errorf("5002 still routed after its only route was removed")
	}
	if n, c, _, _ := tb.Counts(); n != 3 || c != 3 {
		t.Errorf("Counts %d records %d routes, want 3 and 3", n, c)
	}
}

func TestLoadObjectsRoundTrip(t *testing.T) {
	s := fixture(t)
	gw := rec("::", 5001, "00:15:5d:00:00:fe", "fd00:198::9")
	gw.Type = GatewayWildcard
	ok(s.AddLookupRecord(gw))
	ok(s.AddProviderRoute(ProviderRoute{InterfaceIndex: 3, DestinationPrefix: pfx("198.18.0.0/15")}))
	s.SetGlobal(Global{UseExternalRouter: true})
	o := s.Objects()

	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var back Objects
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, o) {
		t.Fatalf("JSON round trip changed the objects:\n%s", b)
	}
	s2 := NewStore()
	ok(s2.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.9.9")}))
	if err := s2.Load(back); err != nil {
		t.Fatal(err)
	}
	if got := s2.Objects(); !reflect.DeepEqual(got, o) {
		t.Errorf("Load(Objects()) differs:\n got %+v\nwant %+v", got, o)
	}
	if _, found := s2.Table().GatewayWildcard(5001, true); !found {
		t.Errorf("loaded table lost its indexes")
	}
	// Load replaces everything.
	if err := s2.Load(Objects{}); err != nil {
		t.Fatal(err)
	}
	if n, c, p, r := s2.Table().Counts(); n+c+p+r != 0 || s2.Global().UseExternalRouter {
		t.Errorf("Load(empty) left %d %d %d %d objects", n, c, p, r)
	}
}

func TestSnapshotsAreImmutable(t *testing.T) {
	s := fixture(t)
	old := s.Table()
	oldObjs := old.Objects()
	ok(s.AddLookupRecord(rec("10.0.0.9", 5001, "00:15:5d:00:00:09", "198.18.0.2")))
	ok(s.RemoveLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{addr("10.0.1.6")}}))
	ok(s.AddCustomerRoute(route(rd1, 5002, "0.0.0.0/0", "10.0.1.254", 0)))
	ok(s.SetCustomerRoutes(CustomerRouteFilter{VirtualSubnetID: []VSID{5001}}, 9))
	if _, found := old.LookupCA(5001, addr("10.0.0.9")); found {
		t.Errorf("old snapshot sees a record added later")
	}
	if _, found := old.LookupCA(5002, addr("10.0.1.6")); !found {
		t.Errorf("old snapshot lost a record removed later")
	}
	if _, found := old.Route(rd1, addr("8.8.8.8")); found {
		t.Errorf("old snapshot sees a route added later")
	}
	if !reflect.DeepEqual(old.Objects(), oldObjs) {
		t.Errorf("old snapshot's objects changed")
	}
}

func TestSubscribeInOrder(t *testing.T) {
	s := NewStore()
	var versions []uint64
	s.Subscribe(func(tb *Table) {
		versions = append(versions, tb.Version())
		// A write from a subscriber must not deadlock; it is delivered after.
		if tb.Version() == 1 {
			s.SetGlobal(Global{UseExternalRouter: true})
		}
	})
	ok(s.AddCustomerRoute(route(rd1, 5001, "10.0.0.0/24", "", 0)))
	_, err := s.AddCustomerRoute(route(rd1, 5001, "10.0.0.0/24", "", 0)) // fails: no publication
	if !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate route: %v", err)
	}
	ok(s.AddLookupRecord(rec("10.0.0.5", 5001, "00:15:5d:00:00:05", "198.18.0.2")))
	if want := []uint64{1, 2, 3}; !reflect.DeepEqual(versions, want) {
		t.Errorf("subscriber saw versions %v, want %v", versions, want)
	}
}

func TestConcurrentReadersDuringWrites(t *testing.T) {
	s := fixture(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var seen atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				tb := s.Table()
				r, found := tb.LookupCA(5001, addr("10.0.0.5"))
				if !found || r.CustomerAddress != addr("10.0.0.5") {
					t.Errorf("reader lost the stable record: %v %v", r, found)
					return
				}
				if rt, found := tb.Route(rd1, addr("10.0.0.77")); !found || rt.VirtualSubnetID != 5001 {
					t.Errorf("reader lost the on-link route: %v %v", rt, found)
					return
				}
				// A record is either fully present in a snapshot or absent.
				if r, found := tb.LookupCA(5001, addr("10.0.0.100")); found {
					if m, _ := tb.LookupMAC(5001, r.MACAddress); m != r {
						t.Errorf("snapshot has the CA index entry but not the MAC one")
						return
					}
				}
				seen.Add(1)
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			for i := range 300 {
				ca := netip.AddrFrom4([4]byte{10, 0, 0, byte(100 + w)})
				m := mac(fmt.Sprintf("02:00:00:00:%02x:%02x", w, i%200))
				if _, err := s.AddLookupRecord(LookupRecord{CustomerAddress: ca, VirtualSubnetID: 5001, MACAddress: m, ProviderAddress: addr("198.18.0.2"), Rule: TranslationMethodNat}); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.RemoveLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{ca}, VirtualSubnetID: []VSID{5001}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	stop.Store(true)
	wg.Wait()
	if n, _, _, _ := s.Table().Counts(); n != 2 {
		t.Errorf("%d records after balanced adds and removes, want 2", n)
	}
	if s.Table().Version() != 6+1200 {
		t.Errorf("version %d, want %d", s.Table().Version(), 6+1200)
	}
	if seen.Load() == 0 {
		t.Errorf("readers never ran")
	}
}

func TestZeroTableIsEmpty(t *testing.T) {
	var tb Table
	if _, found := tb.LookupCA(5001, addr("10.0.0.5")); found {
		t.Errorf("zero Table found a record")
	}
	if _, found := tb.LookupMAC(5001, mac("00:15:5d:00:00:05")); found {
		t.Errorf("zero Table found a MAC")
	}
	if _, found := tb.Route(rd1, addr("10.0.0.5")); found {
		t.Errorf("zero Table found a route")
	}
	if o := tb.Objects(); len(o.LookupRecords)+len(o.CustomerRoutes) != 0 {
		t.Errorf("zero Table lists objects: %+v", o)
	}
}

func TestMovesListRecordsWhosePAChanged(t *testing.T) {
	s := NewStore()
	ok(s.AddCustomerRoute(CustomerRoute{RoutingDomainID: MustParseGUID("{11111111-2222-3333-4444-000000000001}"), VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}))
	rec := LookupRecord{CustomerAddress: addr("10.0.0.11"), VirtualSubnetID: 5001, MACAddress: packet.MAC{2, 0, 0, 0, 0, 0x11}, ProviderAddress: addr("198.18.0.2"), Rule: TranslationMethodEncap}
	ok(s.AddLookupRecord(rec))
	if m := s.Table().Moves(); len(m) != 0 {
		t.Fatalf("an add is not a move: %+v", m)
	}
	pa := addr("198.18.0.3")
	ok(s.SetLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{rec.CustomerAddress}}, LookupRecordChange{ProviderAddress: &pa}))
	if m := s.Table().Moves(); len(m) != 1 || m[0].OldPA != addr("198.18.0.2") || m[0].Record.ProviderAddress != pa {
		t.Fatalf("Set moved the record to 198.18.0.3: Moves = %+v", m)
	}
	vm := "web"
	ok(s.SetLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{rec.CustomerAddress}}, LookupRecordChange{VMName: &vm}))
	if m := s.Table().Moves(); len(m) != 0 {
		t.Fatalf("a label change is not a move: %+v", m)
	}
	rec.ProviderAddress = addr("198.18.0.4")
	if err := s.Apply(Batch{PutLookupRecords: []LookupRecord{rec}}); err != nil {
		t.Fatal(err)
	}
	if m := s.Table().Moves(); len(m) != 1 || m[0].OldPA != pa {
		t.Fatalf("Put moved the record from 198.18.0.3: Moves = %+v", m)
	}
}
