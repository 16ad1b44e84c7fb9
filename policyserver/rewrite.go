package policyserver

import (
	"context"
	"hash/fnv"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/policyapi"
)

// IP Rewrite subnets. A Nat subnet's VMs get a PA per CA from the subnet's
// pool (ProviderPrefixes). Host PAs and allocated PAs share one index,
// idx/pa/<pa>: a host's PA holds the host's name, an allocated one the
// owning "vm/<name>", so a PA is never given twice, to a host or a VM, and
// it is claimed in the same Txn that creates the VM.

// checkRule normalizes and checks a subnet's Rule and ProviderPrefixes.
func checkRule(s *policyapi.Subnet) error {
	switch strings.ToLower(string(s.Rule)) {
	case "", "encap", "translationmethodencap":
		s.Rule = policyapi.RuleEncap
		if len(s.ProviderPrefixes) > 0 {
			return invalidf("ProviderPrefixes %s is given but Rule is Encap: a PA pool is for Rule Nat (IP Rewrite) only", prefixList(s.ProviderPrefixes))
		}
		return nil
	case "nat", "translationmethodnat":
		s.Rule = policyapi.RuleNat
	default:
		return invalidf("Rule %q is not supported: use Encap or Nat", s.Rule)
	}
	if len(s.ProviderPrefixes) == 0 {
		return invalidf("ProviderPrefixes is empty but Rule is Nat: give the pool its VMs' PAs come from, one provider prefix per family of Prefixes, such as 198.18.64.0/24")
	}
	for i, p := range s.ProviderPrefixes {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return invalidf("ProviderPrefixes %s is malformed: use a prefix such as 198.18.64.0/24 or fd01:64::/64", p)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if m := p.Masked(); m != p {
			return invalidf("ProviderPrefixes %s has host bits set: use %s", p, m)
		}
		if p.Addr().BitLen()-p.Bits() < 2 {
			return invalidf("ProviderPrefixes %s is too small: give a pool of IPv4 /30 or shorter, IPv6 /126 or shorter", p)
		}
		if a := p.Addr(); a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
			return invalidf("ProviderPrefixes %s is not unicast provider space: use a prefix of the provider network", p)
		}
		if !slices.ContainsFunc(s.Prefixes, func(q netip.Prefix) bool { return q.Addr().Is4() == p.Addr().Is4() }) {
			return invalidf("ProviderPrefixes %s is of the wrong family: the subnet has no %s prefix, and IP Rewrite cannot swap a CA for a PA of another family", p, family(p.Addr()))
		}
		for _, q := range s.ProviderPrefixes[:i] {
			if q.Addr().Is4() == p.Addr().Is4() {
				return invalidf("ProviderPrefixes %s is a second %s pool (after %s): give one pool per family", p, family(p.Addr()), q)
			}
		}
		s.ProviderPrefixes[i] = p
	}
	for _, q := range s.Prefixes {
		if poolOf(s, q.Addr()) == (netip.Prefix{}) {
			return invalidf("ProviderPrefixes has no %s pool for Prefixes %s: give one provider prefix per family of Prefixes", family(q.Addr()), q)
		}
	}
	return nil
}

// poolOf is the pool of the Nat subnet s for CAs of ca's family.
func poolOf(s *policyapi.Subnet, ca netip.Addr) netip.Prefix {
	for _, p := range s.ProviderPrefixes {
		if p.Addr().Is4() == ca.Is4() {
			return p
		}
	}
	return netip.Prefix{}
}

// checkPoolsFree refuses pools that hold a registered host's PA: every
// packet to an allocated PA is its VM's.
func (s *Store) checkPoolsFree(ctx context.Context, sn *policyapi.Subnet, rev int64) error {
	if !sn.Nat() {
		return nil
	}
	hosts, _, err := s.rangeOf(ctx, Prefix+"hosts/", rev)
	if err != nil {
		return err
	}
	for _, k := range hosts {
		h, err := decode[policyapi.Host](k)
		if err != nil {
			return err
		}
		for _, p := range sn.ProviderPrefixes {
			for _, pa := range h.ProviderAddresses {
				if p.Contains(pa) {
					return existsf("ProviderPrefixes %s holds PA %s of host %s: give a pool no host's PA is in", p, pa, h.Name)
				}
			}
		}
	}
	return nil
}

