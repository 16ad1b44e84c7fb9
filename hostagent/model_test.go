package hostagent

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
)

// Scenario tests of the pure model, after etcd raft's interaction tests: a
// harness plays the driver, answering each Ready from an in-memory host (a
// real policy.Store) and a scripted policy server, with time passed in.

var (
	rd1 = policy.MustParseGUID("{11111111-0000-0000-0000-000000000001}")
	rd2 = policy.MustParseGUID("{11111111-0000-0000-0000-000000000002}")
	rd3 = policy.MustParseGUID("{11111111-0000-0000-0000-000000000003}")
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	errNotFound    = &policy.Error{Kind: policy.ErrNotFound, Msg: "not found"}
	errUnavailable = errors.New("connection refused")
)

// vsidOf gives routing domain rdN the VSID 5000+N and CA space 10.N.0.0/24.
func vsidOf(rd policy.GUID) policy.VSID { return policy.VSID(5000 + int(rd[15])) }

func ca(rd policy.GUID, host byte) netip.Addr { return netip.AddrFrom4([4]byte{10, rd[15], 0, host}) }

func rec(rd policy.GUID, host byte, pa string) policy.LookupRecord {
	return policy.LookupRecord{CustomerAddress: ca(rd, host), VirtualSubnetID: vsidOf(rd), MACAddress: packet.MAC{2, 0, 0, 0, rd[15], host},
		ProviderAddress: netip.MustParseAddr(pa), Rule: policy.TranslationMethodEncap}
}

func route(rd policy.GUID) policy.CustomerRoute {
	return policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: vsidOf(rd), DestinationPrefix: netip.PrefixFrom(ca(rd, 0), 24)}
}

func pol(rd policy.GUID, rev int64, recs ...policy.LookupRecord) policyapi.Policy {
	return policyapi.Policy{RoutingDomainID: rd, Revision: rev, Records: recs, Routes: []policy.CustomerRoute{route(rd)},
		Subnets: []policyapi.Subnet{{VirtualSubnetID: vsidOf(rd), RoutingDomainID: rd, Encapsulation: policyapi.NVGRE}}}
}

func vm(name string, rd policy.GUID, host string, n byte) policyapi.VM {
	r := rec(rd, n, "198.18.0.1")
	return policyapi.VM{Name: name, MACAddress: r.MACAddress, CustomerAddresses: []netip.Addr{r.CustomerAddress}, VirtualSubnetID: r.VirtualSubnetID,
		Host: host, RoutingDomainID: rd}
}

// fakeHost is wnvd as the model sees it: a policy store, ports, interfaces.
type fakeHost struct {
	store   *policy.Store
	ports   map[string]provider.Port
	ifaces  map[string]bool
	applied []policy.Batch
	detach  []Detach
}

func newFakeHost() *fakeHost {
	return &fakeHost{store: policy.NewStore(), ports: map[string]provider.Port{}, ifaces: map[string]bool{}}
}

func (f *fakeHost) read() HostRead {
	var ports []provider.Port
	for _, name := range sortedKeys(f.ports) {
		ports = append(ports, f.ports[name])
	}
	return HostRead{Ports: ports, Records: f.store.LookupRecords(policy.LookupRecordFilter{}),
		Routes: f.store.CustomerRoutes(policy.CustomerRouteFilter{}), Subnets: f.store.VirtualSubnets(policy.VirtualSubnetFilter{}),
		PAs: f.store.ProviderAddresses(policy.ProviderAddressFilter{})}
}

