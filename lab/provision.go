package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// provision installs policy on every host the way an admin script would: the
// host's PA and its IP Rewrite VMs' PAs, on-link customer routes for every
// subnet of every tenant, lookup records for every VM CA, and then each VM's
// port on its own host.
func (l *Lab) provision(ctx context.Context) error {
	t := l.Topology
	hostPAs, err := l.hostPAs(ctx)
	if err != nil {
		return err
	}
	for _, h := range t.Hosts {
		c := l.Client(h.Name)
		for _, p := range hostPAs[h.Name] {
			pa := policy.ProviderAddress{ProviderAddress: p.Addr(), PrefixLength: uint8(p.Bits())}
			if _, err := c.AddProviderAddress(ctx, pa); err != nil {
				return fmt.Errorf("%s: add provider address %v: %w", h.Name, p, err)
			}
		}
		for _, r := range t.customerRoutes() {
			if _, err := c.AddCustomerRoute(ctx, r); err != nil {
				return fmt.Errorf("%s: add customer route %v in VSID %d: %w", h.Name, r.DestinationPrefix, r.VirtualSubnetID, err)
			}
		}
		for _, r := range t.lookupRecords() {
			if _, err := c.AddLookupRecord(ctx, r); err != nil {
				return fmt.Errorf("%s: add lookup record %v VSID %d: %w", h.Name, r.CustomerAddress, r.VirtualSubnetID, err)
			}
		}
	}
	l.printf("policy provisioned on %d hosts: %d customer routes and %d lookup records each",
		len(t.Hosts), len(t.customerRoutes()), len(t.lookupRecords()))
	for _, v := range t.VMs {
		spec := provider.PortSpec{
			Name:              v.Name,
			Interface:         v.Name,
			MACAddress:        v.MAC,
			VirtualSubnetID:   v.VSID,
			CustomerAddresses: v.CAs(),
		}
		if _, err := l.Client(v.Host).AttachPort(ctx, spec); err != nil {
			return fmt.Errorf("%s: attach port %s: %w", v.Host, v.Name, err)
		}
	}
	l.printf("ports attached: %d VMs", len(t.VMs))
	return l.waitPAs(ctx)
}

// waitPAs waits until every host's PA, and those of its IP Rewrite VMs
// (which its agent adds), have passed duplicate address detection: until
// then the address is not on the underlay and nothing reaches it.
func (l *Lab) waitPAs(ctx context.Context) error {
	hostPAs, err := l.hostPAs(ctx)
	if err != nil {
		return err
	}
	for _, h := range l.Topology.Hosts {
		for _, p := range hostPAs[h.Name] {
			if err := l.waitPA(ctx, h.Name, p.Addr()); err != nil {
				return err
			}
		}
	}
	l.printf("provider addresses preferred on %d hosts", len(l.Topology.Hosts))
	return nil
}

func (l *Lab) waitPA(ctx context.Context, host string, pa netip.Addr) error {
	for {
		pas, err := l.Client(host).ProviderAddresses(ctx, policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{pa}})
		if err != nil {
			return fmt.Errorf("%s: provider address %v: %w", host, pa, err)
		}
		if len(pas) == 1 && pas[0].AddressState == policy.AddressPreferred {
			return nil
		}
		if len(pas) == 1 && pas[0].AddressState == policy.AddressDuplicate {
			return fmt.Errorf("%s: provider address %v is a duplicate: another host on the underlay has it", host, pa)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: provider address %v is not there or did not pass duplicate address detection: %w", host, pa, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// customerRoutes are the on-link routes of every subnet, IPv4 and IPv6, in
// its tenant's routing domain.
func (t Topology) customerRoutes() []policy.CustomerRoute {
	var rs []policy.CustomerRoute
	for _, tn := range t.Tenants {
		rdid := policy.MustParseGUID(tn.RoutingDomainID)
		cid := policy.MustParseGUID(tn.CustomerID)
		for _, sn := range tn.Subnets {
			for _, p := range []netip.Prefix{sn.V4, sn.V6} {
				nh := netip.IPv4Unspecified()
				if p.Addr().Is6() {
					nh = netip.IPv6Unspecified()
				}
				rs = append(rs, policy.CustomerRoute{
					RoutingDomainID:   rdid,
					VirtualSubnetID:   sn.VSID,
					DestinationPrefix: p.Masked(),
					NextHop:           nh,
					CustomerID:        cid,
				})
			}
		}
	}
	return rs
}

// lookupRecords map every VM CA to the PA of its host, or in an IP Rewrite
// subnet (Rule Nat) to the CA's own PA.
func (t Topology) lookupRecords() []policy.LookupRecord {
	var rs []policy.LookupRecord
	rw := t.staticRewritePAs()
	for _, v := range t.VMs {
		h, _ := t.host(v.Host)
		tn, _ := t.tenant(v.Tenant)
		for i, ca := range v.CAs() {
			r := policy.LookupRecord{
				CustomerAddress: ca,
				VirtualSubnetID: v.VSID,
				MACAddress:      v.MAC,
				ProviderAddress: h.PA.Addr(),
				Rule:            policy.TranslationMethodEncap,
				Type:            policy.Static,
				CustomerID:      policy.MustParseGUID(tn.CustomerID),
				VMName:          v.Name,
			}
			if pas := rw[v.Name]; pas != nil {
				r.Rule, r.ProviderAddress = policy.TranslationMethodNat, pas[i].Addr()
			}
			rs = append(rs, r)
		}
	}
	return rs
}
