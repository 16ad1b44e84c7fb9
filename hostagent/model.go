package hostagent

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/wnv/wnv/edge"
	"github.com/wnv/wnv/internal/backoff"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
)

// The agent's functional core, after etcd raft's RawNode: the model takes
// events (Step) and says what I/O to do next (Ready); it starts no
// goroutine, does no I/O and reads no clock. The driver (driver.go) does the
// I/O and feeds each result back as an event.

// Events.

// Event is something that happened to the agent.
type Event interface{ event() }

// Registered: the host is registered (again) at the policy server.
type Registered struct{}

// WatchEvent is one event of the watch stream opened for Ready.Watch Gen.
type WatchEvent struct {
	Gen   int
	Event policyapi.Event
}

// WatchEnded: the stream of Gen ended by itself (a resync, or the server
// refused it).
type WatchEnded struct{ Gen int }

// VMsListed answers Ready.ListVMs: the VMs and gateways placed on this
// host.
type VMsListed struct {
	VMs      []policyapi.VM
	Gateways []policyapi.Gateway
	Err      error
}

// PolicyFetched answers one of Ready.FetchPolicy.
type PolicyFetched struct {
	RD     policy.GUID
	Policy policyapi.Policy
	Err    error
}

// LookupDone answers one of Ready.Lookups.
type LookupDone struct {
	VSID   policy.VSID
	CA     netip.Addr
	Answer policyapi.LookupAnswer
	Err    error
}

// Notified: the host raised a policy mismatch or a redirect for CA in VSID.
type Notified struct {
	VSID policy.VSID
	CA   netip.Addr
}

// CALearned: the host learned a CA (customer-address-added) or forgot it
// (customer-address-deleted, Forgot) on a local port.
type CALearned struct {
	VSID   policy.VSID
	CA, PA netip.Addr
	MAC    packet.MAC
	Forgot bool
}

// NotificationsLost: the notification queue overflowed; what was lost is
// found by a full re-list.
type NotificationsLost struct{}

// VMResolved answers one of Ready.ResolveVMs: the VM of a port whose VM is
// not placed here (Err matching policy.ErrNotFound: deleted).
type VMResolved struct {
	Name string
	VM   policyapi.VM
	Err  error
}

// HostRead answers Ready.ReadHost: what wnvd has installed.
type HostRead struct {
	Ports   []provider.Port
	Records []policy.LookupRecord
	Routes  []policy.CustomerRoute
	Subnets []policy.VirtualSubnet
	PAs     []policy.ProviderAddress
	Err     error
}

// Applied answers Ready.Apply: the result of each of its parts.
type Applied struct {
	Batch    error
	Subnets  error
	Gateways error
	PAs      error
	Ports    []PortResult
}

// PortResult is the result of one attach or detach.
type PortResult struct {
	Name   string
	Attach bool
	Err    error
}

// InterfaceAppeared: a network interface appeared in wnvd's namespace.
type InterfaceAppeared struct{}

// KeysFetched answers Ready.FetchKeys.
type KeysFetched struct {
	Keys []policyapi.RedirectKey
	Err  error
}

// KeysPushed answers Ready.PushKeys.
type KeysPushed struct{ Err error }

// Tick: time passed (every Step carries the time).
type Tick struct{}

func (Registered) event()        {}
func (WatchEvent) event()        {}
func (WatchEnded) event()        {}
func (VMsListed) event()         {}
func (PolicyFetched) event()     {}
func (LookupDone) event()        {}
func (Notified) event()          {}
func (CALearned) event()         {}
func (NotificationsLost) event() {}
func (VMResolved) event()        {}
func (HostRead) event()          {}
func (Applied) event()           {}
func (InterfaceAppeared) event() {}
func (KeysFetched) event()       {}
func (KeysPushed) event()        {}
func (Tick) event()              {}

// Ready is the I/O the model asks for; each item is answered by the event
// named in its comment. Zero fields ask for nothing.
type Ready struct {
	// Watch replaces the open watch stream: WatchEvent, WatchEnded.
	Watch *WatchSpec
	// ListVMs (and the gateways): VMsListed.
	ListVMs bool
	// FetchPolicy: one PolicyFetched each.
	FetchPolicy []policy.GUID
	// Lookups: one LookupDone each.
	Lookups []Lookup
	// ResolveVMs: one VMResolved each.
	ResolveVMs []string
	// ReadHost: HostRead.
	ReadHost bool
	// Apply: Applied.
	Apply *Apply
	// FetchKeys: KeysFetched.
	FetchKeys bool
	// PushKeys: KeysPushed.
	PushKeys *[]policyapi.RedirectKey
	// Report and Forget tell the policy server what the host learned and
	// forgot on its L2Only VMs' ports; the driver retries them, nothing
	// answers (the watch brings the server's records).
	Report []policyapi.Learned
	Forget []policyapi.Learned
	// Wake is when the model wants a Tick at the latest (zero: never).
	Wake time.Time
}

// WatchSpec is the watch to open: the routing domains of the host's VMs
// (and of those that left, for their grace period) from revision Rev (0:
// from now), plus the VMs placed on or taken from the host.
type WatchSpec struct {
	Gen int
	Rev int64
	RDs []policy.GUID
}

