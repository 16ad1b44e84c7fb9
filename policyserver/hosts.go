package policyserver

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"

	"github.com/wnv/wnv/policyapi"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Hosts. A host's liveness is a key (alive/<name>) attached to an etcd lease
// of the host's TTL; heartbeats renew it, and when the agent stops the key
// expires with the lease, which watchers see as a liveness delete.

// RegisterHost creates or updates h, claims its PAs and starts its liveness
// lease. If the host's first PA changed, the records of its VMs and
// gateways move to the new one in the same transaction, so watchers see the
// host and all its moves at one revision.
func (s *Store) RegisterHost(ctx context.Context, h policyapi.Host) (policyapi.Host, error) {
	if err := checkHost(&h); err != nil {
		return h, err
	}
	h, err := retry(ctx, "registering the host", func() (policyapi.Host, error) {
		keys := []string{hostKey(h.Name)}
		for _, pa := range h.ProviderAddresses {
			keys = append(keys, paIdxKey(pa))
		}
		r, rev, err := s.reads(ctx, keys...)
		if err != nil {
			return h, err
		}
		cmps := []clientv3.Cmp{unchanged(keys[0], r[0])}
		var ops []clientv3.Op
		for i, pa := range h.ProviderAddresses {
			if o := r[i+1]; o != nil && string(o.value) != h.Name {
				if kind, vm, ok := strings.Cut(string(o.value), "/"); ok && kind == "vm" {
					return h, existsf("ProviderAddresses %s is already the IP Rewrite PA of VM %s: give the host another PA", pa, vm)
				}
				return h, existsf("ProviderAddresses %s is already assigned to host %s: a PA belongs to one host", pa, o.value)
			}
			cmps = append(cmps, unchanged(keys[i+1], r[i+1]))
			ops = append(ops, clientv3.OpPut(keys[i+1], h.Name))
		}
		if err := s.checkHostOutsidePools(ctx, &h, rev); err != nil {
			return h, err
		}
		// No Nat subnet may take the PA into its pool meanwhile.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(Prefix+"subnets/"), "<", rev+1).WithPrefix())
		h.RegisteredAt = s.now().UTC()
		if r[0] != nil {
			old, err := decode[policyapi.Host](r[0])
			if err != nil {
				return h, err
			}
			for _, pa := range old.ProviderAddresses {
				if !slices.Contains(h.ProviderAddresses, pa) {
					ops = append(ops, clientv3.OpDelete(paIdxKey(pa)))
				}
			}
		}
		mc, mo, err := s.repointOps(ctx, h, rev)
		if err != nil {
			return h, err
		}
		stored := h
		stored.Alive = false
		ops = append(append(ops, mo...), clientv3.OpPut(keys[0], encode(stored)))
		_, err = s.commit(ctx, append(cmps, mc...), ops...)
		if errors.Is(err, rpctypes.ErrTooManyOps) {
			return h, invalidf("host %s has %d VMs and gateways to move to ProviderAddresses %s, more than etcd takes in one transaction: raise etcd's --max-txn-ops", h.Name, len(mc)-1, h.ProviderAddresses[0])
		}
		return h, err
	})
	if err != nil {
		return h, err
	}
	if err := s.startLease(ctx, h); err != nil {
		return h, err
	}
	h.Alive = true
	return h, nil
}

// repointOps returns the compares and writes that move the records of every
// VM and gateway on h, as read at rev, whose ProviderAddress is not h's first
// PA. Being level-based, it also repairs objects an older server left behind.
func (s *Store) repointOps(ctx context.Context, h policyapi.Host, rev int64) ([]clientv3.Cmp, []clientv3.Op, error) {
	prefix := hostMembers(h.Name)
	ms, _, err := s.rangeOf(ctx, prefix, rev)
	if err != nil {
		return nil, nil, err
	}
	// No VM or gateway may join or leave the host meanwhile.
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(prefix), "<", rev+1).WithPrefix()}
	var ops []clientv3.Op
	pa := h.ProviderAddresses[0]
	for chunk := range slices.Chunk(ms, 100) {
		keys := make([]string, len(chunk))
		for i, m := range chunk {
			kind, name, _ := strings.Cut(memberName(m.key, prefix), "/")
			keys[i] = vmKey(name)
			if kind == "gateway" {
				keys[i] = gatewayKey(name)
			}
		}
		got, err := s.readsAt(ctx, rev, keys...)
		if err != nil {
			return nil, nil, err
		}
		for i, k := range got {
			if k == nil {
				continue
			}
			moved, err := repointed(keys[i], k, pa)
			if err != nil {
				return nil, nil, err
			}
			if moved != nil {
				cmps = append(cmps, unchanged(keys[i], k))
				ops = append(ops, moved...)
			}
		}
	}
	return cmps, ops, nil
}

