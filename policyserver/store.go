package policyserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// Prefix is the root of every key the server writes.
const Prefix = "/wnv/v1/"

// Keys. VSIDs are zero-padded so that ranges list them in order.
func tenantKey(id policy.GUID) string { return Prefix + "tenants/" + id.String() }
func rdKey(id policy.GUID) string     { return Prefix + "rds/" + id.String() }
func subnetsKey(rd policy.GUID) string {
	return Prefix + "subnets/" + rd.String() + "/"
}
func subnetKey(rd policy.GUID, v policy.VSID) string { return subnetsKey(rd) + vsidText(v) }
func hostKey(name string) string                     { return Prefix + "hosts/" + name }
func aliveKey(name string) string                    { return Prefix + "alive/" + name }
func vmKey(name string) string                       { return Prefix + "vms/" + name }
func gatewayKey(name string) string                  { return Prefix + "gateways/" + name }
func recsKey(rd policy.GUID) string                  { return Prefix + "rec/" + rd.String() + "/ca/" }
func recKey(rd policy.GUID, ca netip.Addr) string    { return recsKey(rd) + ca.String() }
func l2RecKey(rd policy.GUID, mac packet.MAC, zero netip.Addr) string {
	return recsKey(rd) + "l2/" + mac.String() + "/" + zero.String()
}
func learnedPrefix(rd policy.GUID) string             { return Prefix + "learned/" + rd.String() + "/" }
func learnedKey(rd policy.GUID, ca netip.Addr) string { return learnedPrefix(rd) + ca.String() }
func vsidIdxKey(v policy.VSID) string                 { return Prefix + "idx/vsid/" + vsidText(v) }
func macIdxKey(rd policy.GUID, m packet.MAC) string {
	return Prefix + "idx/mac/" + rd.String() + "/" + m.String()
}
func paIdxKey(pa netip.Addr) string { return Prefix + "idx/pa/" + pa.String() }
func tenantMembers(id policy.GUID) string {
	return Prefix + "members/tenant/" + id.String() + "/"
}
func hostMembers(host string) string       { return Prefix + "members/host/" + host + "/" }
func subnetMembers(v policy.VSID) string   { return Prefix + "members/subnet/" + vsidText(v) + "/" }
func vsidText(v policy.VSID) string        { return fmt.Sprintf("%08d", v) }
func member(kind, name string) string      { return kind + "/" + name }
func memberName(key, prefix string) string { return strings.TrimPrefix(key, prefix) }

// Store is the server's state in etcd. It keeps nothing in memory, so any
// number of Stores (replicas) may share one etcd cluster: every write is one
// Txn comparing the revisions of what it read.
type Store struct {
	// MaxWatchesPerClient caps the watch streams one client (see clientOf)
	// holds at once; one more is refused with 429. 0: no cap.
	MaxWatchesPerClient int
	// MaxReplay is how many revisions back a watch may start: an older one
	// gets a resync event instead of replaying that much history. 0: no bound.
	MaxReplay int64

	cli      *clientv3.Client
	now      func() time.Time
	hub      hub
	watchers watchers
}

// Defaults of the Store's limits.
const (
	DefaultMaxWatchesPerClient = 8
	DefaultMaxReplay           = 100_000
)

// NewStore returns a Store writing through cli.
func NewStore(cli *clientv3.Client) *Store {
	s := &Store{cli: cli, now: time.Now, MaxWatchesPerClient: DefaultMaxWatchesPerClient, MaxReplay: DefaultMaxReplay}
	s.hub.s = s
	return s
}

// maxAttempts bounds the retries of a write whose compare failed because
// another writer changed what it read.
const maxAttempts = 16

// errRetry says a Txn's compare failed: read again and re-check.
var errRetry = errors.New("concurrent change, retry")

// retry runs attempt until it succeeds, fails with a rule, or keeps losing
// races.
func retry[T any](ctx context.Context, what string, attempt func() (T, error)) (T, error) {
	for range maxAttempts {
		v, err := attempt()
		if !errors.Is(err, errRetry) {
			return v, err
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
	}
	var zero T
	return zero, fmt.Errorf("%s lost %d races with concurrent writers: try again", what, maxAttempts)
}

// reads fetches several keys in one round trip at one revision. Each result
// is the key's KeyValue or nil.
func (s *Store) reads(ctx context.Context, keys ...string) ([]*kv, int64, error) {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, 0, etcdError(err)
	}
	out := make([]*kv, len(keys))
	for i, r := range resp.Responses {
		if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
			out[i] = &kv{value: kvs[0].Value, mod: kvs[0].ModRevision, lease: kvs[0].Lease}
		}
	}
	return out, resp.Header.Revision, nil
}