// Lookup is an on-demand lookup to make.
type Lookup struct {
	VSID policy.VSID
	CA   netip.Addr
}

// Apply is one reconcile's changes to wnvd, in this order: detaches, the
// edge gateways, attaches, subnets, then the policy Batch in ONE provider
// call (one table publication). The model asks for a host read, not for the
// server's policy, before a port changes: a VM placed here is attached
// while its routing domain's policy is still being fetched.
type Apply struct {
	Subnets []policy.VirtualSubnet // add (absent) or set (Encapsulation differs)
	Batch   policy.Batch
	Detach  []Detach
	Attach  []provider.PortSpec
	// Gateways, when not nil, is every edge gateway the host is to have
	// (none: remove them all).
	Gateways *[]edge.Spec
	// AddPAs and RemovePAs are the IP Rewrite PAs of local Nat VMs to
	// configure and those to remove (rewrite.go), after the ports.
	AddPAs    []policy.ProviderAddress
	RemovePAs []netip.Addr
}

// Detach detaches a port; Migrated keeps forwarding for its VM's new host.
type Detach struct {
	Name     string
	Migrated bool
}

// ModelConfig bounds the model.
type ModelConfig struct {
	Host string
	// MigrationGrace keeps a departed VM's routing domain this long.
	MigrationGrace time.Duration
	// NegativeTTL is how long a failed lookup is not asked again.
	NegativeTTL time.Duration
	// MaxLookups is how many lookups run at once; QueuePerVSID and
	// QueueTotal bound those waiting.
	MaxLookups, QueuePerVSID, QueueTotal int
	// MaxPolicyFetches is how many routing domains are fetched at once.
	MaxPolicyFetches int
	// Edges says the host builds edge gateways (gateways with a Mode placed
	// on it), in namespaces named EdgePrefix + gateway name whose tenant
	// links have EdgeMTU.
	Edges      bool
	EdgePrefix string
	EdgeMTU    int
	// InterfaceRetry is how often an attach waiting for its interface is
	// tried again without an InterfaceAppeared.
	InterfaceRetry time.Duration
	// RetryMin and RetryMax bound the backoff after a failure; Rand draws
	// its jitter.
	RetryMin, RetryMax time.Duration
	Rand               func() float64
}

// managedBy marks the ports the agent attaches for VMs, managedByEdge
// those of edge gateways; it leaves others alone.
const (
	managedBy     = "policy-server"
	managedByEdge = "policy-server-gateway"
)

type recKey struct {
	vsid policy.VSID
	ca   netip.Addr
	mac  packet.MAC
}

func keyOf(r policy.LookupRecord) recKey {
	return recKey{r.VirtualSubnetID, r.CustomerAddress.Unmap(), r.MACAddress}
}

type routeKey struct {
	rd     policy.GUID
	vsid   policy.VSID
	prefix netip.Prefix
	next   netip.Addr
}

func routeKeyOf(r policy.CustomerRoute) routeKey {
	return routeKey{r.RoutingDomainID, r.VirtualSubnetID, r.DestinationPrefix.Masked(), r.NextHop.Unmap()}
}

// rdPolicy is the desired policy of one routing domain: a Policy read and
// the watch events since.
type rdPolicy struct {
	records map[recKey]policy.LookupRecord
	routes  map[routeKey]policy.CustomerRoute
	subnets map[policy.VSID]policyapi.Subnet
}

func newRDPolicy(p policyapi.Policy) *rdPolicy {
	m := &rdPolicy{records: map[recKey]policy.LookupRecord{}, routes: map[routeKey]policy.CustomerRoute{}, subnets: map[policy.VSID]policyapi.Subnet{}}
	for _, r := range p.Records {
		m.records[keyOf(r)] = r
	}
	for _, r := range p.Routes {
		m.routes[routeKeyOf(r)] = r
	}
	for _, s := range p.Subnets {
		m.subnets[s.VirtualSubnetID] = s
	}
	return m
}

