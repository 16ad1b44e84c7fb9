package policy

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestValidationRejectsAndLeavesStateUnchanged(t *testing.T) {
	gwRec := rec("0.0.0.0", 5001, "00:15:5d:00:00:fe", "198.18.0.9")
	gwRec.Type = GatewayWildcard
	rule7 := Rule(8) // wire number 7: Rule's Go values are the wire's plus one
	unset := RuleUnset
	tests := []struct {
		name string
		op   func(s *Store) error
		kind error
		msg  string
	}{
		{"VSID reserved low", addRec(rec("10.0.0.7", 4095, "00:15:5d:00:00:07", "198.18.0.2")),
			ErrInvalid, "VirtualSubnetID 4095 is reserved: use 4096..16777214"},
		{"VSID reserved high", addRec(rec("10.0.0.7", 0xFFFFFF, "00:15:5d:00:00:07", "198.18.0.2")),
			ErrInvalid, "VirtualSubnetID 16777215 is reserved: use 4096..16777214"},
		{"VSID beyond 24 bits", addRec(rec("10.0.0.7", 1<<24, "00:15:5d:00:00:07", "198.18.0.2")),
			ErrInvalid, "VirtualSubnetID 16777216 is out of range: use 4096..16777214"},
		{"Rule out of range", addRec(with(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "198.18.0.2"), func(r *LookupRecord) { r.Rule = TranslationMethodNone + 1 })),
			ErrInvalid, "Rule 3 is out of range: use 0 (Nat), 1 (Encap) or 2 (None)"},
		{"Type out of range", addRec(with(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "198.18.0.2"), func(r *LookupRecord) { r.Type = 4 })),
			ErrInvalid, "Type 4 is out of range: use 0 (Static), 1 (Dynamic), 2 (GatewayWildcard) or 3 (L2Only)"},
		{"L2Only with a CA", addRec(with(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "198.18.0.2"), func(r *LookupRecord) { r.Type = L2Only })),
			ErrInvalid, "CustomerAddress 10.0.0.7 is not allowed with Type L2Only: use 0.0.0.0 or ::"},
		{"GatewayWildcard without CA", addRec(with(rec("", 5001, "00:15:5d:00:00:07", "198.18.0.2"), func(r *LookupRecord) { r.Type = GatewayWildcard })),
			ErrInvalid, "CustomerAddress is missing: Type GatewayWildcard uses 0.0.0.0 or ::"},
		{"Dynamic with 0.0.0.0", addRec(with(rec("0.0.0.0", 5001, "00:15:5d:00:00:07", "198.18.0.2"), func(r *LookupRecord) { r.Type = Dynamic })),
			ErrInvalid, "CustomerAddress 0.0.0.0 is not unicast: use the VM's unicast address, or Type L2Only/GatewayWildcard with 0.0.0.0 or ::"},
		{"Dynamic with multicast CA", addRec(with(rec("224.0.0.1", 5001, "00:15:5d:00:00:07", "198.18.0.2"), func(r *LookupRecord) { r.Type = Dynamic })),
			ErrInvalid, "CustomerAddress 224.0.0.1 is not unicast: use the VM's unicast address, or Type L2Only/GatewayWildcard with 0.0.0.0 or ::"},
		{"zero MAC", addRec(rec("10.0.0.7", 5001, "00:00:00:00:00:00", "198.18.0.2")),
			ErrInvalid, "MACAddress 00:00:00:00:00:00 is zero: use the VM's unicast MAC"},
		{"multicast MAC", addRec(rec("10.0.0.7", 5001, "01:00:5e:00:00:01", "198.18.0.2")),
			ErrInvalid, "MACAddress 01:00:5e:00:00:01 is multicast: use the VM's unicast MAC"},
		{"missing PA", addRec(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "")),
			ErrInvalid, "ProviderAddress is missing: use the unicast provider address of the VM's host"},
		{"broadcast PA", addRec(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "255.255.255.255")),
			ErrInvalid, "ProviderAddress 255.255.255.255 is not unicast: use the unicast provider address of the VM's host"},
		{"PA with zone", addRec(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "fe80::1%eth0")),
			ErrInvalid, "ProviderAddress fe80::1%eth0 has a zone: use an address without %zone"},
		{"UseVmMACAddress without Nat", addRec(with(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "198.18.0.2"), func(r *LookupRecord) { r.UseVmMACAddress = true })),
			ErrInvalid, "UseVmMACAddress is true but Rule is Encap: UseVmMACAddress needs Rule Nat (0)"},
		{"same identity", addRec(rec("10.0.0.5", 5001, "00:15:5d:00:00:05", "198.18.0.9")),
			ErrExists, "LookupRecord 10.0.0.5 00:15:5d:00:00:05 in VirtualSubnetID 5001 already exists: use Set to change it"},
		{"same CA, other MAC", addRec(rec("10.0.0.5", 5001, "00:15:5d:00:00:99", "198.18.0.2")),
			ErrExists, "CustomerAddress 10.0.0.5 in VirtualSubnetID 5001 is already mapped to MACAddress 00:15:5d:00:00:05: remove that record first"},
		{"second gateway wildcard", func(s *Store) error {
			if _, err := s.AddLookupRecord(gwRec); err != nil {
				return err
			}
			return addRec(with(gwRec, func(r *LookupRecord) { r.MACAddress = mac("00:15:5d:00:00:fd") }))(s)
		}, ErrExists, "VirtualSubnetID 5001 already has an IPv4 GatewayWildcard record with MACAddress 00:15:5d:00:00:fe: remove it first"},

		{"route without RDID", addRoute(route(GUID{}, 5001, "10.0.2.0/24", "", 0)),
			ErrInvalid, "RoutingDomainID is missing: use a GUID such as {11111111-2222-3333-4444-000000000000}"},
		{"route VSID reserved", addRoute(route(rd1, 100, "10.0.2.0/24", "", 0)),
			ErrInvalid, "VirtualSubnetID 100 is reserved: use 4096..16777214"},
		{"route host bits", addRoute(route(rd1, 5001, "10.0.0.5/24", "", 0)),
			ErrInvalid, "DestinationPrefix 10.0.0.5/24 has host bits set: use 10.0.0.0/24"},
		{"route without prefix", addRoute(route(rd1, 5001, "", "", 0)),
			ErrInvalid, "DestinationPrefix is missing: use a CIDR prefix such as 10.0.0.0/24"},
		{"route next hop family", addRoute(route(rd1, 5001, "0.0.0.0/0", "fd00::1", 0)),
			ErrInvalid, "NextHop fd00::1 is IPv6 but DestinationPrefix 0.0.0.0/0 is IPv4: use an IPv4 next hop or 0.0.0.0 for on-link"},
		{"route multicast next hop", addRoute(route(rd1, 5001, "0.0.0.0/0", "224.0.0.5", 0)),
			ErrInvalid, "NextHop 224.0.0.5 is not unicast: use a unicast next hop or 0.0.0.0 for on-link"},
		{"VSID in another routing domain", addRoute(route(rd2, 5001, "10.0.2.0/24", "", 0)),
			ErrExists, "VirtualSubnetID 5001 belongs to RoutingDomainID {11111111-2222-3333-4444-000000000001}: a virtual subnet belongs to exactly one routing domain"},
		{"route exists", addRoute(route(rd1, 5001, "10.0.0.0/24", "0.0.0.0", 7)),
			ErrExists, "CustomerRoute 10.0.0.0/24 via 0.0.0.0 in VirtualSubnetID 5001 of RoutingDomainID {11111111-2222-3333-4444-000000000001} already exists: use Set to change its Metric"},

		{"PA not unicast", addPA(ProviderAddress{ProviderAddress: addr("0.0.0.0")}),
			ErrInvalid, "ProviderAddress 0.0.0.0 is not unicast: use a unicast address of this host"},
		{"PA prefix length", addPA(ProviderAddress{ProviderAddress: addr("198.18.0.7"), PrefixLength: 33}),
			ErrInvalid, "PrefixLength 33 is out of range for IPv4 ProviderAddress 198.18.0.7: use 0..32"},
		{"PA VLAN", addPA(ProviderAddress{ProviderAddress: addr("198.18.0.7"), VlanID: 4095}),
			ErrInvalid, "VlanID 4095 is out of range: use 0 (none) or 1..4094"},
		{"PA interface index", addPA(ProviderAddress{ProviderAddress: addr("198.18.0.7"), InterfaceIndex: -1}),
			ErrInvalid, "InterfaceIndex -1 is negative: use the interface's index, or 0 if unknown"},
		{"PA state", addPA(ProviderAddress{ProviderAddress: addr("198.18.0.7"), AddressState: 5}),
			ErrInvalid, "AddressState 5 is out of range: use 0 (Invalid) .. 4 (Preferred)"},
		{"PA exists", addPA(ProviderAddress{ProviderAddress: addr("198.18.0.1"), PrefixLength: 24}),
			ErrExists, "ProviderAddress 198.18.0.1 already exists: remove it first"},
		{"set state of unknown PA", func(s *Store) error { return s.SetAddressState(addr("198.18.0.77"), AddressPreferred) },
			ErrNotFound, "ProviderAddress 198.18.0.77 is not configured: add it first"},

		{"provider route host bits", addProviderRoute(ProviderRoute{DestinationPrefix: pfx("198.18.1.1/24")}),
			ErrInvalid, "DestinationPrefix 198.18.1.1/24 has host bits set: use 198.18.1.0/24"},
		{"provider route next hop family", addProviderRoute(ProviderRoute{DestinationPrefix: pfx("2001:db8::/32"), NextHop: addr("198.18.0.254")}),
			ErrInvalid, "NextHop 198.18.0.254 is IPv4 but DestinationPrefix 2001:db8::/32 is IPv6: use an IPv6 next hop or :: for on-link"},

		{"set with bad Rule", func(s *Store) error {
			_, err := s.SetLookupRecords(LookupRecordFilter{}, LookupRecordChange{Rule: &rule7})
			return err
		}, ErrInvalid, "Rule 7 is out of range: use 0 (Nat), 1 (Encap) or 2 (None)"},
		{"add without Rule", addRec(with(rec("10.0.0.7", 5001, "00:15:5d:00:00:07", "198.18.0.2"), func(r *LookupRecord) { r.Rule = RuleUnset })),
			ErrInvalid, "Rule is missing: use 0 (Nat), 1 (Encap) or 2 (None)"},
		{"set Rule to unset", func(s *Store) error {
			_, err := s.SetLookupRecords(LookupRecordFilter{}, LookupRecordChange{Rule: &unset})
			return err
		}, ErrInvalid, "Rule is missing: use 0 (Nat), 1 (Encap) or 2 (None)"},
		{"set matches nothing", func(s *Store) error {
			_, err := s.SetLookupRecords(LookupRecordFilter{VirtualSubnetID: []VSID{5009}}, LookupRecordChange{Rule: new(Rule)})
			return err
		}, ErrNotFound, "no lookup record has VirtualSubnetID 5009"},
		{"remove matches nothing", func(s *Store) error {
			_, err := s.RemoveLookupRecords(LookupRecordFilter{CustomerAddress: []netip.Addr{addr("10.0.0.9")}, VirtualSubnetID: []VSID{5001}})
			return err
		}, ErrNotFound, "no lookup record has CustomerAddress 10.0.0.9 and VirtualSubnetID 5001"},
		{"set route metric matches nothing", func(s *Store) error {
			_, err := s.SetCustomerRoutes(CustomerRouteFilter{RoutingDomainID: []Wildcard{MustParseWildcard(rd2.String())}}, 1)
			return err
		}, ErrNotFound, "no customer route has RoutingDomainID {11111111-2222-3333-4444-000000000002}"},
		{"remove PA matches nothing", func(s *Store) error {
			_, err := s.RemoveProviderAddresses(ProviderAddressFilter{ProviderAddress: []netip.Addr{addr("198.18.0.99")}})
			return err
		}, ErrNotFound, "no provider address has ProviderAddress 198.18.0.99"},

		{"batch is all-or-nothing", func(s *Store) error {
			return s.Apply(Batch{
				AddCustomerRoutes: []CustomerRoute{route(rd1, 5003, "10.0.3.0/24", "", 0)},
				AddLookupRecords: []LookupRecord{
					rec("10.0.3.1", 5003, "00:15:5d:00:03:01", "198.18.0.4"),
					rec("10.0.3.2", 5003, "01:15:5d:00:03:02", "198.18.0.4"),
				},
			})
		}, ErrInvalid, "AddLookupRecords[1]: MACAddress 01:15:5d:00:03:02 is multicast: use the VM's unicast MAC"},
		{"batch remove of a missing record", func(s *Store) error {
			return s.Apply(Batch{
				RemoveLookupRecords: []LookupRecord{rec("10.0.0.5", 5001, "00:15:5d:00:00:05", "198.18.0.2"), rec("10.0.0.8", 5001, "00:15:5d:00:00:08", "198.18.0.2")},
			})
		}, ErrNotFound, "RemoveLookupRecords[1]: LookupRecord 10.0.0.8 00:15:5d:00:00:08 in VirtualSubnetID 5001 does not exist"},
		{"load is all-or-nothing", func(s *Store) error {
			o := s.Objects()
			o.LookupRecords = append(o.LookupRecords, rec("10.0.0.200", 5001, "00:15:5d:00:00:05", "198.18.0.2"), rec("10.0.0.9", 5001, "00:15:5d:00:00:09", "198.18.0.255"))
			o.LookupRecords[3].VirtualSubnetID = 42
			return s.Load(o)
		}, ErrInvalid, "LookupRecords[3]: VirtualSubnetID 42 is reserved: use 4096..16777214"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t)
			before, objs := s.Table(), s.Objects()
			err := tc.op(s)
			if err == nil {
				t.Fatalf("succeeded, want %q", tc.msg)
			}
			if err.Error() != tc.msg {
				t.Errorf("error\n got %q\nwant %q", err, tc.msg)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %q is not %v", err, tc.kind)
			}
			if tc.name == "second gateway wildcard" {
				return // its first step succeeded on purpose
			}
			if s.Table() != before {
				t.Errorf("a failed operation published a new Table")
			}
			if got := s.Objects(); !reflect.DeepEqual(got, objs) {
				t.Errorf("state changed after a failure:\n got %+v\nwant %+v", got, objs)
			}
		})
	}
}