// checkHostOutsidePools refuses host PAs inside the pool of a Nat subnet.
func (s *Store) checkHostOutsidePools(ctx context.Context, h *policyapi.Host, rev int64) error {
	subnets, _, err := s.rangeOf(ctx, Prefix+"subnets/", rev)
	if err != nil {
		return err
	}
	for _, k := range subnets {
		sn, err := decode[policyapi.Subnet](k)
		if err != nil {
			return err
		}
		for _, pa := range h.ProviderAddresses {
			if p := poolOf(&sn, pa); p.Contains(pa) {
				return existsf("ProviderAddresses %s is in ProviderPrefixes %s of VirtualSubnetID %d, the IP Rewrite pool of its VMs: give the host a PA outside it", pa, p, sn.VirtualSubnetID)
			}
		}
	}
	return nil
}

// allocate picks a free PA for each CA of vm from the pools of its Nat
// subnet and returns them with the compares and puts that claim them for
// owner. used is the PA index as read.
func allocate(sn *policyapi.Subnet, vm *policyapi.VM, used map[netip.Addr]bool, owner string) ([]netip.Prefix, []clientv3.Cmp, []clientv3.Op, error) {
	var pas []netip.Prefix
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	taken := func(a netip.Addr) bool {
		return used[a] || slices.ContainsFunc(pas, func(p netip.Prefix) bool { return p.Addr() == a })
	}
	for _, ca := range vm.CustomerAddresses {
		pool := poolOf(sn, ca)
		pa, ok := freeIn(pool, vm.Name+"/"+ca.String(), len(used)+len(pas), taken)
		if !ok {
			return nil, nil, nil, conflictf("ProviderPrefixes %s of VirtualSubnetID %d is exhausted: no free PA for CustomerAddresses %s; delete a VM of the subnet or create the VM in a subnet with a larger pool",
				pool, sn.VirtualSubnetID, ca)
		}
		pas = append(pas, netip.PrefixFrom(pa, pool.Bits()))
		cmps = append(cmps, unchanged(paIdxKey(pa), nil))
		ops = append(ops, clientv3.OpPut(paIdxKey(pa), owner))
	}
	return pas, cmps, ops, nil
}

// freeIn returns a host address of pool that taken refuses, searching from
// a start derived from seed (so that concurrent creates seldom race for
// the same PA) and wrapping around. At most nTaken+1 candidates are looked
// at: with nTaken addresses taken, one of them is free if any is.
func freeIn(pool netip.Prefix, seed string, nTaken int, taken func(netip.Addr) bool) (netip.Addr, bool) {
	first := pool.Addr().Next() // the network address (IPv6: subnet-router anycast) is no host's
	last := lastAddr(pool)
	if pool.Addr().Is4() {
		last = last.Prev() // the broadcast address
	}
	size := new(big.Int).Sub(addrInt(last), addrInt(first))
	size.Add(size, big.NewInt(1))
	h := fnv.New64a()
	h.Write([]byte(seed))
	off := new(big.Int).Mod(new(big.Int).SetUint64(h.Sum64()), size)
	n := int64(nTaken) + 1
	if size.IsInt64() && size.Int64() < n {
		n = size.Int64()
	}
	for i := range n {
		idx := new(big.Int).Add(off, big.NewInt(i))
		idx.Mod(idx, size)
		a := intAddr(new(big.Int).Add(addrInt(first), idx), pool.Addr().Is4())
		if !taken(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func addrInt(a netip.Addr) *big.Int {
	b := a.As16()
	return new(big.Int).SetBytes(b[:])
}

func intAddr(i *big.Int, v4 bool) netip.Addr {
	var b [16]byte
	i.FillBytes(b[:])
	a := netip.AddrFrom16(b)
	if v4 {
		return a.Unmap()
	}
	return a
}

// usedPAs reads the PA index: host PAs and allocated PAs.
func (s *Store) usedPAs(ctx context.Context) (map[netip.Addr]bool, error) {
	kvs, _, err := s.rangeOf(ctx, Prefix+"idx/pa/", 0)
	if err != nil {
		return nil, err
	}
	used := make(map[netip.Addr]bool, len(kvs))
	for _, k := range kvs {
		if a, err := netip.ParseAddr(strings.TrimPrefix(k.key, Prefix+"idx/pa/")); err == nil {
			used[a] = true
		}
	}
	return used, nil
}

// releaseOps frees the PAs allocated to vm.
func releaseOps(vm *policyapi.VM) []clientv3.Op {
	ops := make([]clientv3.Op, len(vm.RewriteAddresses))
	for i, p := range vm.RewriteAddresses {
		ops[i] = clientv3.OpDelete(paIdxKey(p.Addr()))
	}
	return ops
}