// Model is the agent's state. Use NewModel; not safe for concurrent use.
type Model struct {
	cfg        ModelConfig
	registered bool

	// The watch: the spec open (nil: none), the newest revision seen, and
	// when to reopen after it ended.
	open     *WatchSpec
	gen      int
	rev      int64
	reopenAt time.Time
	watchOff backoff.Backoff

	// Placement: the VMs on this host, listed since the stream started.
	listed, listing bool
	vms             map[string]policyapi.VM
	// gateways are the edge gateways placed on this host; built is what
	// the host was last told to build, building what it is being told.
	gateways        map[string]policyapi.Gateway
	built, building *[]edge.Spec
	// sinceList are the placement events that arrived while the list was
	// asked for: the list may be older than they are, so they apply again
	// on top of it (every later event follows, so the state converges).
	sinceList []policyapi.Event
	// departed are VMs that left with their port still attached: true if
	// they migrated (detach keeping the forwarding), false if deleted.
	departed map[string]bool
	// unknown are ports of VMs not placed here that left in no event seen
	// (e.g. while the agent was down): the server says where they went.
	unknown, resolving map[string]bool
	linger             map[policy.GUID]time.Time // departed VMs' routing domains

	// Policy by routing domain, and the routing domains to (re)fetch.
	rds       map[policy.GUID]*rdPolicy
	stale     map[policy.GUID]bool
	fetching  map[policy.GUID]bool
	serverAt  time.Time // after a server failure, wait until then
	serverOff backoff.Backoff

	// CAs the host learned on its L2Only VMs' ports, kept installed until
	// the server's record of the CA (the report's echo, or another's)
	// replaces them, and the reports to send.
	learned        map[recKey]policy.LookupRecord
	report, forget []policyapi.Learned
	// On-demand records, until the watch or a policy read says more.
	extra    map[recKey]policy.LookupRecord
	queue    fetchQueue
	inflight map[lookupKey]bool
	negative map[lookupKey]time.Time // failed lookups, not asked again until then

	// Reconcile: dirty asks for one; reading and applying are its two
	// steps in flight; retryAt delays it after a failure.
	dirty, reading, applying bool
	retryAt                  time.Time
	hostOff                  backoff.Backoff
	next                     *Apply // computed from HostRead, handed out by Ready
	waiting                  map[string]bool
	waitRetry                time.Time

	// Redirect keys: fetched from the server, pushed to wnvd.
	wantKeys, fetchingKeys, pushingKeys bool
	keys, pushed                        []policyapi.RedirectKey
	havePushed, keysOff, pushOff        bool // keysOff/pushOff: the server/wnvd lacks the endpoint
	keysAt                              time.Time
	keysBackoff                         backoff.Backoff

	// rewritePAs are the IP Rewrite PAs the agent configured; while one is
	// not usable yet (paUnsettled), the host is read again at paRecheck,
	// and a Duplicate one added again then (paReadd; rewrite.go).
	rewritePAs           map[netip.Addr]bool
	paUnsettled, paReadd bool
	paRecheck            time.Time
}

// NewModel returns the model of an agent that has not registered yet.
func NewModel(cfg ModelConfig) *Model {
	off := func() backoff.Backoff { return backoff.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax, Rand: cfg.Rand} }
	return &Model{
		cfg: cfg, watchOff: off(), serverOff: off(), hostOff: off(), keysBackoff: off(),
		vms: map[string]policyapi.VM{}, gateways: map[string]policyapi.Gateway{}, departed: map[string]bool{}, unknown: map[string]bool{}, resolving: map[string]bool{}, linger: map[policy.GUID]time.Time{},
		rds: map[policy.GUID]*rdPolicy{}, stale: map[policy.GUID]bool{}, fetching: map[policy.GUID]bool{},
		extra: map[recKey]policy.LookupRecord{}, learned: map[recKey]policy.LookupRecord{}, queue: newFetchQueue(cfg.QueuePerVSID, cfg.QueueTotal),
		inflight: map[lookupKey]bool{}, negative: map[lookupKey]time.Time{}, waiting: map[string]bool{},
	}
}

