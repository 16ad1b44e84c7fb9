package policyserver

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// VMs and gateways. Creating one claims, in the same Txn, the index keys of
// its CAs (rec/<rd>/ca/<ca>, which also hold the derived records) and MAC
// (idx/mac/<rd>/<mac>) in its routing domain, and its membership keys under
// its host and subnet.

// placement is what a VM or gateway is placed against: its subnet and host
// as read, with their keys' state for the Txn compares.
type placement struct {
	subnet   policyapi.Subnet
	subnetKV *kv
	host     policyapi.Host
	hostKV   *kv
	pa       netip.Addr
}

func (s *Store) place(ctx context.Context, vsid policy.VSID, host string) (placement, error) {
	var p placement
	sn, skv, err := s.subnet(ctx, vsid)
	if err != nil {
		return p, err
	}
	r, _, err := s.reads(ctx, hostKey(host))
	if err != nil {
		return p, err
	}
	if r[0] == nil {
		return p, notFoundf("Host %s is not a registered host: register it (its host agent does) first", host)
	}
	h, err := decode[policyapi.Host](r[0])
	if err != nil {
		return p, err
	}
	return placement{subnet: sn, subnetKV: skv, host: h, hostKV: r[0], pa: h.ProviderAddresses[0]}, nil
}

// claim checks that the CAs and MAC are free in the routing domain and
// returns the compares and puts that take them for owner ("vm/x").
func (s *Store) claim(ctx context.Context, rd policy.GUID, cas []netip.Addr, mac packet.MAC, owner string) ([]clientv3.Cmp, error) {
	keys := []string{macIdxKey(rd, mac)}
	for _, ca := range cas {
		keys = append(keys, recKey(rd, ca))
	}
	r, _, err := s.reads(ctx, keys...)
	if err != nil {
		return nil, err
	}
	if r[0] != nil {
		return nil, existsf("MACAddress %s is already used by %s in routing domain %s: give each VM its own MAC", mac, ownerText(string(r[0].value)), rd)
	}
	for i, ca := range cas {
		if r[i+1] != nil {
			rec, err := decode[policy.LookupRecord](r[i+1])
			if err != nil {
				return nil, err
			}
			return nil, existsf("CustomerAddresses %s is already used by %s in routing domain %s: use a free address", ca, rec.VMName, rd)
		}
	}
	cmps := make([]clientv3.Cmp, len(keys))
	for i, k := range keys {
		cmps[i] = unchanged(k, nil)
	}
	return cmps, nil
}

func ownerText(owner string) string {
	kind, name, _ := strings.Cut(owner, "/")
	return kindWord(kind) + " " + name
}

// placeOps writes the records and membership keys of an object placed on
// host; the MAC index is written by the caller.
func placeOps(rd policy.GUID, recs []policy.LookupRecord, host string, vsid policy.VSID, owner string) []clientv3.Op {
	return append(recOps(rd, recs),
		clientv3.OpPut(hostMembers(host)+owner, ""),
		clientv3.OpPut(subnetMembers(vsid)+owner, ""))
}

// recOps writes records, each at the key of its CA (an L2Only record at
// its MAC's).
func recOps(rd policy.GUID, recs []policy.LookupRecord) []clientv3.Op {
	ops := make([]clientv3.Op, len(recs))
	for i, r := range recs {
		k := recKey(rd, r.CustomerAddress)
		if r.Type == policy.L2Only {
			k = l2RecKey(rd, r.MACAddress, r.CustomerAddress)
		}
		ops[i] = clientv3.OpPut(k, encode(r))
	}
	return ops
}

func unplaceOps(rd policy.GUID, cas []netip.Addr, mac packet.MAC, host string, vsid policy.VSID, owner string) []clientv3.Op {
	ops := []clientv3.Op{
		clientv3.OpDelete(macIdxKey(rd, mac)),
		clientv3.OpDelete(hostMembers(host) + owner),
		clientv3.OpDelete(subnetMembers(vsid) + owner),
		clientv3.OpDelete(l2RecKey(rd, mac, netip.IPv4Unspecified())),
		clientv3.OpDelete(l2RecKey(rd, mac, netip.IPv6Unspecified())),
	}
	for _, ca := range cas {
		ops = append(ops, clientv3.OpDelete(recKey(rd, ca)))
	}
	return ops
}