func (f *fakeHost) apply(a Apply) Applied {
	var out Applied
	if !batchEmpty(a.Batch) {
		f.applied = append(f.applied, a.Batch)
		out.Batch = f.store.Apply(a.Batch)
	}
	if len(a.RemovePAs) > 0 {
		_, out.PAs = f.store.RemoveProviderAddresses(policy.ProviderAddressFilter{ProviderAddress: a.RemovePAs})
	}
	for _, pa := range a.AddPAs {
		pa.AddressState = policy.AddressTentative // until detection says more
		if _, err := f.store.AddProviderAddress(pa); err != nil {
			out.PAs = err
		}
	}
	f.detach = append(f.detach, a.Detach...)
	for _, d := range a.Detach {
		delete(f.ports, d.Name)
		out.Ports = append(out.Ports, PortResult{Name: d.Name})
	}
	for _, s := range a.Attach {
		var err error
		if f.ifaces[s.Interface] {
			f.ports[s.Name] = provider.Port{PortSpec: s}
		} else {
			err = errNotFound
		}
		out.Ports = append(out.Ports, PortResult{Name: s.Name, Attach: true, Err: err})
	}
	return out
}

// harness drives a model at a time of its own.
type harness struct {
	t    *testing.T
	m    *Model
	now  time.Time
	host *fakeHost
	// server is the policy server's state: VMs and each routing domain's
	// policy; lookups answer from its records.
	vms      []policyapi.VM
	policies map[policy.GUID]policyapi.Policy
	watch    *WatchSpec // the stream open
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	m := NewModel(ModelConfig{Host: "h1", MigrationGrace: 5 * time.Second, NegativeTTL: time.Second,
		MaxLookups: 4, QueuePerVSID: 64, QueueTotal: 4096, MaxPolicyFetches: 4, InterfaceRetry: time.Second,
		RetryMin: 100 * time.Millisecond, RetryMax: 5 * time.Second, Rand: func() float64 { return 0 }})
	return &harness{t: t, m: m, now: t0, host: newFakeHost(), policies: map[policy.GUID]policyapi.Policy{}}
}

func (h *harness) step(ev Event) { h.m.Step(h.now, ev) }

func (h *harness) ready() Ready {
	r := h.m.Ready(h.now)
	if r.Watch != nil {
		h.watch = r.Watch
	}
	return r
}

// settle answers every Ready from the fakes until the model asks for
// nothing more, and returns the Readys it went through.
func (h *harness) settle() []Ready {
	h.t.Helper()
	var all []Ready
	for i := 0; ; i++ {
		if i > 100 {
			h.t.Fatal("the model does not settle")
		}
		r := h.ready()
		r.Wake = time.Time{}
		if reflect.DeepEqual(r, Ready{}) {
			return all
		}
		all = append(all, r)
		h.answer(r)
	}
}

func (h *harness) answer(r Ready) {
	if r.Watch != nil {
		h.step(WatchEvent{Gen: r.Watch.Gen, Event: policyapi.Event{Type: policyapi.EventProgress, Revision: max(r.Watch.Rev, 10)}})
	}
	if r.ListVMs {
		var mine []policyapi.VM
		for _, vm := range h.vms {
			if vm.Host == "h1" {
				mine = append(mine, vm)
			}
		}
		h.step(VMsListed{VMs: mine})
	}
	for _, rd := range r.FetchPolicy {
		p, ok := h.policies[rd]
		var err error
		if !ok {
			err = errNotFound
		}
		h.step(PolicyFetched{RD: rd, Policy: p, Err: err})
	}
	for _, l := range r.Lookups {
		h.step(h.lookup(l))
	}
	for _, name := range r.ResolveVMs {
		ev := VMResolved{Name: name, Err: errNotFound}
		for _, vm := range h.vms {
			if vm.Name == name {
				ev = VMResolved{Name: name, VM: vm}
			}
		}
		h.step(ev)
	}
	if r.ReadHost {
		h.step(h.host.read())
	}
	if r.Apply != nil {
		h.step(h.host.apply(*r.Apply))
	}
	if r.FetchKeys {
		h.step(KeysFetched{Keys: []policyapi.RedirectKey{}})
	}
	if r.PushKeys != nil {
		h.step(KeysPushed{})
	}
}