// Step applies one event that happened at now.
func (m *Model) Step(now time.Time, ev Event) {
	switch ev := ev.(type) {
	case Registered:
		m.registered = true
		m.wantKeys, m.keysOff = true, false
	case WatchEvent:
		if ev.Gen == m.gen && m.open != nil {
			m.watchEvent(now, ev.Event)
		}
	case WatchEnded:
		if ev.Gen == m.gen && m.open != nil {
			m.resync()
			m.reopenAt = now.Add(m.watchOff.Next())
		}
	case VMsListed:
		m.listing = false
		held := m.sinceList
		m.sinceList = nil
		if ev.Err != nil {
			m.serverAt = now.Add(m.serverOff.Next())
			return
		}
		m.serverOff.Reset()
		m.vms = map[string]policyapi.VM{}
		for _, vm := range ev.VMs {
			m.vms[vm.Name] = vm
			delete(m.departed, vm.Name)
		}
		m.gateways = map[string]policyapi.Gateway{}
		for _, g := range ev.Gateways {
			if m.isEdge(g) {
				m.gateways[g.Name] = g
			}
		}
		for _, e := range held {
			m.placement(now, e)
		}
		m.listed = true
		for rd := range m.watchSet() {
			m.stale[rd] = true
		}
		m.dirty = true
	case PolicyFetched:
		delete(m.fetching, ev.RD)
		if ev.Err != nil {
			m.stale[ev.RD] = true
			m.serverAt = now.Add(m.serverOff.Next())
			return
		}
		m.serverOff.Reset()
		if !m.watchSet()[ev.RD] {
			return
		}
		p := newRDPolicy(ev.Policy)
		for k := range m.extra {
			if _, ok := p.subnets[k.vsid]; ok {
				delete(m.extra, k)
			}
		}
		m.rds[ev.RD] = p
		m.dirty = true
	case LookupDone:
		k := lookupKey{ev.VSID, ev.CA}
		delete(m.inflight, k)
		if ev.Err != nil {
			// Not found or the server is away: either way asking again at
			// once would only repeat the answer.
			m.negative[k] = now.Add(m.cfg.NegativeTTL)
			return
		}
		m.extra[keyOf(ev.Answer.Record)] = ev.Answer.Record
		// The host asked because it lacks the record, whatever the model
		// thinks it installed: reconcile with what it has.
		m.dirty = true
	case Notified:
		k := lookupKey{ev.VSID, ev.CA.Unmap()}
		if until, ok := m.negative[k]; ok && now.Before(until) {
			return
		}
		if !m.inflight[k] {
			m.queue.push(k)
		}
	case CALearned:
		m.caLearned(ev)
	case NotificationsLost:
		m.listed = false
	case VMResolved:
		delete(m.resolving, ev.Name)
		switch {
		case ev.Err == nil && ev.VM.Host != m.cfg.Host:
			m.depart(now, ev.VM, true)
		case ev.Err == nil:
			return // placed here again; the next list or event says so
		case isNotFound(ev.Err):
			m.departed[ev.Name] = false
		default:
			m.serverAt = now.Add(m.serverOff.Next())
			return
		}
		m.dirty = true
	case HostRead:
		m.reading = false
		if ev.Err != nil {
			m.failed(now)
			return
		}
		m.next = m.plan(ev)
		if m.paUnsettled && m.paRecheck.IsZero() {
			m.paRecheck = now.Add(m.cfg.InterfaceRetry)
		}
		if m.next == nil {
			m.hostOff.Reset()
		}
	case Applied:
		m.applying = false
		ok := ev.Batch == nil && ev.Subnets == nil && ev.Gateways == nil && ev.PAs == nil
		if m.building != nil && ev.Gateways == nil {
			m.built = m.building
		}
		m.building = nil
		for _, r := range ev.Ports {
			switch {
			case r.Err == nil && r.Attach:
				delete(m.waiting, r.Name)
			case r.Err == nil:
				delete(m.departed, r.Name)
			case r.Attach && isNotFound(r.Err):
				// Its hypervisor has not created the interface yet.
				if !m.waiting[r.Name] {
					m.waitRetry = now.Add(m.cfg.InterfaceRetry)
				}
				m.waiting[r.Name] = true
			case !r.Attach && isNotFound(r.Err):
				delete(m.departed, r.Name)
			default:
				ok = false
			}
		}
		if ok {
			m.hostOff.Reset()
		} else {
			m.failed(now)
		}
	case InterfaceAppeared:
		// An attach in flight may have missed the interface by a hair (a
		// migration's destination hypervisor creates it right after the
		// move): try again at once rather than after InterfaceRetry.
		if len(m.waiting) > 0 || m.reading || m.applying || m.next != nil {
			m.dirty = true
		}
	case KeysFetched:
		m.fetchingKeys = false
		switch {
		case ev.Err == nil:
			m.keys = ev.Keys
			m.keysBackoff.Reset()
		case isNotFound(ev.Err):
			m.keysOff = true // an older server: nothing to push
		default:
			m.wantKeys = true
			m.keysAt = now.Add(m.keysBackoff.Next())
		}
	case KeysPushed:
		m.pushingKeys = false
		switch {
		case ev.Err == nil:
			m.havePushed = true
			m.keysBackoff.Reset()
		case isNotFound(ev.Err):
			m.pushOff = true // an older wnvd
		default:
			m.pushed = nil
			m.havePushed = false
			m.keysAt = now.Add(m.keysBackoff.Next())
		}
	case Tick:
	}
}

// caLearned notes a CA the host learned or forgot on the port of a local
// L2Only VM (the port's own CAs are the VM's Static records, not learned).
func (m *Model) caLearned(ev CALearned) {
	var vm policyapi.VM
	found := false
	for _, v := range m.vms {
		if v.MACAddress == ev.MAC && v.VirtualSubnetID == ev.VSID && v.L2Only {
			vm, found = v, true
		}
	}
	if !found || slices.Contains(vm.CustomerAddresses, ev.CA) {
		return
	}
	l := policyapi.Learned{VirtualSubnetID: ev.VSID, CustomerAddress: ev.CA.Unmap(), MACAddress: ev.MAC, ProviderAddress: ev.PA}
	r := learnedRecord(vm, l)
	if ev.Forgot {
		delete(m.learned, keyOf(r))
		m.forget = append(m.forget, l)
	} else {
		m.learned[keyOf(r)] = r
		m.report = append(m.report, l)
	}
}

// learnedRecord is the record the host put for a learned CA of vm.
func learnedRecord(vm policyapi.VM, l policyapi.Learned) policy.LookupRecord {
	return policy.LookupRecord{CustomerAddress: l.CustomerAddress, VirtualSubnetID: l.VirtualSubnetID, MACAddress: l.MACAddress, ProviderAddress: l.ProviderAddress,
		Rule: policy.TranslationMethodEncap, Type: policy.Dynamic, CustomerID: vm.CustomerID, VMName: vm.Name, Unsynchronized: true}
}

func (m *Model) failed(now time.Time) {
	m.dirty = true
	m.retryAt = now.Add(m.hostOff.Next())
}

// resync forgets the stream: the next one starts from now and everything
// is listed and fetched again (the policy held meanwhile stays installed).
func (m *Model) resync() {
	m.open, m.rev, m.listed, m.sinceList = nil, 0, false, nil
}