func with(r LookupRecord, f func(*LookupRecord)) LookupRecord {
	f(&r)
	return r
}

func addRec(r LookupRecord) func(*Store) error {
	return func(s *Store) error { _, err := s.AddLookupRecord(r); return err }
}

func addRoute(r CustomerRoute) func(*Store) error {
	return func(s *Store) error { _, err := s.AddCustomerRoute(r); return err }
}

func addPA(p ProviderAddress) func(*Store) error {
	return func(s *Store) error { _, err := s.AddProviderAddress(p); return err }
}

func addProviderRoute(r ProviderRoute) func(*Store) error {
	return func(s *Store) error { _, err := s.AddProviderRoute(r); return err }
}

func TestAddNormalizes(t *testing.T) {
	s := fixture(t)
	r := ok(s.AddCustomerRoute(route(rd1, 5001, "::/0", "", 0)))
	if r.NextHop != netip.IPv6Unspecified() {
		t.Errorf("missing NextHop stored as %v, want ::", r.NextHop)
	}
	lr := ok(s.AddLookupRecord(rec("::ffff:10.0.0.8", 5001, "00:15:5d:00:00:08", "::ffff:198.18.0.2")))
	if lr.CustomerAddress != addr("10.0.0.8") || lr.ProviderAddress != addr("198.18.0.2") {
		t.Errorf("IPv4-mapped addresses stored as %v / %v, want the IPv4 form", lr.CustomerAddress, lr.ProviderAddress)
	}
	if _, ok := s.Table().LookupCA(5001, addr("10.0.0.8")); !ok {
		t.Errorf("record added with a mapped CA is not found by its IPv4 CA")
	}
}