func (h *harness) lookup(l Lookup) LookupDone {
	for _, p := range h.policies {
		for _, r := range p.Records {
			if r.VirtualSubnetID == l.VSID && r.CustomerAddress == l.CA {
				return LookupDone{VSID: l.VSID, CA: l.CA, Answer: policyapi.LookupAnswer{Record: r}}
			}
		}
	}
	return LookupDone{VSID: l.VSID, CA: l.CA, Err: errNotFound}
}

// start registers and settles with the server's state.
func (h *harness) start() {
	h.t.Helper()
	h.step(Registered{})
	h.settle()
}

func (h *harness) records() []policy.LookupRecord {
	return h.host.store.LookupRecords(policy.LookupRecordFilter{})
}

// put is the watch event of a VM put, moved from prev's host if prev is set.
func (h *harness) put(v policyapi.VM, prev *policyapi.VM, rev int64) {
	h.t.Helper()
	ev := policyapi.Event{Type: policyapi.EventPut, Kind: policyapi.KindVM, Revision: rev, Name: v.Name, RoutingDomainID: v.RoutingDomainID, VM: &v, PrevVM: prev}
	h.step(WatchEvent{Gen: h.watch.Gen, Event: ev})
}

func batchOf(rs []Ready) []policy.Batch {
	var out []policy.Batch
	for _, r := range rs {
		if r.Apply != nil && !batchEmpty(r.Apply.Batch) {
			out = append(out, r.Apply.Batch)
		}
	}
	return out
}

func TestReconcileInstallsTheExactDifferenceInOneBatchAndIsIdempotent(t *testing.T) {
	h := newHarness(t)
	h.vms = []policyapi.VM{vm("a", rd1, "h1", 10)}
	good, stale, missing := rec(rd1, 10, "198.18.0.1"), rec(rd1, 11, "198.18.0.2"), rec(rd1, 12, "198.18.0.3")
	moved := rec(rd1, 13, "198.18.0.4")
	h.policies[rd1] = pol(rd1, 10, good, missing, moved)
	// What the host has from before (its checkpoint): a record the server
	// no longer has, and one that moved since.
	must(t, h.host.store.Load(policy.Objects{CustomerRoutes: []policy.CustomerRoute{route(rd1)},
		LookupRecords: []policy.LookupRecord{good, stale, rec(rd1, 13, "198.18.0.9")}}))
	h.host.ifaces["a"] = true

	h.step(Registered{})
	rs := h.settle()
	want := policy.Batch{RemoveLookupRecords: []policy.LookupRecord{stale}, AddLookupRecords: []policy.LookupRecord{missing}, PutLookupRecords: []policy.LookupRecord{moved}}
	if got := batchOf(rs); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("batches %+v, want exactly one: %+v", got, want)
	}
	if got := h.records(); !reflect.DeepEqual(got, []policy.LookupRecord{good, missing, moved}) {
		t.Fatalf("host has %+v", got)
	}
	if _, ok := h.host.ports["a"]; !ok {
		t.Fatal("VM a's port was not attached")
	}

	// A second round with nothing new (an event repeating a level) reads
	// the host and changes nothing.
	h.put(h.vms[0], nil, 11)
	rs = h.settle()
	if len(rs) == 0 || !rs[0].ReadHost {
		t.Fatalf("an event did not lead to a reconcile: %+v", rs)
	}
	for _, r := range rs {
		if r.Apply != nil {
			t.Fatalf("the second round applies %+v, want nothing", *r.Apply)
		}
	}
}