// watchEvent applies one event of the stream as a level.
func (m *Model) watchEvent(now time.Time, ev policyapi.Event) {
	switch ev.Type {
	case policyapi.EventResync:
		m.resync()
		return
	case policyapi.EventProgress:
		m.rev = max(m.rev, ev.Revision)
		m.watchOff.Reset()
		return
	}
	// One revision may carry several events: a stream reopened after this
	// one repeats its revision rather than miss the rest of it.
	m.rev = max(m.rev, ev.Revision-1)
	switch ev.Kind {
	case policyapi.KindHost, policyapi.KindLiveness:
		// A host came, went or has new PAs: its redirect keys changed.
		m.wantKeys = true
		return
	case policyapi.KindVM, policyapi.KindGateway:
		if m.listing {
			m.sinceList = append(m.sinceList, ev)
		}
		m.placement(now, ev)
	}
	p := m.rds[ev.RoutingDomainID]
	if p == nil {
		return
	}
	switch ev.Kind {
	case policyapi.KindVM, policyapi.KindGateway, policyapi.KindSubnet, policyapi.KindLearned:
		for _, r := range ev.PrevRecords {
			delete(p.records, keyOf(r))
			delete(m.extra, keyOf(r))
		}
		for _, r := range ev.PrevRoutes {
			delete(p.routes, routeKeyOf(r))
		}
		if ev.Type == policyapi.EventPut {
			for _, r := range ev.Records {
				p.records[keyOf(r)] = r
				delete(m.extra, keyOf(r))
			}
			for _, r := range ev.Routes {
				p.routes[routeKeyOf(r)] = r
			}
		}
		if ev.PrevSubnet != nil {
			delete(p.subnets, ev.PrevSubnet.VirtualSubnetID)
		}
		if ev.Subnet != nil && ev.Type == policyapi.EventPut {
			p.subnets[ev.Subnet.VirtualSubnetID] = *ev.Subnet
		}
		m.dirty = true
	}
}

// placement notes a VM or edge gateway placed on this host or taken from
// it.
func (m *Model) placement(now time.Time, ev policyapi.Event) {
	me := m.cfg.Host
	if ev.Kind == policyapi.KindGateway {
		if ev.PrevGateway != nil && ev.PrevGateway.Host == me {
			delete(m.gateways, ev.PrevGateway.Name)
			m.dirty = true
		}
		if g := ev.Gateway; ev.Type == policyapi.EventPut && g != nil && g.Host == me && m.isEdge(*g) {
			m.gateways[g.Name] = *g
			m.dirty = true
		}
		return
	}
	switch {
	case ev.Type == policyapi.EventPut && ev.VM != nil && ev.VM.Host == me:
		m.vms[ev.VM.Name] = *ev.VM
		delete(m.departed, ev.VM.Name)
		delete(m.linger, ev.VM.RoutingDomainID)
		m.dirty = true
	case ev.PrevVM != nil && ev.PrevVM.Host == me:
		delete(m.vms, ev.PrevVM.Name)
		if ev.Type == policyapi.EventPut && ev.VM != nil {
			m.depart(now, *ev.VM, true)
		} else {
			m.departed[ev.PrevVM.Name] = false
		}
		m.dirty = true
	}
}

// depart notes that vm left with its port still here; a migrated VM's
// routing domain stays for the grace period, so that the host keeps the
// record its forwarding to the new PA follows.
func (m *Model) depart(now time.Time, vm policyapi.VM, migrated bool) {
	m.departed[vm.Name] = migrated
	if _, ok := m.linger[vm.RoutingDomainID]; migrated && !ok && !m.localRDs()[vm.RoutingDomainID] {
		m.linger[vm.RoutingDomainID] = now.Add(m.cfg.MigrationGrace)
	}
}

func (m *Model) localRDs() map[policy.GUID]bool {
	s := map[policy.GUID]bool{}
	for _, vm := range m.vms {
		s[vm.RoutingDomainID] = true
	}
	for _, g := range m.gateways {
		s[g.RoutingDomainID] = true
	}
	return s
}

// isEdge reports whether g is a gateway this host builds.
func (m *Model) isEdge(g policyapi.Gateway) bool { return m.cfg.Edges && g.Mode != "" }

// watchSet is the routing domains the host needs: its VMs' and edge
// gateways' and, for their grace period, those of VMs that migrated away.
func (m *Model) watchSet() map[policy.GUID]bool {
	s := m.localRDs()
	for rd := range m.linger {
		s[rd] = true
	}
	return s
}