// kv is a read key: its value and revision.
type kv struct {
	key   string
	value []byte
	mod   int64
	lease int64
}

// modOf is the ModRevision to compare against: 0 means absent.
func modOf(k *kv) int64 {
	if k == nil {
		return 0
	}
	return k.mod
}

func unchanged(key string, k *kv) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(key), "=", modOf(k))
}

func decode[T any](k *kv) (T, error) {
	var v T
	if err := json.Unmarshal(k.value, &v); err != nil {
		return v, fmt.Errorf("stored object is not valid JSON (%v): the etcd data is damaged", err)
	}
	return v, nil
}

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only wire types with text marshalers that cannot fail
	}
	return string(b)
}

// commit runs a write Txn; a failed compare is errRetry.
func (s *Store) commit(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) (int64, error) {
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, etcdError(err)
	}
	if !resp.Succeeded {
		return 0, errRetry
	}
	return resp.Header.Revision, nil
}

func etcdError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, rpctypes.ErrNoSpace) {
		return errStoreFull
	}
	return &policy.Error{Kind: policy.ErrUnavailable, Msg: "etcd is unavailable: " + err.Error()}
}

// rangeOf lists the values under prefix at rev (0: now).
func (s *Store) rangeOf(ctx context.Context, prefix string, rev int64) ([]*kv, int64, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.cli.Get(ctx, prefix, opts...)
	if err != nil {
		return nil, 0, etcdError(err)
	}
	out := make([]*kv, len(resp.Kvs))
	for i, x := range resp.Kvs {
		out[i] = &kv{key: string(x.Key), value: x.Value, mod: x.ModRevision, lease: x.Lease}
	}
	return out, resp.Header.Revision, nil
}