func TestFailStaticKeepsPolicyWhileTheServerIsAway(t *testing.T) {
	h := newHarness(t)
	h.vms = []policyapi.VM{vm("a", rd1, "h1", 10)}
	held := []policy.LookupRecord{rec(rd1, 10, "198.18.0.1"), rec(rd1, 11, "198.18.0.2")}
	must(t, h.host.store.Load(policy.Objects{CustomerRoutes: []policy.CustomerRoute{route(rd1)}, LookupRecords: held}))
	h.host.ifaces["a"] = true
	// The list answers, the routing domain's policy does not.
	h.step(Registered{})
	for range 5 {
		for _, r := range h.settle() {
			if r.Apply != nil && (len(r.Apply.Batch.RemoveLookupRecords) > 0 || len(r.Apply.Batch.RemoveCustomerRoutes) > 0) {
				t.Fatalf("policy removed while the server was away: %+v", r.Apply.Batch)
			}
		}
		h.now = h.now.Add(10 * time.Second)
	}
	kept := slices.Clone(held)
	for i := range kept {
		kept[i].Unsynchronized = true
	}
	if got := h.records(); !reflect.DeepEqual(got, kept) {
		t.Fatalf("host has %+v, want what it held, Unsynchronized", got)
	}
	if _, ok := h.host.ports["a"]; !ok {
		t.Fatal("the port was not attached while the policy was missing")
	}
}

func TestALookupMissIsFetchedOnceCoalescedAndNegativelyCached(t *testing.T) {
	h := newHarness(t)
	h.vms = []policyapi.VM{vm("a", rd1, "h1", 10)}
	h.policies[rd1] = pol(rd1, 10, rec(rd1, 10, "198.18.0.1"))
	h.host.ifaces["a"] = true
	h.start()

	// Two notifications of the same miss: one lookup.
	miss := Notified{VSID: vsidOf(rd1), CA: ca(rd1, 20)}
	h.step(miss)
	h.step(miss)
	r := h.ready()
	if want := []Lookup{{vsidOf(rd1), ca(rd1, 20)}}; !reflect.DeepEqual(r.Lookups, want) {
		t.Fatalf("lookups %+v, want %+v", r.Lookups, want)
	}
	h.step(miss) // while in flight
	if r := h.ready(); len(r.Lookups) != 0 {
		t.Fatalf("a miss in flight is fetched again: %+v", r.Lookups)
	}

	// It fails: no lookup for it until the TTL is over, however often
	// the host asks.
	h.step(LookupDone{VSID: miss.VSID, CA: miss.CA, Err: errUnavailable})
	for range 100 {
		h.step(miss)
	}
	h.now = h.now.Add(999 * time.Millisecond)
	if r := h.ready(); len(r.Lookups) != 0 {
		t.Fatalf("a failed lookup is asked again within its TTL: %+v", r.Lookups)
	}
	h.now = h.now.Add(time.Millisecond)
	if r := h.ready(); !r.Wake.IsZero() && r.Wake.Before(h.now) {
		t.Fatalf("wake %v is in the past", r.Wake)
	}
	h.step(miss)
	r = h.ready()
	if len(r.Lookups) != 1 {
		t.Fatalf("after the TTL the miss is not fetched again: %+v", r.Lookups)
	}

	// Now the server has it: the answer is installed.
	found := rec(rd1, 20, "198.18.0.2")
	p := h.policies[rd1]
	p.Records = append(p.Records, found)
	h.policies[rd1] = p
	h.step(h.lookup(r.Lookups[0]))
	h.settle()
	if got := h.records(); !slices.Contains(got, found) {
		t.Fatalf("the fetched record is not installed: %+v", got)
	}

	// The host loses it again (removed by hand): the next miss fetches
	// and installs it again, although the model had it.
	must(t, h.host.store.Apply(policy.Batch{RemoveLookupRecords: []policy.LookupRecord{found}}))
	h.step(Notified{VSID: found.VirtualSubnetID, CA: found.CustomerAddress})
	h.settle()
	if got := h.records(); !slices.Contains(got, found) {
		t.Fatalf("the record lost again is not installed again: %+v", got)
	}
}

