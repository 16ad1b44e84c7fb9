package policy

import (
	"net/netip"

	"github.com/wnv/wnv/packet"
)

// Stateless rules of each object kind. They also normalize what has one
// obvious meaning (IPv4-mapped IPv6 addresses become IPv4, a missing or
// unspecified NextHop becomes the unspecified address of the prefix family),
// so that identity comparisons are exact. Rules that depend on other objects
// live in tx.go.

func checkVSID(v VSID) error {
	if v > 0xFFFFFF {
		return invalidf("VirtualSubnetID %d is out of range: use %d..%d", v, MinVSID, MaxVSID)
	}
	if v < MinVSID || v > MaxVSID {
		return invalidf("VirtualSubnetID %d is reserved: use %d..%d", v, MinVSID, MaxVSID)
	}
	return nil
}

// unicast reports whether a is usable as a host address. Loopback and
// link-local are allowed: a lab may run hosts on 127.0.0.x.
func unicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

func checkUnicast(field string, a netip.Addr, use string) (netip.Addr, error) {
	if !a.IsValid() {
		return a, invalidf("%s is missing: use %s", field, use)
	}
	if a.Zone() != "" {
		return a, invalidf("%s %s has a zone: use an address without %%zone", field, a)
	}
	a = a.Unmap()
	if !unicast(a) {
		return a, invalidf("%s %s is not unicast: use %s", field, a, use)
	}
	return a, nil
}

func checkVMMAC(m packet.MAC) error {
	if m.IsZero() {
		return invalidf("MACAddress %s is zero: use the VM's unicast MAC", m)
	}
	if m.IsMulticast() {
		return invalidf("MACAddress %s is multicast: use the VM's unicast MAC", m)
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// zeroCA reports whether the record type uses CA 0.0.0.0 or ::.
func zeroCA(t RecordType) bool { return t == GatewayWildcard || t == L2Only }

func checkLookupRecord(r *LookupRecord) error {
	// Unusable is derived by the store, never taken from the caller.
	r.Unusable, r.UnusableReason = false, ""
	// Windows Server 2012 has no Type: its wildcard record is CA 0.0.0.0 or
	// ::, which arrives here as Type's zero value, Static.
	if r.Type == Static && r.CustomerAddress.IsValid() && r.CustomerAddress.Unmap().IsUnspecified() {
		r.Type = GatewayWildcard
	}
	if err := checkVSID(r.VirtualSubnetID); err != nil {
		return err
	}
	if r.Rule == RuleUnset {
		return invalidf("Rule is missing: %s", r.Rule.Syntax())
	}
	if r.Rule > TranslationMethodNone {
		return invalidf("Rule %s is out of range: %s", r.Rule, r.Rule.Syntax())
	}
	if r.Type > L2Only {
		return invalidf("Type %d is out of range: use 0 (Static), 1 (Dynamic), 2 (GatewayWildcard) or 3 (L2Only)", r.Type)
	}
	ca := r.CustomerAddress
	if zeroCA(r.Type) {
		if !ca.IsValid() {
			return invalidf("CustomerAddress is missing: Type %s uses 0.0.0.0 or ::", r.Type)
		}
		ca = ca.Unmap()
		if !ca.IsUnspecified() || ca.Zone() != "" {
			return invalidf("CustomerAddress %s is not allowed with Type %s: use 0.0.0.0 or ::", r.CustomerAddress, r.Type)
		}
	} else {
		var err error
		ca, err = checkUnicast("CustomerAddress", ca, "the VM's unicast address, or Type L2Only/GatewayWildcard with 0.0.0.0 or ::")
		if err != nil {
			return err
		}
	}
	r.CustomerAddress = ca
	if err := checkVMMAC(r.MACAddress); err != nil {
		return err
	}
	pa, err := checkUnicast("ProviderAddress", r.ProviderAddress, "the unicast provider address of the VM's host")
	if err != nil {
		return err
	}
	r.ProviderAddress = pa
	if r.UseVmMACAddress && r.Rule != TranslationMethodNat {
		return invalidf("UseVmMACAddress is true but Rule is %s: UseVmMACAddress needs Rule Nat (0)", r.Rule)
	}
	return nil
}

// checkPrefix checks a DestinationPrefix and returns its canonical form.
func checkPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, invalidf("DestinationPrefix is missing: use a CIDR prefix such as 10.0.0.0/24")
	}
	if p.Addr().Is4In6() {
		return p, invalidf("DestinationPrefix %s is IPv4-mapped IPv6: use the IPv4 form", p)
	}
	if m := p.Masked(); m != p {
		return p, invalidf("DestinationPrefix %s has host bits set: use %s", p, m)
	}
	return p, nil
}

