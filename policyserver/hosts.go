package policyserver

import (
	"context"
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
// gateways move to the new one.
func (s *Store) RegisterHost(ctx context.Context, h policyapi.Host) (policyapi.Host, error) {
	if err := checkHost(&h); err != nil {
		return h, err
	}
	h, err := retry(ctx, "registering the host", func() (policyapi.Host, error) {
		keys := []string{hostKey(h.Name)}
		for _, pa := range h.ProviderAddresses {
			keys = append(keys, paIdxKey(pa))
		}
		r, _, err := s.reads(ctx, keys...)
		if err != nil {
			return h, err
		}
		cmps := []clientv3.Cmp{unchanged(keys[0], r[0])}
		var ops []clientv3.Op
		for i, pa := range h.ProviderAddresses {
			if o := r[i+1]; o != nil && string(o.value) != h.Name {
				return h, existsf("ProviderAddresses %s is already assigned to host %s: a PA belongs to one host", pa, o.value)
			}
			cmps = append(cmps, unchanged(keys[i+1], r[i+1]))
			ops = append(ops, clientv3.OpPut(keys[i+1], h.Name))
		}
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
		stored := h
		stored.Alive = false
		ops = append(ops, clientv3.OpPut(keys[0], encode(stored)))
		_, err = s.commit(ctx, cmps, ops...)
		return h, err
	})
	if err != nil {
		return h, err
	}
	if err := s.startLease(ctx, h); err != nil {
		return h, err
	}
	h.Alive = true
	return h, s.repointHost(ctx, h.Name)
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

// repointHost moves the records of every VM and gateway of the host whose
// ProviderAddress is not the host's first PA. It is level-based, one Txn
// per object, so an interrupted run is finished by the next registration.
func (s *Store) repointHost(ctx context.Context, name string) error {
	kvs, _, err := s.rangeOf(ctx, hostMembers(name), 0)
	if err != nil {
		return err
	}
	for _, m := range kvs {
		kind, obj, _ := strings.Cut(memberName(m.key, hostMembers(name)), "/")
		if kind == "gateway" {
			_, err = s.moveGateway(ctx, obj)
		} else {
			_, err = s.moveVM(ctx, obj, "", false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