func TestAFloodingVSIDDoesNotStarveAnotherTenantsLookup(t *testing.T) {
	h := newHarness(t)
	h.start()
	a, b := policy.VSID(6001), policy.VSID(7001)
	for i := range 10_000 {
		h.step(Notified{VSID: a, CA: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})})
	}
	h.step(Notified{VSID: b, CA: netip.MustParseAddr("10.2.0.1")})

	// Serve lookups as Ready hands them out, each answered before the
	// next Ready; note the position of b's.
	pos, handed := -1, map[policy.VSID]int{}
	for n := 0; ; {
		r := h.ready()
		if len(r.Lookups) == 0 {
			break
		}
		for _, l := range r.Lookups {
			if l.VSID == b && pos < 0 {
				pos = n
			}
			n++
			handed[l.VSID]++
			h.step(LookupDone{VSID: l.VSID, CA: l.CA, Err: errNotFound})
		}
	}
	if pos < 0 || pos > 1 {
		t.Fatalf("b's lookup came at position %d behind a's flood, want within the first round-robin turn (0 or 1)", pos)
	}
	if handed[a] > 64 {
		t.Errorf("a's flood made %d lookups, want at most its share of 64 queued", handed[a])
	}
}

func TestAResyncRefetchesEverythingAndReconcilesByLevel(t *testing.T) {
	h := newHarness(t)
	h.vms = []policyapi.VM{vm("a", rd1, "h1", 10)}
	keep, gone, moves := rec(rd1, 10, "198.18.0.1"), rec(rd1, 11, "198.18.0.2"), rec(rd1, 12, "198.18.0.3")
	h.policies[rd1] = pol(rd1, 10, keep, gone, moves)
	h.host.ifaces["a"] = true
	h.start()
	// Events were lost (the revision was compacted): the server now has
	// another view.
	moved, added := rec(rd1, 12, "198.18.0.7"), rec(rd1, 13, "198.18.0.3")
	h.policies[rd1] = pol(rd1, 20, keep, moved, added)
	gen := h.watch.Gen
	h.step(WatchEvent{Gen: gen, Event: policyapi.Event{Type: policyapi.EventResync, Revision: 15}})
	r := h.ready()
	if r.Watch == nil || r.Watch.Rev != 0 || r.Watch.Gen == gen {
		t.Fatalf("after a resync the watch is %+v, want a new one from now", r.Watch)
	}
	h.answer(r)
	rs := h.settle()
	if len(rs) == 0 || !rs[0].ListVMs || !slices.Contains(rs[1].FetchPolicy, rd1) {
		t.Fatalf("a resync did not re-list and refetch: %+v", rs)
	}
	want := policy.Batch{RemoveLookupRecords: []policy.LookupRecord{gone}, AddLookupRecords: []policy.LookupRecord{added}, PutLookupRecords: []policy.LookupRecord{moved}}
	if got := batchOf(rs); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("batches after the resync %+v, want %+v", got, want)
	}
	// Events of the old stream are ignored.
	h.step(WatchEvent{Gen: gen, Event: policyapi.Event{Type: policyapi.EventDelete, Kind: policyapi.KindVM, Revision: 21, RoutingDomainID: rd1, PrevRecords: []policy.LookupRecord{keep}}})
	if rs := h.settle(); len(rs) != 0 {
		t.Fatalf("an event of a replaced stream was acted on: %+v", rs)
	}
}

