package policy

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
)

var (
	rd1 = MustParseGUID("{11111111-2222-3333-4444-000000000001}")
	rd2 = MustParseGUID("{11111111-2222-3333-4444-000000000002}")
)

func addr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func pfx(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

func mac(s string) packet.MAC {
	m, err := packet.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func rec(ca string, vsid VSID, m, pa string) LookupRecord {
	return LookupRecord{CustomerAddress: addr(ca), VirtualSubnetID: vsid, MACAddress: mac(m),
		ProviderAddress: addr(pa), Rule: TranslationMethodEncap}
}

func route(rd GUID, vsid VSID, p, nh string, metric uint32) CustomerRoute {
	return CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: vsid, DestinationPrefix: pfx(p), NextHop: addr(nh), Metric: metric}
}

// ok unwraps the result of a step that must succeed; a panic fails the test.
func ok[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// fixture is a small routing domain: VSID 5001 (10.0.0.0/24, fd00:0:0:1::/64)
// and 5002 (10.0.1.0/24) in rd1, one VM in each, one local PA.
func fixture(t testing.TB) *Store {
	t.Helper()
	s := NewStore()
	ok(s.AddCustomerRoute(route(rd1, 5001, "10.0.0.0/24", "", 0)))
	ok(s.AddCustomerRoute(route(rd1, 5001, "fd00:0:0:1::/64", "", 0)))
	ok(s.AddCustomerRoute(route(rd1, 5002, "10.0.1.0/24", "", 0)))
	ok(s.AddLookupRecord(rec("10.0.0.5", 5001, "00:15:5d:00:00:05", "198.18.0.2")))
	ok(s.AddLookupRecord(rec("10.0.1.6", 5002, "00:15:5d:00:00:06", "198.18.0.3")))
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.0.1"), PrefixLength: 15, AddressState: AddressPreferred}))
	return s
}