func (s *Store) CreateVM(ctx context.Context, vm policyapi.VM) (policyapi.VM, error) {
	if err := checkVM(&vm); err != nil {
		return vm, err
	}
	vm.PreviousHost, vm.PreviousProviderAddress, vm.MigratedAt = "", netip.Addr{}, time.Time{}
	return retry(ctx, "creating the VM", func() (policyapi.VM, error) {
		r, _, err := s.reads(ctx, vmKey(vm.Name))
		if err != nil {
			return vm, err
		}
		if r[0] != nil {
			return vm, existsf("VM %s already exists: use another name", vm.Name)
		}
		p, err := s.place(ctx, vm.VirtualSubnetID, vm.Host)
		if err != nil {
			return vm, err
		}
		for _, ca := range vm.CustomerAddresses {
			if err := checkCA(ca, &p.subnet); err != nil {
				return vm, err
			}
		}
		vm.RoutingDomainID, vm.CustomerID, vm.ProviderAddress = p.subnet.RoutingDomainID, p.subnet.CustomerID, p.pa
		vm.CreatedAt = s.now().UTC()
		owner := member("vm", vm.Name)
		cmps, err := s.claim(ctx, vm.RoutingDomainID, vm.CustomerAddresses, vm.MACAddress, owner)
		if err != nil {
			return vm, err
		}
		var paOps []clientv3.Op
		vm.RewriteAddresses = nil
		if p.subnet.Nat() {
			if vm.L2Only {
				return vm, invalidf("L2Only is set but VirtualSubnetID %d uses Rule Nat: IP Rewrite needs a PA per CA, which a VM that configures its CAs itself cannot have; use an Encap subnet", vm.VirtualSubnetID)
			}
			used, err := s.usedPAs(ctx)
			if err != nil {
				return vm, err
			}
			pas, paCmps, ops, err := allocate(&p.subnet, &vm, used, owner)
			if err != nil {
				return vm, err
			}
			vm.RewriteAddresses, cmps, paOps = pas, append(cmps, paCmps...), ops
		}
		cmps = append(cmps, unchanged(vmKey(vm.Name), nil),
			unchanged(subnetKey(vm.RoutingDomainID, vm.VirtualSubnetID), p.subnetKV), unchanged(hostKey(vm.Host), p.hostKV))
		ops := append(placeOps(vm.RoutingDomainID, RecordsFor(&vm), vm.Host, vm.VirtualSubnetID, owner),
			clientv3.OpPut(vmKey(vm.Name), encode(vm)),
			clientv3.OpPut(macIdxKey(vm.RoutingDomainID, vm.MACAddress), owner))
		_, err = s.commit(ctx, cmps, append(ops, paOps...)...)
		return vm, err
	})
}

func (s *Store) vm(ctx context.Context, name string) (policyapi.VM, *kv, error) {
	r, _, err := s.reads(ctx, vmKey(name))
	if err != nil {
		return policyapi.VM{}, nil, err
	}
	if r[0] == nil {
		return policyapi.VM{}, nil, notFoundf("VM %s does not exist", name)
	}
	vm, err := decode[policyapi.VM](r[0])
	return vm, r[0], err
}

func (s *Store) VM(ctx context.Context, name string) (policyapi.VM, error) {
	vm, _, err := s.vm(ctx, name)
	return vm, err
}