// startLease attaches a fresh lease of the host's TTL to its liveness key.
func (s *Store) startLease(ctx context.Context, h policyapi.Host) error {
	lease, err := s.cli.Grant(ctx, h.TTLSeconds)
	if err != nil {
		return etcdError(err)
	}
	_, err = s.cli.Put(ctx, aliveKey(h.Name), h.RegisteredAt.Format("2006-01-02T15:04:05.000Z07:00"), clientv3.WithLease(lease.ID))
	if err != nil {
		return etcdError(err)
	}
	return nil
}

// Heartbeat renews the host's lease, or starts a new one if it expired.
func (s *Store) Heartbeat(ctx context.Context, name string) (policyapi.Host, error) {
	r, _, err := s.reads(ctx, hostKey(name), aliveKey(name))
	if err != nil {
		return policyapi.Host{}, err
	}
	if r[0] == nil {
		return policyapi.Host{}, notFoundf("host %s is not registered: register it first", name)
	}
	h, err := decode[policyapi.Host](r[0])
	if err != nil {
		return h, err
	}
	h.Alive = true
	if r[1] != nil && r[1].lease != 0 {
		_, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(r[1].lease))
		if err == nil {
			return h, nil
		}
		if err != rpctypes.ErrLeaseNotFound {
			return h, etcdError(err)
		}
	}
	return h, s.startLease(ctx, h)
}

func (s *Store) Host(ctx context.Context, name string) (policyapi.Host, error) {
	r, _, err := s.reads(ctx, hostKey(name), aliveKey(name))
	if err != nil {
		return policyapi.Host{}, err
	}
	if r[0] == nil {
		return policyapi.Host{}, notFoundf("host %s is not registered", name)
	}
	h, err := decode[policyapi.Host](r[0])
	h.Alive = r[1] != nil
	return h, err
}

func (s *Store) Hosts(ctx context.Context) ([]policyapi.Host, error) {
	kvs, rev, err := s.rangeOf(ctx, Prefix+"hosts/", 0)
	if err != nil {
		return nil, err
	}
	alive, _, err := s.rangeOf(ctx, Prefix+"alive/", rev)
	if err != nil {
		return nil, err
	}
	hs, err := listOf[policyapi.Host](kvs)
	for i := range hs {
		hs[i].Alive = slices.ContainsFunc(alive, func(k *kv) bool { return k.key == aliveKey(hs[i].Name) })
	}
	return hs, err
}

// DeleteHost removes a host without VMs or gateways and ends its lease.
func (s *Store) DeleteHost(ctx context.Context, name string) error {
	_, err := retry(ctx, "deleting the host", func() (struct{}, error) {
		r, _, err := s.reads(ctx, hostKey(name), aliveKey(name))
		if err != nil {
			return struct{}{}, err
		}
		if r[0] == nil {
			return struct{}{}, notFoundf("host %s is not registered", name)
		}
		h, err := decode[policyapi.Host](r[0])
		if err != nil {
			return struct{}{}, err
		}
		if m, err := s.firstMember(ctx, hostMembers(name)); err != nil || m != "" {
			kind, n, _ := strings.Cut(m, "/")
			return struct{}{}, cmpErr(err, existsf("host %s still has %s %s: delete or migrate it first", name, kindWord(kind), n))
		}
		ops := []clientv3.Op{clientv3.OpDelete(hostKey(name)), clientv3.OpDelete(aliveKey(name))}
		for _, pa := range h.ProviderAddresses {
			ops = append(ops, clientv3.OpDelete(paIdxKey(pa)))
		}
		if _, err = s.commit(ctx, []clientv3.Cmp{unchanged(hostKey(name), r[0]), emptyPrefix(hostMembers(name))}, ops...); err != nil {
			return struct{}{}, err
		}
		if r[1] != nil && r[1].lease != 0 {
			// The key is gone; a failed revoke only leaves the lease to expire.
			_, _ = s.cli.Revoke(ctx, clientv3.LeaseID(r[1].lease))
		}
		return struct{}{}, nil
	})
	return err
}

// repointed returns the writes that point the VM or gateway stored at key at
// pa, or none when it already does.
func repointed(key string, k *kv, pa netip.Addr) ([]clientv3.Op, error) {
	if strings.HasPrefix(key, Prefix+"gateways/") {
		g, err := decode[policyapi.Gateway](k)
		if err != nil || g.ProviderAddress == pa {
			return nil, err
		}
		g.ProviderAddress = pa
		return append(recOps(g.RoutingDomainID, GatewayStaticRecords(&g)), clientv3.OpPut(key, encode(g))), nil
	}
	vm, err := decode[policyapi.VM](k)
	if err != nil || vm.ProviderAddress == pa {
		return nil, err
	}
	vm.ProviderAddress = pa
	return append(recOps(vm.RoutingDomainID, RecordsFor(&vm)), clientv3.OpPut(key, encode(vm))), nil
}