// Ready returns the I/O to start now; the model counts it as in flight
// until its answer comes.
func (m *Model) Ready(now time.Time) Ready {
	var r Ready
	if !m.registered {
		return r
	}
	m.expire(now)
	set := m.watchSet()
	for rd, p := range m.rds {
		if !set[rd] {
			for k := range m.extra {
				if _, ok := p.subnets[k.vsid]; ok {
					delete(m.extra, k)
				}
			}
			delete(m.rds, rd)
			m.dirty = true
		}
	}

	// The watch: opened first; the list follows its first event so that
	// events after it apply on top of the list as levels.
	if want := sortedRDs(set); m.open == nil && !now.Before(m.reopenAt) || m.open != nil && m.listed && !slices.Equal(m.open.RDs, want) {
		m.gen++
		m.open = &WatchSpec{Gen: m.gen, Rev: m.rev, RDs: want}
		r.Watch = m.open
	}
	serverOK := !now.Before(m.serverAt)
	if m.open != nil && m.rev > 0 && !m.listed && !m.listing && serverOK {
		m.listing = true
		r.ListVMs = true
	}
	if m.listed && serverOK {
		for _, rd := range sortedRDs(set) {
			if len(m.fetching) >= m.cfg.MaxPolicyFetches {
				break
			}
			if (m.stale[rd] || m.rds[rd] == nil) && !m.fetching[rd] {
				delete(m.stale, rd)
				m.fetching[rd] = true
				r.FetchPolicy = append(r.FetchPolicy, rd)
			}
		}
	}
	for len(m.inflight) < m.cfg.MaxLookups {
		k, ok := m.queue.pop()
		if !ok {
			break
		}
		m.inflight[k] = true
		r.Lookups = append(r.Lookups, Lookup{VSID: k.vsid, CA: k.ca})
	}

	// Reconcile: read what wnvd has, then apply the difference.
	if len(m.waiting) > 0 && !now.Before(m.waitRetry) {
		m.dirty = true
		m.waitRetry = now.Add(m.cfg.InterfaceRetry)
	}
	if !m.paRecheck.IsZero() && !now.Before(m.paRecheck) {
		m.dirty, m.paRecheck, m.paReadd = true, time.Time{}, true
	}
	if m.next != nil && !m.applying {
		r.Apply, m.next = m.next, nil
		m.applying = true
	}
	if m.listed && m.dirty && !m.reading && !m.applying && m.next == nil && !now.Before(m.retryAt) {
		m.dirty, m.reading = false, true
		r.ReadHost = true
	}
	if serverOK {
		for _, name := range sortedKeys(m.unknown) {
			if !m.resolving[name] {
				m.resolving[name] = true
				r.ResolveVMs = append(r.ResolveVMs, name)
			}
		}
		clear(m.unknown)
	}

	// Redirect keys.
	keysOK := !now.Before(m.keysAt)
	if m.wantKeys && !m.keysOff && !m.fetchingKeys && keysOK {
		m.wantKeys, m.fetchingKeys = false, true
		r.FetchKeys = true
	}
	if !m.keysOff && !m.pushOff && !m.fetchingKeys && !m.pushingKeys && keysOK && m.keys != nil && (!m.havePushed || !sameKeys(m.keys, m.pushed)) {
		m.pushingKeys, m.pushed = true, m.keys
		keys := m.keys
		r.PushKeys = &keys
	}
	r.Report, r.Forget, m.report, m.forget = m.report, m.forget, nil, nil
	r.Wake = m.wake(now)
	return r
}

// expire ends grace periods and negative entries that are over.
func (m *Model) expire(now time.Time) {
	for rd, until := range m.linger {
		if !now.Before(until) {
			delete(m.linger, rd)
			m.dirty = true
		}
	}
	for k, until := range m.negative {
		if !now.Before(until) {
			delete(m.negative, k)
		}
	}
}

