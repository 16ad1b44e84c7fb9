package policy

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/wnv/wnv/packet"
)

func TestSetProviderAddresses(t *testing.T) {
	s := fixture(t)
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("fd00:18::1"), PrefixLength: 64}))
	vlan, plen, m := uint16(12), uint8(24), mac("02-00-00-00-00-01")
	got := ok(s.SetProviderAddresses(ProviderAddressFilter{ProviderAddress: []netip.Addr{addr("198.18.0.1")}},
		ProviderAddressChange{VlanID: &vlan, PrefixLength: &plen, MACAddress: &m}))
	want := ProviderAddress{ProviderAddress: addr("198.18.0.1"), PrefixLength: 24, VlanID: 12, MACAddress: m, AddressState: AddressPreferred}
	if len(got) != 1 || got[0] != want || !reflect.DeepEqual(s.ProviderAddresses(ProviderAddressFilter{VlanID: []uint16{12}}), got) {
		t.Fatalf("set = %+v; want %+v", got, want)
	}

	before := s.Table()
	bad := uint16(4095)
	long := uint8(33)
	multicast := packet.Broadcast
	for _, c := range []struct {
		name string
		f    ProviderAddressFilter
		c    ProviderAddressChange
		kind error
		msg  string
	}{
		{"VlanID out of range", ProviderAddressFilter{}, ProviderAddressChange{VlanID: &bad}, ErrInvalid, "VlanID 4095 is out of range: use 0 (none) or 1..4094"},
		// Valid for the IPv6 PA, not for the IPv4 one: neither changes.
		{"PrefixLength too long for one", ProviderAddressFilter{}, ProviderAddressChange{PrefixLength: &long}, ErrInvalid,
			"PrefixLength 33 is out of range for IPv4 ProviderAddress 198.18.0.1: use 0..32"},
		{"multicast MAC", ProviderAddressFilter{}, ProviderAddressChange{MACAddress: &multicast}, ErrInvalid,
			"MACAddress ff:ff:ff:ff:ff:ff is multicast: use the interface's unicast MAC, or leave it unset"},
		{"no match", ProviderAddressFilter{VlanID: []uint16{99}}, ProviderAddressChange{VlanID: &vlan}, ErrNotFound, "no provider address has VlanID 99"},
	} {
		_, err := s.SetProviderAddresses(c.f, c.c)
		if !errors.Is(err, c.kind) || err.Error() != c.msg {
			t.Errorf("%s: %v; want %s", c.name, err, c.msg)
		}
		if s.Table() != before {
			t.Errorf("%s: the refused change published a new table", c.name)
		}
	}
}
