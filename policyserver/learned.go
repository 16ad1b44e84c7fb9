package policyserver

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// CAs learned by hosts on the ports of L2Only VMs (Windows Server 2012 R2's
// Dynamic records): kept at learned/<rd>/<ca>, one per CA of a routing
// domain, whose watch events carry the Dynamic record to every host of
// it. A host reports only what it learned itself (auth.go: the caller is
// the path's host), for a VM placed on it, at one of its own PAs, and
// never a CA a Static record (a VM's or a gateway's) has.

// MaxLearnedPerVM bounds the CAs kept learned for one VM: a host may
// report no more (the hosts bound what a port learns, 32 by default).
const MaxLearnedPerVM = 256

// ReportLearned keeps a CA host learned (or moves it there: the same CA
// reported by another host or for another VM replaces the older report).
func (s *Store) ReportLearned(ctx context.Context, host string, l policyapi.Learned) (policyapi.Learned, error) {
	if err := checkLearned(&l); err != nil {
		return l, err
	}
	return retry(ctx, "keeping the learned CA", func() (policyapi.Learned, error) {
		p, err := s.place(ctx, l.VirtualSubnetID, host)
		if err != nil {
			return l, err
		}
		if !slices.Contains(p.host.ProviderAddresses, l.ProviderAddress) {
			return l, forbiddenf("ProviderAddress %s is not one of host %s's PAs (%v): a host reports only what it learned itself", l.ProviderAddress, host, p.host.ProviderAddresses)
		}
		if err := checkCA(l.CustomerAddress, &p.subnet); err != nil {
			return l, err
		}
		rd := p.subnet.RoutingDomainID
		r, _, err := s.reads(ctx, macIdxKey(rd, l.MACAddress), recKey(rd, l.CustomerAddress), learnedKey(rd, l.CustomerAddress))
		if err != nil {
			return l, err
		}
		vm, vmKV, err := s.vmOfMAC(ctx, r[0])
		if err != nil || vm.Host != host || !vm.L2Only || vm.VirtualSubnetID != l.VirtualSubnetID {
			return l, forbiddenf("MACAddress %s is no L2Only VM of VirtualSubnetID %d placed on host %s: a host learns CAs only on its L2Only VMs' ports", l.MACAddress, l.VirtualSubnetID, host)
		}
		if r[1] != nil {
			owner, _ := decode[policy.LookupRecord](r[1])
			return l, conflictf("CustomerAddress %s is %s's Static address in routing domain %s: a learned CA never overrides a Static record", l.CustomerAddress, owner.VMName, rd)
		}
		l.Host, l.VMName, l.RoutingDomainID, l.CustomerID = host, vm.Name, rd, p.subnet.CustomerID
		if r[2] != nil {
			old, err := decode[policyapi.Learned](r[2])
			if err != nil {
				return l, err
			}
			if old.Host == l.Host && old.MACAddress == l.MACAddress && old.ProviderAddress == l.ProviderAddress {
				return old, nil
			}
		}
		learned, _, err := s.learnedOf(ctx, rd)
		if err != nil {
			return l, err
		}
		n := 0
		for _, o := range learned {
			if o.MACAddress == l.MACAddress && o.CustomerAddress != l.CustomerAddress {
				n++
			}
		}
		if n >= MaxLearnedPerVM {
			return l, tooManyf("VM %s has %d learned CAs already, the most the server keeps for one VM: let some age out", vm.Name, n)
		}
		l.LearnedAt = s.now().UTC()
		cmps := []clientv3.Cmp{unchanged(vmKey(vm.Name), vmKV), unchanged(recKey(rd, l.CustomerAddress), nil),
			unchanged(learnedKey(rd, l.CustomerAddress), r[2]), unchanged(hostKey(host), p.hostKV)}
		_, err = s.commit(ctx, cmps, clientv3.OpPut(learnedKey(rd, l.CustomerAddress), encode(l)))
		return l, err
	})
}

// ForgetLearned removes the CA of vsid that host learned. A CA learned
// since by another host or for another VM stays: ErrNotFound.
func (s *Store) ForgetLearned(ctx context.Context, host string, vsid policy.VSID, ca netip.Addr) error {
	if err := checkVSID(vsid); err != nil {
		return err
	}
	ca = ca.Unmap()
	_, err := retry(ctx, "forgetting the learned CA", func() (struct{}, error) {
		sn, _, err := s.subnet(ctx, vsid)
		if err != nil {
			return struct{}{}, err
		}
		key := learnedKey(sn.RoutingDomainID, ca)
		r, _, err := s.reads(ctx, key)
		if err != nil {
			return struct{}{}, err
		}
		var l policyapi.Learned
		if r[0] != nil {
			if l, err = decode[policyapi.Learned](r[0]); err != nil {
				return struct{}{}, err
			}
		}
		if r[0] == nil || l.Host != host || l.VirtualSubnetID != vsid {
			return struct{}{}, notFoundf("host %s has no learned CA %s in VirtualSubnetID %d", host, ca, vsid)
		}
		_, err = s.commit(ctx, []clientv3.Cmp{unchanged(key, r[0])}, clientv3.OpDelete(key))
		return struct{}{}, err
	})
	return err
}

// learnedOf lists the CAs learned in routing domain rd.
func (s *Store) learnedOf(ctx context.Context, rd policy.GUID) ([]policyapi.Learned, int64, error) {
	kvs, rev, err := s.rangeOf(ctx, learnedPrefix(rd), 0)
	if err != nil {
		return nil, 0, err
	}
	out, err := listOf[policyapi.Learned](kvs)
	return out, rev, err
}

// vmOfMAC reads the VM that owns a MAC index entry (nil: none).
func (s *Store) vmOfMAC(ctx context.Context, idx *kv) (policyapi.VM, *kv, error) {
	if idx == nil {
		return policyapi.VM{}, nil, notFoundf("no VM has the MAC")
	}
	kind, name, _ := strings.Cut(string(idx.value), "/")
	if kind != "vm" {
		return policyapi.VM{}, nil, notFoundf("the MAC is a %s's", kind)
	}
	return s.vm(ctx, name)
}

func forbiddenf(format string, a ...any) error {
	return &policy.Error{Kind: policy.ErrForbidden, Msg: fmt.Sprintf(format, a...)}
}

func tooManyf(format string, a ...any) error {
	return &policy.Error{Kind: policy.ErrTooMany, Msg: fmt.Sprintf(format, a...)}
}

func checkLearned(l *policyapi.Learned) error {
	if err := checkVSID(l.VirtualSubnetID); err != nil {
		return err
	}
	ca, err := checkUnicast("CustomerAddress", l.CustomerAddress)
	if err != nil {
		return err
	}
	l.CustomerAddress = ca
	if err := checkMAC(l.MACAddress); err != nil {
		return err
	}
	pa, err := checkUnicast("ProviderAddress", l.ProviderAddress)
	if err != nil {
		return err
	}
	l.ProviderAddress = pa
	return nil
}