// wake is the earliest future time at which the model has something to do.
func (m *Model) wake(now time.Time) time.Time {
	var w time.Time
	at := func(t time.Time) {
		if t.After(now) && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	for _, t := range m.linger {
		at(t)
	}
	for _, t := range m.negative {
		at(t)
	}
	if m.open == nil {
		at(m.reopenAt)
	}
	at(m.serverAt)
	at(m.retryAt)
	at(m.keysAt)
	if len(m.waiting) > 0 {
		at(m.waitRetry)
	}
	at(m.paRecheck)
	return w
}

// plan computes the changes that move wnvd from h to the model: nil when
// there are none.
func (m *Model) plan(h HostRead) *Apply {
	a := &Apply{}
	have := map[string]bool{}
	edges, edgePorts := m.edges()
	for _, p := range h.Ports {
		have[p.Name] = true
		if p.ManagedBy == managedByEdge {
			// Left alone until the gateways can be built: a restarted
			// agent's gateway keeps forwarding meanwhile.
			if want, ok := edgePorts[p.Name]; edges != nil && (!ok || !samePort(p.PortSpec, want)) {
				a.Detach = append(a.Detach, Detach{Name: p.Name})
				delete(have, p.Name)
			}
			continue
		}
		if p.ManagedBy != managedBy {
			continue
		}
		vm, local := m.vms[p.Name]
		migrated, departed := m.departed[p.Name]
		switch {
		case local && samePort(p.PortSpec, portSpec(vm)):
		case local:
			// Changed at the server: attach it again as it is now.
			a.Detach = append(a.Detach, Detach{Name: p.Name})
			delete(have, p.Name)
		case departed:
			a.Detach = append(a.Detach, Detach{Name: p.Name, Migrated: migrated})
		case !m.resolving[p.Name]:
			m.unknown[p.Name] = true
		}
	}
	for name := range m.departed {
		if !have[name] {
			delete(m.departed, name)
		}
	}
	for name := range m.waiting {
		if _, ok := m.vms[name]; !ok && edgePorts[name].Name == "" {
			delete(m.waiting, name)
		}
	}
	for _, name := range sortedKeys(m.vms) {
		if !have[name] {
			a.Attach = append(a.Attach, portSpec(m.vms[name]))
		}
	}
	if edges != nil && (m.built == nil || !slices.EqualFunc(*m.built, *edges, edge.Spec.Equal)) {
		a.Gateways, m.building = edges, edges
	}
	if edges != nil {
		for _, name := range sortedKeys(edgePorts) {
			if !have[name] {
				a.Attach = append(a.Attach, edgePorts[name])
			}
		}
	}
	slices.SortFunc(a.Detach, func(x, y Detach) int { return cmp.Compare(x.Name, y.Name) })

	encap := map[policy.VSID]policy.Encapsulation{}
	for _, v := range h.Subnets {
		encap[v.VirtualSubnetID] = v.Encapsulation
	}
	for _, rd := range sortedRDs(m.watchSet()) {
		p := m.rds[rd]
		if p == nil {
			continue
		}
		for _, vsid := range sortedKeys(p.subnets) {
			want := policy.EncapNVGRE
			if p.subnets[vsid].Encapsulation == policyapi.VXLAN {
				want = policy.EncapVXLAN
			}
			// A subnet wnvd does not list is NVGRE.
			if enc, ok := encap[vsid]; enc != want || !ok && want != policy.EncapNVGRE {
				a.Subnets = append(a.Subnets, policy.VirtualSubnet{VirtualSubnetID: vsid, Encapsulation: want})
			}
		}
	}

	// Diff ignores Unusable, which wnvd derives, but not Unsynchronized: a
	// record a redirect moved or kept while the server was away differs
	// from the server's, so the agent puts that, which confirms it.
	installed := policy.Objects{LookupRecords: h.Records, CustomerRoutes: h.Routes}
	a.Batch = policy.Diff(installed, m.desired(h))
	m.planPAs(h, a)
	if len(a.Subnets) == 0 && len(a.Detach) == 0 && len(a.Attach) == 0 && a.Gateways == nil && batchEmpty(a.Batch) &&
		len(a.AddPAs) == 0 && len(a.RemovePAs) == 0 {
		return nil
	}
	return a
}

// desired is the policy the host should have: every held routing domain's
// records and routes, with records fetched on demand taking precedence. A
// routing domain whose policy is still being fetched keeps what the host
// has of it (fail static, e.g. restored from the checkpoint), marked
// Unsynchronized until the server's policy replaces it.
func (m *Model) desired(h HostRead) policy.Objects {
	var o policy.Objects
	for _, k := range sortedRecKeys(m.extra) {
		o.LookupRecords = append(o.LookupRecords, m.extra[k])
	}
	kept := map[policy.VSID]bool{}
	for _, r := range h.Routes {
		if m.rds[r.RoutingDomainID] == nil && m.watchSet()[r.RoutingDomainID] {
			kept[r.VirtualSubnetID] = true
			o.CustomerRoutes = append(o.CustomerRoutes, r)
		}
	}
	for _, r := range h.Records {
		if _, ok := m.extra[keyOf(r)]; kept[r.VirtualSubnetID] && !ok {
			// Kept without the server's word on it.
			r.Unsynchronized = true
			o.LookupRecords = append(o.LookupRecords, r)
		}
	}
	// A CA the server has a record of is the server's; a Static record
	// shadows any Dynamic one of its CA.
	byCA := map[lookupKey]policy.RecordType{}
	for _, rd := range sortedRDs(m.watchSet()) {
		if p := m.rds[rd]; p != nil {
			for k, r := range p.records {
				if t, ok := byCA[lookupKey{k.vsid, k.ca}]; !ok || t != policy.Static {
					byCA[lookupKey{k.vsid, k.ca}] = r.Type
				}
			}
		}
	}
	for _, k := range sortedRecKeys(m.learned) {
		if _, ok := byCA[lookupKey{k.vsid, k.ca}]; !ok {
			o.LookupRecords = append(o.LookupRecords, m.learned[k])
		} else {
			delete(m.learned, k)
		}
	}
	for _, rd := range sortedRDs(m.watchSet()) {
		p := m.rds[rd]
		if p == nil {
			continue
		}
		for _, k := range sortedRecKeys(p.records) {
			r := p.records[k]
			if _, ok := m.extra[k]; !ok && (r.Type != policy.Dynamic || byCA[lookupKey{k.vsid, k.ca}] != policy.Static) {
				o.LookupRecords = append(o.LookupRecords, r)
			}
		}
		for _, r := range p.routes {
			o.CustomerRoutes = append(o.CustomerRoutes, r)
		}
	}
	slices.SortFunc(o.CustomerRoutes, func(x, y policy.CustomerRoute) int {
		return cmp.Or(slices.Compare(x.RoutingDomainID[:], y.RoutingDomainID[:]), cmp.Compare(x.VirtualSubnetID, y.VirtualSubnetID), x.DestinationPrefix.Addr().Compare(y.DestinationPrefix.Addr()),
			cmp.Compare(x.DestinationPrefix.Bits(), y.DestinationPrefix.Bits()), x.NextHop.Compare(y.NextHop))
	})
	return o
}

func batchEmpty(b policy.Batch) bool {
	return len(b.RemoveLookupRecords)+len(b.RemoveCustomerRoutes)+len(b.AddCustomerRoutes)+len(b.AddLookupRecords)+len(b.PutLookupRecords) == 0
}

// portSpec is the port of a VM placed on this host: the interface its
// hypervisor created, named at the policy server (default: the VM's name).
func portSpec(vm policyapi.VM) provider.PortSpec {
	ifname := vm.Interface
	if ifname == "" {
		ifname = vm.Name
	}
	return provider.PortSpec{Name: vm.Name, Interface: ifname, MACAddress: vm.MACAddress, VirtualSubnetID: vm.VirtualSubnetID,
		CustomerAddresses: vm.CustomerAddresses, ManagedBy: managedBy}
}

// samePort compares what the agent sets of a port.
func samePort(have, want provider.PortSpec) bool {
	return have.Interface == want.Interface && have.MACAddress == want.MACAddress && have.VirtualSubnetID == want.VirtualSubnetID &&
		slices.Equal(have.CustomerAddresses, want.CustomerAddresses)
}

func isNotFound(err error) bool { return errors.Is(err, policy.ErrNotFound) }

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sortedRecKeys(m map[recKey]policy.LookupRecord) []recKey {
	out := make([]recKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(x, y recKey) int {
		return cmp.Or(cmp.Compare(x.vsid, y.vsid), x.ca.Compare(y.ca), slices.Compare(x.mac[:], y.mac[:]))
	})
	return out
}

func sortedRDs(set map[policy.GUID]bool) []policy.GUID {
	out := make([]policy.GUID, 0, len(set))
	for rd := range set {
		out = append(out, rd)
	}
	slices.SortFunc(out, func(a, b policy.GUID) int { return slices.Compare(a[:], b[:]) })
	return out
}

func sameKeys(a, b []policyapi.RedirectKey) bool {
	return slices.EqualFunc(a, b, func(x, y policyapi.RedirectKey) bool {
		return x.LocalPA == y.LocalPA && x.PeerPA == y.PeerPA && string(x.Key) == string(y.Key)
	})
}

// edges returns the edge gateways the host is to build and their ports,
// or nil while the policy of one of their routing domains is still being
// fetched: a gateway is built from its subnets, and a partial list would
// remove the others.
func (m *Model) edges() (*[]edge.Spec, map[string]provider.PortSpec) {
	ports := map[string]provider.PortSpec{}
	specs := []edge.Spec{}
	for _, name := range sortedKeys(m.gateways) {
		g := m.gateways[name]
		p := m.rds[g.RoutingDomainID]
		if p == nil {
			return nil, ports
		}
		s, ok := edgeSpec(g, p.subnets, m.cfg.EdgePrefix, m.cfg.EdgeMTU)
		if !ok {
			continue // its subnet is gone: the gateway's delete follows
		}
		specs = append(specs, s)
		ports[s.Port] = provider.PortSpec{Name: s.Port, Interface: s.Port, MACAddress: g.MACAddress, VirtualSubnetID: g.VirtualSubnetID,
			CustomerAddresses: g.CustomerAddresses(), ManagedBy: managedByEdge}
	}
	if !m.cfg.Edges {
		return nil, nil
	}
	return &specs, ports
}

// edgeSpec is what the host builds for edge gateway g of a routing domain
// with subnets: its CAs on the tenant link with their subnet's prefix
// length, and a route to every other prefix of the routing domain via its
// subnet's virtual gateway of that family.
func edgeSpec(g policyapi.Gateway, subnets map[policy.VSID]policyapi.Subnet, prefix string, mtu int) (edge.Spec, bool) {
	own, ok := subnets[g.VirtualSubnetID]
	if !ok {
		return edge.Spec{}, false
	}
	s := edge.Spec{Name: g.Name, Namespace: prefix + g.Name, Port: edge.PortPrefix + g.Name, MAC: g.MACAddress, MTU: mtu,
		NAT: g.Mode == policyapi.GatewayNAT, ExternalInterface: g.ExternalInterface,
		ExternalAddresses: g.ExternalAddresses, ExternalGateways: g.ExternalGateways}
	for _, ca := range g.CustomerAddresses() {
		for _, p := range own.Prefixes {
			if p.Contains(ca) {
				s.Addresses = append(s.Addresses, netip.PrefixFrom(ca, p.Bits()))
			}
		}
	}
	for _, vsid := range sortedKeys(subnets) {
		for _, p := range subnets[vsid].Prefixes {
			if vsid == g.VirtualSubnetID && slices.Contains(own.Prefixes, p) {
				continue
			}
			for _, via := range own.Gateways {
				if via.Is4() == p.Addr().Is4() {
					s.Routes = append(s.Routes, edge.Route{Prefix: p.Masked(), Via: via})
					break
				}
			}
		}
	}
	return s, true
}
