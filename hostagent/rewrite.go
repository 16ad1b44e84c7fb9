package hostagent

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	"github.com/wnv/wnv/policy"
)

// IP Rewrite PAs. A VM of a Nat subnet placed on this host has a PA per CA
// (its RewriteAddresses, allocated by the policy server); the agent
// configures each as a provider address of the host, so that the underlay
// delivers the VM's packets here, and removes it when the VM leaves (a
// migrated VM's PA moves to its new host with it).

// planPAs adds to a the PAs the local Nat VMs need and removes those no
// local VM has any more. The agent removes only PAs it knows to be rewrite
// PAs: those it added, and those inside the pool of a Nat subnet it holds
// (the policy server keeps host PAs out of pools), so the host's own PAs
// and any an operator added are left alone.
//
// A migrated VM's PA is usually still on its old host when the new one
// adds it, so the new host's duplicate address detection fails. While a
// wanted PA is not usable yet the host is read again every InterfaceRetry,
// and then a Duplicate one is removed and added again (detection runs
// again), until the old host has let it go.
func (m *Model) planPAs(h HostRead, a *Apply) {
	if m.rewritePAs == nil {
		m.rewritePAs = map[netip.Addr]bool{}
	}
	want := map[netip.Addr]netip.Prefix{}
	for _, vm := range m.vms {
		for _, p := range vm.RewriteAddresses {
			want[p.Addr()] = p
			m.rewritePAs[p.Addr()] = true
		}
	}
	have := map[netip.Addr]bool{}
	m.paUnsettled = false
	for _, p := range h.PAs {
		_, wanted := want[p.ProviderAddress]
		switch {
		case !wanted && (m.rewritePAs[p.ProviderAddress] || m.inNatPool(p.ProviderAddress)):
			a.RemovePAs = append(a.RemovePAs, p.ProviderAddress)
		case wanted && p.AddressState == policy.AddressDuplicate:
			m.paUnsettled = true
			if m.paReadd {
				a.RemovePAs = append(a.RemovePAs, p.ProviderAddress)
				continue // added again below
			}
		case wanted && p.AddressState == policy.AddressTentative:
			m.paUnsettled = true
		}
		have[p.ProviderAddress] = true
	}
	m.paReadd = false
	for pa := range m.rewritePAs {
		if _, ok := want[pa]; !ok && !have[pa] {
			delete(m.rewritePAs, pa)
		}
	}
	for _, pa := range sortedAddrs(want) {
		if !have[pa] {
			p := want[pa]
			a.AddPAs = append(a.AddPAs, policy.ProviderAddress{ProviderAddress: pa, PrefixLength: uint8(p.Bits())})
		}
	}
	sortAddrs(a.RemovePAs)
}

// inNatPool reports whether pa is in the pool of a Nat subnet the host
// holds the policy of.
func (m *Model) inNatPool(pa netip.Addr) bool {
	for _, p := range m.rds {
		for _, s := range p.subnets {
			if !s.Nat() {
				continue
			}
			for _, pool := range s.ProviderPrefixes {
				if pool.Contains(pa) {
					return true
				}
			}
		}
	}
	return false
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	sortAddrs(out)
	return out
}

func sortAddrs(s []netip.Addr) { slices.SortFunc(s, netip.Addr.Compare) }

// applyPAs removes and adds the IP Rewrite PAs of ap; one that is there
// already, or gone already, is no error.
func (d *driver) applyPAs(ctx context.Context, ap Apply) error {
	h := d.a.host
	var errs []error
	if len(ap.RemovePAs) > 0 {
		_, err := h.RemoveProviderAddresses(ctx, policy.ProviderAddressFilter{ProviderAddress: ap.RemovePAs})
		if err != nil && !errors.Is(err, policy.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	for _, pa := range ap.AddPAs {
		if _, err := h.AddProviderAddress(ctx, pa); err != nil && !errors.Is(err, policy.ErrExists) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