func TestMigrationAttachesDetachesAndKeepsTheRoutingDomainForTheGrace(t *testing.T) {
	h := newHarness(t)
	a, b := vm("a", rd1, "h1", 10), vm("b", rd2, "h2", 11)
	h.vms = []policyapi.VM{a, b}
	h.policies[rd1] = pol(rd1, 10, rec(rd1, 10, "198.18.0.1"))
	h.policies[rd2] = pol(rd2, 10, rec(rd2, 11, "198.18.0.2"))
	h.host.ifaces["a"] = true
	h.start()
	if !slices.Equal(h.watch.RDs, []policy.GUID{rd1}) {
		t.Fatalf("watching %v, want only rd1", h.watch.RDs)
	}

	// b migrates here; its interface is not there yet.
	moved := b
	moved.Host = "h1"
	h.put(moved, &b, 12)
	rs := h.settle()
	if !slices.Equal(h.watch.RDs, []policy.GUID{rd1, rd2}) {
		t.Fatalf("watching %v after b arrived, want rd1 and rd2", h.watch.RDs)
	}
	if !slices.ContainsFunc(rs, func(r Ready) bool { return slices.Contains(r.FetchPolicy, rd2) }) {
		t.Fatal("rd2's policy was not fetched")
	}
	if _, ok := h.host.ports["b"]; ok {
		t.Fatal("b attached without its interface")
	}
	// Its interface appears: attached.
	h.host.ifaces["b"] = true
	h.step(InterfaceAppeared{})
	h.settle()
	if _, ok := h.host.ports["b"]; !ok {
		t.Fatal("b's port was not attached when its interface appeared")
	}
	if !slices.Contains(h.records(), rec(rd2, 11, "198.18.0.2")) {
		t.Fatal("rd2's policy is not installed")
	}

	// b moves on to h3: detached as migrated, rd2 kept for the grace.
	h.vms[1].Host = "h3"
	h.put(h.vms[1], &moved, 13)
	h.settle()
	if !reflect.DeepEqual(h.host.detach, []Detach{{Name: "b", Migrated: true}}) {
		t.Fatalf("detaches %+v, want b as migrated", h.host.detach)
	}
	h.now = h.now.Add(4 * time.Second)
	h.settle()
	if !slices.Equal(h.watch.RDs, []policy.GUID{rd1, rd2}) || !slices.Contains(h.records(), rec(rd2, 11, "198.18.0.2")) {
		t.Fatalf("rd2 dropped within the grace: watching %v, records %v", h.watch.RDs, h.records())
	}
	if w := h.ready().Wake; !w.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("the model wakes at %v, want the grace's end", w)
	}
	h.now = t0.Add(5 * time.Second)
	h.settle()
	if !slices.Equal(h.watch.RDs, []policy.GUID{rd1}) {
		t.Fatalf("watching %v after the grace, want only rd1", h.watch.RDs)
	}
	for _, r := range h.records() {
		if r.VirtualSubnetID == vsidOf(rd2) {
			t.Fatalf("rd2's record %v stays after the grace", r)
		}
	}
	if got := h.host.store.CustomerRoutes(policy.CustomerRouteFilter{RoutingDomainID: []policy.Wildcard{policy.MustParseWildcard(rd2.String())}}); len(got) != 0 {
		t.Fatalf("rd2's routes stay after the grace: %v", got)
	}
}

func TestAPortOfAVMThatLeftUnseenIsResolvedAtTheServer(t *testing.T) {
	h := newHarness(t)
	// Ports from the checkpoint of VMs the agent saw leave in no event:
	// c migrated to h2, d was deleted.
	c := vm("c", rd1, "h2", 12)
	h.vms = []policyapi.VM{c}
	for _, name := range []string{"c", "d"} {
		h.host.ports[name] = provider.Port{PortSpec: provider.PortSpec{Name: name, Interface: name, ManagedBy: managedBy}}
	}
	h.host.ports["x"] = provider.Port{PortSpec: provider.PortSpec{Name: "x", Interface: "x"}} // someone else's
	h.start()
	slices.SortFunc(h.host.detach, func(x, y Detach) int { return strings.Compare(x.Name, y.Name) })
	if want := []Detach{{Name: "c", Migrated: true}, {Name: "d"}}; !reflect.DeepEqual(h.host.detach, want) {
		t.Fatalf("detaches %+v, want %+v", h.host.detach, want)
	}
	if _, ok := h.host.ports["x"]; !ok {
		t.Fatal("a port the agent did not attach was detached")
	}
}

