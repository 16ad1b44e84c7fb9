package policyserver

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// The host-side policy derived from the server's objects: exactly the lookup
// records and customer routes a host agent installs through the provider
// API. Pure functions of their arguments.

// RecordsFor returns the Static, Encap lookup record of each CA of vm,
// pointing at the PA of the VM's host (in a Nat subnet: Rule Nat, pointing
// at the CA's own PA), and for an L2Only VM its L2Only records (CA 0.0.0.0
// and ::).
func RecordsFor(vm *policyapi.VM) []policy.LookupRecord {
	out := make([]policy.LookupRecord, 0, len(vm.CustomerAddresses)+2)
	rec := func(ca netip.Addr, t policy.RecordType) policy.LookupRecord {
		return policy.LookupRecord{
			CustomerAddress: ca,
			VirtualSubnetID: vm.VirtualSubnetID,
			MACAddress:      vm.MACAddress,
			ProviderAddress: vm.ProviderAddress,
			Rule:            policy.TranslationMethodEncap,
			Type:            t,
			CustomerID:      vm.CustomerID,
			VMName:          vm.Name,
		}
	}
	for i, ca := range vm.CustomerAddresses {
		r := rec(ca, policy.Static)
		if i < len(vm.RewriteAddresses) {
			r.Rule, r.ProviderAddress = policy.TranslationMethodNat, vm.RewriteAddresses[i].Addr()
		}
		out = append(out, r)
	}
	if vm.L2Only {
		out = append(out, rec(netip.IPv4Unspecified(), policy.L2Only), rec(netip.IPv6Unspecified(), policy.L2Only))
	}
	return out
}

// LearnedRecords returns the Dynamic record of a learned CA.
func LearnedRecords(l *policyapi.Learned) []policy.LookupRecord {
	return []policy.LookupRecord{{
		CustomerAddress: l.CustomerAddress,
		VirtualSubnetID: l.VirtualSubnetID,
		MACAddress:      l.MACAddress,
		ProviderAddress: l.ProviderAddress,
		Rule:            policy.TranslationMethodEncap,
		Type:            policy.Dynamic,
		CustomerID:      l.CustomerID,
		VMName:          l.VMName,
	}}
}

// GatewayRecords returns a gateway's Static records, one per customer
// address, then its GatewayWildcard records (CA 0.0.0.0 or ::, one per
// family).
func GatewayRecords(g *policyapi.Gateway) []policy.LookupRecord {
	statics := GatewayStaticRecords(g)
	out := slices.Clone(statics)
	for _, r := range statics {
		r.Type = policy.GatewayWildcard
		r.CustomerAddress = unspecified(r.CustomerAddress)
		out = append(out, r)
	}
	return out
}

// GatewayStaticRecords returns the Static record of each of a gateway's
// customer addresses, as the server keeps them.
func GatewayStaticRecords(g *policyapi.Gateway) []policy.LookupRecord {
	cas := g.CustomerAddresses()
	out := make([]policy.LookupRecord, len(cas))
	for i, ca := range cas {
		out[i] = policy.LookupRecord{
			CustomerAddress: ca,
			VirtualSubnetID: g.VirtualSubnetID,
			MACAddress:      g.MACAddress,
			ProviderAddress: g.ProviderAddress,
			Rule:            policy.TranslationMethodEncap,
			Type:            policy.Static,
			CustomerID:      g.CustomerID,
			VMName:          g.Name,
		}
	}
	return out
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// RoutesFor returns the on-link customer route of each prefix of s.
func RoutesFor(s *policyapi.Subnet) []policy.CustomerRoute {
	out := make([]policy.CustomerRoute, len(s.Prefixes))
	for i, p := range s.Prefixes {
		out[i] = policy.CustomerRoute{
			RoutingDomainID:   s.RoutingDomainID,
			VirtualSubnetID:   s.VirtualSubnetID,
			DestinationPrefix: p,
			NextHop:           unspecified(p.Addr()),
			CustomerID:        s.CustomerID,
		}
	}
	return out
}

// GatewayRoutes returns the default route (0.0.0.0/0 or ::/0) through each
// of g's customer addresses.
func GatewayRoutes(g *policyapi.Gateway) []policy.CustomerRoute {
	var out []policy.CustomerRoute
	for _, ca := range g.CustomerAddresses() {
		out = append(out, policy.CustomerRoute{
			RoutingDomainID:   g.RoutingDomainID,
			VirtualSubnetID:   g.VirtualSubnetID,
			DestinationPrefix: netip.PrefixFrom(unspecified(ca), 0),
			NextHop:           ca,
			CustomerID:        g.CustomerID,
		})
	}
	return out
}

// PolicyFor assembles the policy of routing domain rd read at revision rev
// from its subnets, the Static records of its CAs (RecordsFor of its VMs and
// GatewayStaticRecords of its gateways, as the server keeps them) and
// its gateways, which add their wildcard records and default routes, and
// the Dynamic records of its learned CAs, except where a Static record has
// the CA (it always wins). Routes are ordered by VSID and prefix, records
// by VSID, CA and type.
func PolicyFor(rd policy.GUID, rev int64, subnets []policyapi.Subnet, records []policy.LookupRecord, gateways []policyapi.Gateway, learned []policyapi.Learned) policyapi.Policy {
	p := policyapi.Policy{RoutingDomainID: rd, Revision: rev, Subnets: subnets,
		Records: []policy.LookupRecord{}, Routes: []policy.CustomerRoute{}}
	if p.Subnets == nil {
		p.Subnets = []policyapi.Subnet{}
	}
	for i := range subnets {
		p.Routes = append(p.Routes, RoutesFor(&subnets[i])...)
	}
	p.Records = append(p.Records, records...)
	for i := range gateways {
		p.Routes = append(p.Routes, GatewayRoutes(&gateways[i])...)
		g := &gateways[i]
		p.Records = append(p.Records, GatewayRecords(g)[len(g.CustomerAddresses()):]...)
	}
	slices.SortFunc(p.Routes, func(a, b policy.CustomerRoute) int {
		return cmp.Or(cmp.Compare(a.VirtualSubnetID, b.VirtualSubnetID),
			a.DestinationPrefix.Addr().Compare(b.DestinationPrefix.Addr()),
			cmp.Compare(a.DestinationPrefix.Bits(), b.DestinationPrefix.Bits()))
	})
	static := map[netip.Addr]bool{}
	for _, r := range records {
		if r.Type == policy.Static {
			static[r.CustomerAddress] = true
		}
	}
	for i := range learned {
		if !static[learned[i].CustomerAddress] {
			p.Records = append(p.Records, LearnedRecords(&learned[i])...)
		}
	}
	slices.SortFunc(p.Records, func(a, b policy.LookupRecord) int {
		return cmp.Or(cmp.Compare(a.VirtualSubnetID, b.VirtualSubnetID),
			a.CustomerAddress.Compare(b.CustomerAddress), cmp.Compare(a.Type, b.Type), slices.Compare(a.MACAddress[:], b.MACAddress[:]))
	})
	return p
}