// VMs lists the VMs matching f, by name.
func (s *Store) VMs(ctx context.Context, f policyapi.VMFilter) ([]policyapi.VM, error) {
	var kvs []*kv
	if f.Host == "" && f.VirtualSubnetID == 0 {
		all, _, err := s.rangeOf(ctx, Prefix+"vms/", 0)
		if err != nil {
			return nil, err
		}
		kvs = all
	} else {
		prefix := hostMembers(f.Host)
		if f.Host == "" {
			prefix = subnetMembers(f.VirtualSubnetID)
		}
		ms, rev, err := s.rangeOf(ctx, prefix+"vm/", 0)
		if err != nil {
			return nil, err
		}
		for chunk := range slices.Chunk(ms, 100) {
			keys := make([]string, len(chunk))
			for i, m := range chunk {
				keys[i] = vmKey(memberName(m.key, prefix+"vm/"))
			}
			got, err := s.readsAt(ctx, rev, keys...)
			if err != nil {
				return nil, err
			}
			kvs = append(kvs, got...)
		}
	}
	out := make([]policyapi.VM, 0, len(kvs))
	for _, k := range kvs {
		if k == nil {
			continue
		}
		vm, err := decode[policyapi.VM](k)
		if err != nil {
			return nil, err
		}
		if (f.Host == "" || vm.Host == f.Host) && (f.VirtualSubnetID == 0 || vm.VirtualSubnetID == f.VirtualSubnetID) &&
			(f.RoutingDomainID.IsZero() || vm.RoutingDomainID == f.RoutingDomainID) {
			out = append(out, vm)
		}
	}
	return out, nil
}

// readsAt is reads at revision rev.
func (s *Store) readsAt(ctx context.Context, rev int64, keys ...string) ([]*kv, error) {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k, clientv3.WithRev(rev))
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, etcdError(err)
	}
	out := make([]*kv, len(keys))
	for i, r := range resp.Responses {
		if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
			out[i] = &kv{key: keys[i], value: kvs[0].Value, mod: kvs[0].ModRevision}
		}
	}
	return out, nil
}

func (s *Store) DeleteVM(ctx context.Context, name string) error {
	_, err := retry(ctx, "deleting the VM", func() (struct{}, error) {
		vm, k, err := s.vm(ctx, name)
		if err != nil {
			return struct{}{}, err
		}
		ops := append(unplaceOps(vm.RoutingDomainID, vm.CustomerAddresses, vm.MACAddress, vm.Host, vm.VirtualSubnetID, member("vm", name)),
			clientv3.OpDelete(vmKey(name)))
		ops = append(ops, releaseOps(&vm)...)
		// What its hosts learned of it goes with it.
		learned, _, err := s.learnedOf(ctx, vm.RoutingDomainID)
		if err != nil {
			return struct{}{}, err
		}
		for _, l := range learned {
			if l.MACAddress == vm.MACAddress {
				ops = append(ops, clientv3.OpDelete(learnedKey(vm.RoutingDomainID, l.CustomerAddress)))
			}
		}
		_, err = s.commit(ctx, []clientv3.Cmp{unchanged(vmKey(name), k)}, ops...)
		return struct{}{}, err
	})
	return err
}