func TestTheWatchCoversTheRoutingDomainsOfOwnVMsOnly(t *testing.T) {
	h := newHarness(t)
	h.vms = []policyapi.VM{vm("a", rd2, "h1", 10), vm("b", rd1, "h1", 11), vm("c", rd3, "h2", 12)}
	for _, rd := range []policy.GUID{rd1, rd2, rd3} {
		h.policies[rd] = pol(rd, 10)
	}
	h.step(Registered{})
	r := h.ready()
	if r.Watch == nil || len(r.Watch.RDs) != 0 || r.Watch.Rev != 0 {
		t.Fatalf("first watch %+v, want one from now of no routing domain (its VMs come by host)", r.Watch)
	}
	h.answer(r)
	rs := h.settle()
	if !slices.Equal(h.watch.RDs, []policy.GUID{rd1, rd2}) || h.watch.Rev != 10 {
		t.Fatalf("watching %v from %d, want rd1 and rd2 from the first stream's revision 10", h.watch.RDs, h.watch.Rev)
	}
	for _, r := range rs {
		if slices.Contains(r.FetchPolicy, rd3) {
			t.Fatal("rd3, of no VM of this host, was fetched")
		}
	}
	// A VM of rd3 placed on another host changes nothing.
	h.put(vm("d", rd3, "h2", 13), nil, 11)
	if rs := h.settle(); len(rs) != 0 {
		t.Fatalf("another host's VM led to %+v", rs)
	}
}

func TestAFailedReconcileIsRetriedAfterBackoffAndTheBackoffResets(t *testing.T) {
	h := newHarness(t)
	h.vms = []policyapi.VM{vm("a", rd1, "h1", 10)}
	h.policies[rd1] = pol(rd1, 10, rec(rd1, 10, "198.18.0.1"))
	h.step(Registered{})
	// Run up to the host read and fail it three times: waits of 50, 100
	// and 200ms (jitter 0 draws the lower bound).
	for _, wait := range []time.Duration{50, 100, 200} {
		var r Ready
		for r = h.ready(); !r.ReadHost; r = h.ready() {
			if reflect.DeepEqual(r, Ready{Wake: r.Wake}) {
				t.Fatal("no host read")
			}
			h.answer(r)
		}
		r.ReadHost = false
		h.answer(r)
		h.step(HostRead{Err: errUnavailable})
		if r := h.ready(); r.ReadHost || !r.Wake.Equal(h.now.Add(wait*time.Millisecond)) {
			t.Fatalf("after a failed read: %+v, want a wake after %dms and no read", r, wait)
		}
		h.now = h.now.Add(wait * time.Millisecond)
	}
	rs := h.settle()
	if len(h.records()) != 1 {
		t.Fatalf("the reconcile did not succeed after the retries: %+v", rs)
	}
	// The success reset the backoff: the next failure waits 50ms again.
	h.put(h.vms[0], nil, 11)
	if r := h.ready(); !r.ReadHost {
		t.Fatalf("no host read after an event: %+v", r)
	}
	h.step(HostRead{Err: errUnavailable})
	if r := h.ready(); !r.Wake.Equal(h.now.Add(50 * time.Millisecond)) {
		t.Fatalf("after a success and a failure the model wakes at %v, want in 50ms", r.Wake)
	}
}