// checkNextHop returns the canonical next hop for prefix p: the unspecified
// address of p's family when missing or unspecified.
func checkNextHop(nh netip.Addr, p netip.Prefix) (netip.Addr, error) {
	unspec := netip.IPv4Unspecified()
	if p.Addr().Is6() {
		unspec = netip.IPv6Unspecified()
	}
	if !nh.IsValid() || nh.IsUnspecified() && nh.Zone() == "" {
		return unspec, nil
	}
	if nh.Zone() != "" {
		return nh, invalidf("NextHop %s has a zone: use an address without %%zone", nh)
	}
	nh = nh.Unmap()
	if nh.Is4() != p.Addr().Is4() {
		return nh, invalidf("NextHop %s is %s but DestinationPrefix %s is %s: use an %s next hop or %s for on-link",
			nh, family(nh), p, family(p.Addr()), family(p.Addr()), unspec)
	}
	if !unicast(nh) {
		return nh, invalidf("NextHop %s is not unicast: use a unicast next hop or %s for on-link", nh, unspec)
	}
	return nh, nil
}

func checkCustomerRoute(r *CustomerRoute) error {
	if r.RoutingDomainID.IsZero() {
		return invalidf("RoutingDomainID is missing: use a GUID such as {11111111-2222-3333-4444-000000000000}")
	}
	if err := checkVSID(r.VirtualSubnetID); err != nil {
		return err
	}
	p, err := checkPrefix(r.DestinationPrefix)
	if err != nil {
		return err
	}
	nh, err := checkNextHop(r.NextHop, p)
	if err != nil {
		return err
	}
	r.DestinationPrefix, r.NextHop = p, nh
	return nil
}

func checkProviderAddress(pa *ProviderAddress) error {
	a, err := checkUnicast("ProviderAddress", pa.ProviderAddress, "a unicast address of this host")
	if err != nil {
		return err
	}
	pa.ProviderAddress = a
	if int(pa.PrefixLength) > a.BitLen() {
		return invalidf("PrefixLength %d is out of range for %s ProviderAddress %s: use 0..%d", pa.PrefixLength, family(a), a, a.BitLen())
	}
	if pa.InterfaceIndex < 0 {
		return invalidf("InterfaceIndex %d is negative: use the interface's index, or 0 if unknown", pa.InterfaceIndex)
	}
	if pa.VlanID > 4094 {
		return invalidf("VlanID %d is out of range: use 0 (none) or 1..4094", pa.VlanID)
	}
	if pa.MACAddress.IsMulticast() {
		return invalidf("MACAddress %s is multicast: use the interface's unicast MAC, or leave it unset", pa.MACAddress)
	}
	return checkAddressState(pa.AddressState)
}

func checkAddressState(s AddressState) error {
	if s > AddressPreferred {
		return invalidf("AddressState %d is out of range: use 0 (Invalid) .. 4 (Preferred)", s)
	}
	return nil
}

func checkProviderRoute(r *ProviderRoute) error {
	if r.InterfaceIndex < 0 {
		return invalidf("InterfaceIndex %d is negative: use the interface's index, or 0 if unknown", r.InterfaceIndex)
	}
	p, err := checkPrefix(r.DestinationPrefix)
	if err != nil {
		return err
	}
	nh, err := checkNextHop(r.NextHop, p)
	if err != nil {
		return err
	}
	r.DestinationPrefix, r.NextHop = p, nh
	return nil
}