// MigrateVM moves the VM to host, which must be alive: its records point
// at the new host's PA and it remembers the host it left.
func (s *Store) MigrateVM(ctx context.Context, name, host string) (policyapi.VM, error) {
	if err := checkName("Host", host); err != nil {
		return policyapi.VM{}, err
	}
	return retry(ctx, "migrating the VM", func() (policyapi.VM, error) {
		vm, k, err := s.vm(ctx, name)
		if err != nil {
			return vm, err
		}
		if host == vm.Host {
			return vm, invalidf("Host %s is the VM's own host: migrate VM %s to another host", host, name)
		}
		r, _, err := s.reads(ctx, hostKey(host), aliveKey(host))
		if err != nil {
			return vm, err
		}
		if r[0] == nil {
			return vm, notFoundf("Host %s is not a registered host: register it (its host agent does) first", host)
		}
		if r[1] == nil {
			return vm, conflictf("Host %s is not alive (no heartbeat within its TTL): migrate VM %s to a live host", host, name)
		}
		h, err := decode[policyapi.Host](r[0])
		if err != nil {
			return vm, err
		}
		owner := member("vm", name)
		vm.PreviousHost, vm.PreviousProviderAddress, vm.MigratedAt = vm.Host, vm.ProviderAddress, s.now().UTC()
		ops := []clientv3.Op{clientv3.OpDelete(hostMembers(vm.Host) + owner)}
		vm.Host, vm.ProviderAddress = host, h.ProviderAddresses[0]
		ops = append(ops, placeOps(vm.RoutingDomainID, RecordsFor(&vm), vm.Host, vm.VirtualSubnetID, owner)...)
		ops = append(ops, clientv3.OpPut(vmKey(name), encode(vm)))
		_, err = s.commit(ctx, []clientv3.Cmp{unchanged(vmKey(name), k), unchanged(hostKey(host), r[0]), unchanged(aliveKey(host), r[1])}, ops...)
		return vm, err
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Gateways.

func (s *Store) CreateGateway(ctx context.Context, g policyapi.Gateway) (policyapi.Gateway, error) {
	if err := checkGateway(&g); err != nil {
		return g, err
	}
	return retry(ctx, "creating the gateway", func() (policyapi.Gateway, error) {
		r, _, err := s.reads(ctx, gatewayKey(g.Name))
		if err != nil {
			return g, err
		}
		if r[0] != nil {
			return g, existsf("gateway %s already exists: use another name", g.Name)
		}
		p, err := s.place(ctx, g.VirtualSubnetID, g.Host)
		if err != nil {
			return g, err
		}
		for i, ca := range g.CustomerAddresses() {
			if err := checkCA(ca, &p.subnet); err != nil {
				return g, invalidf("CustomerAddress%s%s", []string{"", "6"}[i], strings.TrimPrefix(err.Error(), "CustomerAddresses"))
			}
		}
		gws := subnetMembers(g.VirtualSubnetID) + "gateway/"
		if other, err := s.firstMember(ctx, gws); err != nil || other != "" {
			return g, cmpErr(err, existsf("VirtualSubnetID %d already has gateway %s: a subnet has one gateway, delete it first", g.VirtualSubnetID, other))
		}
		g.RoutingDomainID, g.CustomerID, g.ProviderAddress = p.subnet.RoutingDomainID, p.subnet.CustomerID, p.pa
		owner := member("gateway", g.Name)
		cmps, err := s.claim(ctx, g.RoutingDomainID, g.CustomerAddresses(), g.MACAddress, owner)
		if err != nil {
			return g, err
		}
		cmps = append(cmps, unchanged(gatewayKey(g.Name), nil), emptyPrefix(gws),
			unchanged(subnetKey(g.RoutingDomainID, g.VirtualSubnetID), p.subnetKV), unchanged(hostKey(g.Host), p.hostKV))
		ops := append(placeOps(g.RoutingDomainID, GatewayStaticRecords(&g), g.Host, g.VirtualSubnetID, owner),
			clientv3.OpPut(gatewayKey(g.Name), encode(g)),
			clientv3.OpPut(macIdxKey(g.RoutingDomainID, g.MACAddress), owner))
		_, err = s.commit(ctx, cmps, ops...)
		return g, err
	})
}

func (s *Store) gateway(ctx context.Context, name string) (policyapi.Gateway, *kv, error) {
	r, _, err := s.reads(ctx, gatewayKey(name))
	if err != nil {
		return policyapi.Gateway{}, nil, err
	}
	if r[0] == nil {
		return policyapi.Gateway{}, nil, notFoundf("gateway %s does not exist", name)
	}
	g, err := decode[policyapi.Gateway](r[0])
	return g, r[0], err
}

func (s *Store) Gateway(ctx context.Context, name string) (policyapi.Gateway, error) {
	g, _, err := s.gateway(ctx, name)
	return g, err
}

func (s *Store) Gateways(ctx context.Context) ([]policyapi.Gateway, error) {
	kvs, _, err := s.rangeOf(ctx, Prefix+"gateways/", 0)
	if err != nil {
		return nil, err
	}
	return listOf[policyapi.Gateway](kvs)
}

func (s *Store) DeleteGateway(ctx context.Context, name string) error {
	_, err := retry(ctx, "deleting the gateway", func() (struct{}, error) {
		g, k, err := s.gateway(ctx, name)
		if err != nil {
			return struct{}{}, err
		}
		ops := append(unplaceOps(g.RoutingDomainID, g.CustomerAddresses(), g.MACAddress, g.Host, g.VirtualSubnetID, member("gateway", name)),
			clientv3.OpDelete(gatewayKey(name)))
		_, err = s.commit(ctx, []clientv3.Cmp{unchanged(gatewayKey(name), k)}, ops...)
		return struct{}{}, err
	})
	return err
}

// Host-facing reads.

// Policy reads the subnets, records and gateways of rd in one Txn, so at
// one revision.
func (s *Store) Policy(ctx context.Context, rd policy.GUID) (policyapi.Policy, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(rdKey(rd)),
		clientv3.OpGet(subnetsKey(rd), clientv3.WithPrefix()),
		clientv3.OpGet(recsKey(rd), clientv3.WithPrefix()),
		clientv3.OpGet(Prefix+"gateways/", clientv3.WithPrefix()),
		clientv3.OpGet(learnedPrefix(rd), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return policyapi.Policy{}, etcdError(err)
	}
	rs := resp.Responses
	if len(rs[0].GetResponseRange().Kvs) == 0 {
		return policyapi.Policy{}, notFoundf("routing domain %s does not exist", rd)
	}
	conv := func(i int) []*kv {
		src := rs[i].GetResponseRange().Kvs
		out := make([]*kv, len(src))
		for j, x := range src {
			out[j] = &kv{key: string(x.Key), value: x.Value}
		}
		return out
	}
	subnets, err := listOf[policyapi.Subnet](conv(1))
	if err != nil {
		return policyapi.Policy{}, err
	}
	recs, err := listOf[policy.LookupRecord](conv(2))
	if err != nil {
		return policyapi.Policy{}, err
	}
	gws, err := listOf[policyapi.Gateway](conv(3))
	if err != nil {
		return policyapi.Policy{}, err
	}
	gws = slices.DeleteFunc(gws, func(g policyapi.Gateway) bool { return g.RoutingDomainID != rd })
	learned, err := listOf[policyapi.Learned](conv(4))
	if err != nil {
		return policyapi.Policy{}, err
	}
	return PolicyFor(rd, resp.Header.Revision, subnets, recs, gws, learned), nil
}

// Lookup answers the record of ca in the routing domain of vsid.
func (s *Store) Lookup(ctx context.Context, vsid policy.VSID, ca netip.Addr) (policyapi.LookupAnswer, error) {
	ca = ca.Unmap()
	r, _, err := s.reads(ctx, vsidIdxKey(vsid))
	if err != nil {
		return policyapi.LookupAnswer{}, err
	}
	if r[0] == nil {
		return policyapi.LookupAnswer{}, notFoundf("VirtualSubnetID %d is not a known subnet", vsid)
	}
	rd, err := policy.ParseGUID(string(r[0].value))
	if err != nil {
		return policyapi.LookupAnswer{}, err
	}
	r, rev, err := s.reads(ctx, recKey(rd, ca), learnedKey(rd, ca))
	if err != nil {
		return policyapi.LookupAnswer{}, err
	}
	var rec policy.LookupRecord
	switch {
	case r[0] != nil:
		rec, err = decode[policy.LookupRecord](r[0])
	case r[1] != nil:
		var l policyapi.Learned
		if l, err = decode[policyapi.Learned](r[1]); err == nil {
			rec = LearnedRecords(&l)[0]
		}
	default:
		return policyapi.LookupAnswer{}, notFoundf("CustomerAddress %s has no lookup record in the routing domain of VirtualSubnetID %d", ca, vsid)
	}
	if err != nil {
		return policyapi.LookupAnswer{}, err
	}
	ans := policyapi.LookupAnswer{Revision: rev, Record: rec, Encapsulation: policyapi.NVGRE}
	sr, err := s.readsAt(ctx, rev, subnetKey(rd, rec.VirtualSubnetID))
	if err != nil {
		return ans, err
	}
	if sr[0] != nil {
		sn, err := decode[policyapi.Subnet](sr[0])
		if err != nil {
			return ans, err
		}
		ans.Encapsulation = sn.Encapsulation
	}
	return ans, nil
}