func TestRedirectKeysFollowHostEventsAndAnOlderPeerIsLeftAlone(t *testing.T) {
	h := newHarness(t)
	k1 := []policyapi.RedirectKey{{LocalPA: netip.MustParseAddr("198.18.0.1"), PeerPA: netip.MustParseAddr("198.18.0.2"), Key: make([]byte, 32)}}
	k2 := append(slices.Clone(k1), policyapi.RedirectKey{LocalPA: netip.MustParseAddr("198.18.0.1"), PeerPA: netip.MustParseAddr("198.18.0.3"), Key: make([]byte, 32)})
	h.step(Registered{})
	r := h.ready()
	if !r.FetchKeys {
		t.Fatal("no key fetch after registration")
	}
	h.step(KeysFetched{Keys: k1})
	if r := h.ready(); r.PushKeys == nil || !sameKeys(*r.PushKeys, k1) {
		t.Fatalf("push %+v, want the fetched keys", r.PushKeys)
	}
	h.step(KeysPushed{})
	hostEvent := func(kind policyapi.Kind) {
		h.step(WatchEvent{Gen: h.watch.Gen, Event: policyapi.Event{Type: policyapi.EventPut, Kind: kind, Revision: 11, Name: "h3"}})
	}
	// A host registers: fetched again, pushed only if they changed.
	hostEvent(policyapi.KindHost)
	if r := h.ready(); !r.FetchKeys {
		t.Fatal("no key fetch after a host event")
	}
	h.step(KeysFetched{Keys: k1})
	if r := h.ready(); r.PushKeys != nil {
		t.Fatal("unchanged keys pushed again")
	}
	hostEvent(policyapi.KindLiveness)
	h.ready()
	h.step(KeysFetched{Keys: k2})
	if r := h.ready(); r.PushKeys == nil || !sameKeys(*r.PushKeys, k2) {
		t.Fatalf("push %+v, want the new keys", r.PushKeys)
	}
	// An older wnvd lacks the endpoint: no more pushes.
	h.step(KeysPushed{Err: errNotFound})
	hostEvent(policyapi.KindHost)
	h.ready()
	h.step(KeysFetched{Keys: k1})
	if r := h.ready(); r.PushKeys != nil {
		t.Fatal("keys pushed to a wnvd without the endpoint")
	}
	// An older server lacks it: no more fetches until the next registration.
	h2 := newHarness(t)
	h2.step(Registered{})
	h2.ready()
	h2.step(KeysFetched{Err: errNotFound})
	h2.step(WatchEvent{Gen: 1, Event: policyapi.Event{Type: policyapi.EventPut, Kind: policyapi.KindHost, Revision: 11}})
	if r := h2.ready(); r.FetchKeys || r.PushKeys != nil {
		t.Fatalf("keys asked of a server without them: %+v", r)
	}
	h2.step(Registered{})
	if r := h2.ready(); !r.FetchKeys {
		t.Fatal("no key fetch after registering again")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestAnInterfaceAppearingDuringAnAttachIsTriedAgainAtOnce(t *testing.T) {
	h := newHarness(t)
	z, a := vm("z", rd1, "h1", 9), vm("a", rd1, "h1", 10)
	h.vms = []policyapi.VM{z}
	h.policies[rd1] = pol(rd1, 10)
	h.host.ifaces["z"] = true
	h.start()
	h.vms = append(h.vms, a)
	h.put(a, nil, 11)
	var r Ready
	for r = h.ready(); r.Apply == nil; r = h.ready() {
		h.answer(r)
	}
	// The interface appears while the attach that will fail is in flight.
	applied := h.host.apply(*r.Apply)
	h.host.ifaces["a"] = true
	h.step(InterfaceAppeared{})
	h.step(applied)
	h.settle() // at the same instant: no InterfaceRetry passes
	if _, ok := h.host.ports["a"]; !ok {
		t.Fatal("the port waits for the retry although its interface appeared")
	}
}

// TestAVMPlacedWhileTheListIsAskedForIsNotLost: the list of this host's VMs
// may be older than a placement the watch delivered while the list was on
// its way; the VM must still get its port.
func TestAVMPlacedWhileTheListIsAskedForIsNotLost(t *testing.T) {
	h := newHarness(t)
	h.host.ifaces["b"] = true
	h.step(Registered{})
	var listAsked bool
	for i := 0; i < 10 && !listAsked; i++ {
		r := h.ready()
		if r.ListVMs {
			listAsked = true
			r.ListVMs = false
			// Placed after the server answered the list, seen before the
			// answer arrives.
			h.put(vm("b", rd1, "h1", 11), nil, 20)
			h.answer(r)
			h.step(VMsListed{})
			break
		}
		h.answer(r)
	}
	if !listAsked {
		t.Fatal("the model never asked for the list of its VMs")
	}
	h.policies[rd1] = pol(rd1, 20, rec(rd1, 11, "198.18.0.1"))
	h.settle()
	if _, ok := h.host.ports["b"]; !ok {
		t.Fatalf("b placed during the listing has no port: ports %v", h.host.ports)
	}
}