func listOf[T any](kvs []*kv) ([]T, error) {
	out := make([]T, 0, len(kvs))
	for _, k := range kvs {
		v, err := decode[T](k)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// emptyPrefix is true while no key exists under prefix.
func emptyPrefix(prefix string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(prefix), "=", 0).WithPrefix()
}

// Tenants.

func (s *Store) CreateTenant(ctx context.Context, t policyapi.Tenant) (policyapi.Tenant, error) {
	if err := checkTenant(&t); err != nil {
		return t, err
	}
	_, err := s.commit(ctx, []clientv3.Cmp{unchanged(tenantKey(t.CustomerID), nil)}, clientv3.OpPut(tenantKey(t.CustomerID), encode(t)))
	if errors.Is(err, errRetry) {
		return t, existsf("tenant %s already exists: use another CustomerID", t.CustomerID)
	}
	return t, err
}

func (s *Store) Tenant(ctx context.Context, id policy.GUID) (policyapi.Tenant, error) {
	r, _, err := s.reads(ctx, tenantKey(id))
	if err != nil {
		return policyapi.Tenant{}, err
	}
	if r[0] == nil {
		return policyapi.Tenant{}, notFoundf("tenant %s does not exist: create it first", id)
	}
	return decode[policyapi.Tenant](r[0])
}

func (s *Store) Tenants(ctx context.Context) ([]policyapi.Tenant, error) {
	kvs, _, err := s.rangeOf(ctx, Prefix+"tenants/", 0)
	if err != nil {
		return nil, err
	}
	return listOf[policyapi.Tenant](kvs)
}

func (s *Store) DeleteTenant(ctx context.Context, id policy.GUID) error {
	_, err := retry(ctx, "deleting the tenant", func() (struct{}, error) {
		r, _, err := s.reads(ctx, tenantKey(id))
		if err != nil {
			return struct{}{}, err
		}
		if r[0] == nil {
			return struct{}{}, notFoundf("tenant %s does not exist", id)
		}
		if m, err := s.firstMember(ctx, tenantMembers(id)); err != nil || m != "" {
			return struct{}{}, cmpErr(err, existsf("tenant %s still has routing domain %s: delete it first", id, m))
		}
		_, err = s.commit(ctx, []clientv3.Cmp{unchanged(tenantKey(id), r[0]), emptyPrefix(tenantMembers(id))},
			clientv3.OpDelete(tenantKey(id)))
		return struct{}{}, err
	})
	return err
}

func cmpErr(err, rule error) error {
	if err != nil {
		return err
	}
	return rule
}

// firstMember names the first key under prefix, "" when there is none.
func (s *Store) firstMember(ctx context.Context, prefix string) (string, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		return "", etcdError(err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return memberName(string(resp.Kvs[0].Key), prefix), nil
}

// Routing domains.

func (s *Store) CreateRoutingDomain(ctx context.Context, rd policyapi.RoutingDomain) (policyapi.RoutingDomain, error) {
	if err := checkRoutingDomain(&rd); err != nil {
		return rd, err
	}
	return retry(ctx, "creating the routing domain", func() (policyapi.RoutingDomain, error) {
		r, _, err := s.reads(ctx, tenantKey(rd.CustomerID), rdKey(rd.RoutingDomainID))
		if err != nil {
			return rd, err
		}
		if r[0] == nil {
			return rd, notFoundf("CustomerID %s is not a known tenant: create the tenant first", rd.CustomerID)
		}
		if r[1] != nil {
			return rd, existsf("routing domain %s already exists: use another RoutingDomainID", rd.RoutingDomainID)
		}
		_, err = s.commit(ctx, []clientv3.Cmp{unchanged(tenantKey(rd.CustomerID), r[0]), unchanged(rdKey(rd.RoutingDomainID), nil)},
			clientv3.OpPut(rdKey(rd.RoutingDomainID), encode(rd)),
			clientv3.OpPut(tenantMembers(rd.CustomerID)+rd.RoutingDomainID.String(), ""))
		return rd, err
	})
}

func (s *Store) RoutingDomain(ctx context.Context, id policy.GUID) (policyapi.RoutingDomain, error) {
	r, _, err := s.reads(ctx, rdKey(id))
	if err != nil {
		return policyapi.RoutingDomain{}, err
	}
	if r[0] == nil {
		return policyapi.RoutingDomain{}, notFoundf("routing domain %s does not exist: create it first", id)
	}
	return decode[policyapi.RoutingDomain](r[0])
}

func (s *Store) RoutingDomains(ctx context.Context) ([]policyapi.RoutingDomain, error) {
	kvs, _, err := s.rangeOf(ctx, Prefix+"rds/", 0)
	if err != nil {
		return nil, err
	}
	return listOf[policyapi.RoutingDomain](kvs)
}

func (s *Store) DeleteRoutingDomain(ctx context.Context, id policy.GUID) error {
	_, err := retry(ctx, "deleting the routing domain", func() (struct{}, error) {
		r, _, err := s.reads(ctx, rdKey(id))
		if err != nil {
			return struct{}{}, err
		}
		if r[0] == nil {
			return struct{}{}, notFoundf("routing domain %s does not exist", id)
		}
		rd, err := decode[policyapi.RoutingDomain](r[0])
		if err != nil {
			return struct{}{}, err
		}
		if m, err := s.firstMember(ctx, subnetsKey(id)); err != nil || m != "" {
			v, _ := strconv.Atoi(m)
			return struct{}{}, cmpErr(err, existsf("routing domain %s still has VirtualSubnetID %d: delete the subnet first", id, v))
		}
		_, err = s.commit(ctx, []clientv3.Cmp{unchanged(rdKey(id), r[0]), emptyPrefix(subnetsKey(id))},
			clientv3.OpDelete(rdKey(id)), clientv3.OpDelete(tenantMembers(rd.CustomerID)+id.String()))
		return struct{}{}, err
	})
	return err
}

// Subnets.

func (s *Store) CreateSubnet(ctx context.Context, sn policyapi.Subnet) (policyapi.Subnet, error) {
	if err := checkSubnet(&sn); err != nil {
		return sn, err
	}
	return retry(ctx, "creating the subnet", func() (policyapi.Subnet, error) {
		r, rev, err := s.reads(ctx, rdKey(sn.RoutingDomainID), vsidIdxKey(sn.VirtualSubnetID))
		if err != nil {
			return sn, err
		}
		if r[0] == nil {
			return sn, notFoundf("RoutingDomainID %s is not a known routing domain: create it first", sn.RoutingDomainID)
		}
		if r[1] != nil {
			return sn, existsf("VirtualSubnetID %d already exists in routing domain %s: use another VSID", sn.VirtualSubnetID, r[1].value)
		}
		rd, err := decode[policyapi.RoutingDomain](r[0])
		if err != nil {
			return sn, err
		}
		sn.CustomerID = rd.CustomerID
		others, _, err := s.rangeOf(ctx, subnetsKey(sn.RoutingDomainID), rev)
		if err != nil {
			return sn, err
		}
		for _, o := range others {
			other, err := decode[policyapi.Subnet](o)
			if err != nil {
				return sn, err
			}
			for _, p := range sn.Prefixes {
				for _, q := range other.Prefixes {
					if p.Overlaps(q) {
						return sn, existsf("Prefixes %s overlaps %s of VirtualSubnetID %d in the same routing domain: give a disjoint prefix", p, q, other.VirtualSubnetID)
					}
				}
			}
		}
		if err := s.checkPoolsFree(ctx, &sn, rev); err != nil {
			return sn, err
		}
		_, err = s.commit(ctx, []clientv3.Cmp{
			unchanged(rdKey(sn.RoutingDomainID), r[0]),
			unchanged(vsidIdxKey(sn.VirtualSubnetID), nil),
			clientv3.Compare(clientv3.ModRevision(subnetsKey(sn.RoutingDomainID)), "<", rev+1).WithPrefix(),
			// No host may register a PA inside the pool meanwhile.
			clientv3.Compare(clientv3.ModRevision(Prefix+"hosts/"), "<", rev+1).WithPrefix(),
		},
			clientv3.OpPut(subnetKey(sn.RoutingDomainID, sn.VirtualSubnetID), encode(sn)),
			clientv3.OpPut(vsidIdxKey(sn.VirtualSubnetID), sn.RoutingDomainID.String()))
		return sn, err
	})
}

// subnet reads the subnet of vsid with its key's state.
func (s *Store) subnet(ctx context.Context, vsid policy.VSID) (policyapi.Subnet, *kv, error) {
	r, rev, err := s.reads(ctx, vsidIdxKey(vsid))
	if err != nil {
		return policyapi.Subnet{}, nil, err
	}
	if r[0] == nil {
		return policyapi.Subnet{}, nil, notFoundf("VirtualSubnetID %d is not a known subnet: create the subnet first", vsid)
	}
	rd, err := policy.ParseGUID(string(r[0].value))
	if err != nil {
		return policyapi.Subnet{}, nil, fmt.Errorf("index of VirtualSubnetID %d is damaged: %w", vsid, err)
	}
	kvs, _, err := s.rangeOf(ctx, subnetKey(rd, vsid), rev)
	if err != nil {
		return policyapi.Subnet{}, nil, err
	}
	if len(kvs) != 1 {
		return policyapi.Subnet{}, nil, errRetry
	}
	sn, err := decode[policyapi.Subnet](kvs[0])
	return sn, kvs[0], err
}

func (s *Store) Subnet(ctx context.Context, vsid policy.VSID) (policyapi.Subnet, error) {
	return retry(ctx, "reading the subnet", func() (policyapi.Subnet, error) {
		sn, _, err := s.subnet(ctx, vsid)
		return sn, err
	})
}

// Subnets lists the subnets of rd, or all of them for the zero GUID.
func (s *Store) Subnets(ctx context.Context, rd policy.GUID) ([]policyapi.Subnet, error) {
	p := Prefix + "subnets/"
	if !rd.IsZero() {
		p = subnetsKey(rd)
	}
	kvs, _, err := s.rangeOf(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	return listOf[policyapi.Subnet](kvs)
}

func (s *Store) DeleteSubnet(ctx context.Context, vsid policy.VSID) error {
	_, err := retry(ctx, "deleting the subnet", func() (struct{}, error) {
		sn, k, err := s.subnet(ctx, vsid)
		if err != nil {
			return struct{}{}, err
		}
		if m, err := s.firstMember(ctx, subnetMembers(vsid)); err != nil || m != "" {
			kind, name, _ := strings.Cut(m, "/")
			return struct{}{}, cmpErr(err, existsf("VirtualSubnetID %d still has %s %s: delete it first", vsid, kindWord(kind), name))
		}
		key := subnetKey(sn.RoutingDomainID, vsid)
		_, err = s.commit(ctx, []clientv3.Cmp{unchanged(key, k), emptyPrefix(subnetMembers(vsid))},
			clientv3.OpDelete(key), clientv3.OpDelete(vsidIdxKey(vsid)))
		return struct{}{}, err
	})
	return err
}

func kindWord(kind string) string {
	if kind == "gateway" {
		return "gateway"
	}
	return "VM"
}
