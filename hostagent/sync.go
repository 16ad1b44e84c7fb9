package hostagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyserver"
	"github.com/wnv/wnv/provider"
)

// fetch is a request from the notification API: fetch the record of CA in
// VSID (a policy mismatch or a redirect), or re-list everything (events
// were lost).
type fetch struct {
	vsid   policy.VSID
	ca     netip.Addr
	resync bool
}

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

// rdModel is the desired policy of one routing domain, kept by watch.
type rdModel struct {
	records map[recKey]policy.LookupRecord
	routes  map[routeKey]policy.CustomerRoute
	subnets map[policy.VSID]policyserver.Subnet
}

func newRDModel(p policyserver.Policy) *rdModel {
	m := &rdModel{records: map[recKey]policy.LookupRecord{}, routes: map[routeKey]policy.CustomerRoute{}, subnets: map[policy.VSID]policyserver.Subnet{}}
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

// syncer owns the agent's model of the desired state and moves the host
// towards it. Only its run goroutine touches the model.
type syncer struct {
	a       *Agent
	fetches chan fetch

	listed bool
	local  map[string]policyserver.VM // VMs placed on this host
	rds    map[policy.GUID]*rdModel
	stale  bool                           // the VMs were listed since rds was read
	extra  map[recKey]policy.LookupRecord // fetched on demand, until the watch says more
	dirty  bool                           // the last reconcile failed: try again
	// waiting are the VMs placed here whose interface does not exist yet.
	waiting map[string]bool
	// linger keeps the routing domain of a VM that migrated away until its
	// grace period ends, so the host keeps the record that its forwarding
	// to the new PA follows.
	linger map[policy.GUID]time.Time
}

func newSyncer(a *Agent) *syncer {
	return &syncer{a: a, fetches: make(chan fetch, 256), linger: map[policy.GUID]time.Time{}}
}

// request queues a fetch; when the queue is full the request is dropped (the
// host raises the mismatch again after its dedup window).
func (s *syncer) request(f fetch) {
	select {
	case s.fetches <- f:
	default:
	}
}

type watchItem struct {
	ev  policyserver.Event
	err error
}

// run watches, lists and reconciles until ctx ends. Each round opens a watch
// from now, waits for its first progress event, lists, then applies events
// as levels; a resync or a stream that ends starts a new round.
func (s *syncer) run(ctx context.Context) {
	a := s.a
	retryTick := time.NewTicker(time.Second)
	defer retryTick.Stop()
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		events := make(chan watchItem, 1024)
		go func() {
			defer close(events)
			for ev, err := range a.server.Watch(wctx, 0) {
				select {
				case events <- watchItem{ev, err}:
				case <-wctx.Done():
					return
				}
			}
		}()
		s.round(ctx, events, retryTick.C)
		cancel()
		for range events {
		}
		sleep(ctx, a.cfg.RetryMin)
	}
}

// round runs one watch stream; it returns when the stream ends or asks for
// a resync.
func (s *syncer) round(ctx context.Context, events <-chan watchItem, retryTick <-chan time.Time) {
	a := s.a
	// Wait for the stream to start: events after its first progress are
	// applied on top of a list made after it, which converges as levels.
	for started := false; !started; {
		select {
		case <-ctx.Done():
			return
		case it, ok := <-events:
			if !ok {
				return
			}
			if it.err != nil {
				a.log.Debug("watch", "err", it.err)
				continue
			}
			started = it.ev.Type == policyserver.EventProgress
		case <-s.fetches:
			// The server is not answering yet; the mismatch comes again.
		}
	}
	if err := retry(ctx, a, "list VMs", func() error { return s.relist(ctx) }); err != nil {
		return
	}
	s.reconcile(ctx)
	for {
		relist := false
		select {
		case <-ctx.Done():
			return
		case <-retryTick:
			if s.dirty || len(s.waiting) > 0 {
				s.reconcile(ctx)
			}
			continue
		case <-a.cfg.Interfaces:
			if len(s.waiting) > 0 {
				s.reconcile(ctx)
			}
			continue
		case f := <-s.fetches:
			relist = s.fetch(ctx, f)
		case it, ok := <-events:
			if !ok {
				return
			}
			if s.apply(it) {
				return
			}
			relist = s.needsRelist(it.ev)
			// Apply what else has arrived before reconciling once.
			for drained := false; !drained; {
				select {
				case it, ok := <-events:
					if !ok {
						return
					}
					if s.apply(it) {
						return
					}
					relist = relist || s.needsRelist(it.ev)
				default:
					drained = true
				}
			}
		}
		if relist {
			if err := s.relist(ctx); err != nil {
				a.log.Warn("listing the VMs placed here", "err", err)
				s.dirty = true
				continue
			}
		}
		s.reconcile(ctx)
	}
}

// needsRelist reports whether ev places a VM on this host or takes one away.
func (s *syncer) needsRelist(ev policyserver.Event) bool {
	me := s.a.cfg.Host
	return ev.Kind == policyserver.KindVM && ((ev.VM != nil && ev.VM.Host == me) || (ev.PrevVM != nil && ev.PrevVM.Host == me))
}

// apply updates the model with one watch event; it reports true when the
// round must end (resync).
func (s *syncer) apply(it watchItem) bool {
	if it.err != nil {
		s.a.log.Debug("watch", "err", it.err)
		return false
	}
	ev := it.ev
	switch ev.Type {
	case policyserver.EventResync:
		s.a.log.Info("watch asks for a resync")
		return true
	case policyserver.EventProgress:
		return false
	}
	m := s.rds[ev.RoutingDomainID]
	if m == nil {
		return false
	}
	switch ev.Kind {
	case policyserver.KindVM, policyserver.KindGateway, policyserver.KindSubnet:
		for _, r := range ev.PrevRecords {
			delete(m.records, keyOf(r))
			delete(s.extra, keyOf(r))
		}
		for _, r := range ev.PrevRoutes {
			delete(m.routes, routeKeyOf(r))
		}
		if ev.Type == policyserver.EventPut {
			for _, r := range ev.Records {
				m.records[keyOf(r)] = r
				delete(s.extra, keyOf(r))
			}
			for _, r := range ev.Routes {
				m.routes[routeKeyOf(r)] = r
			}
		}
		if ev.Kind == policyserver.KindSubnet {
			if ev.PrevSubnet != nil {
				delete(m.subnets, ev.PrevSubnet.VirtualSubnetID)
			}
			if ev.Subnet != nil && ev.Type == policyserver.EventPut {
				m.subnets[ev.Subnet.VirtualSubnetID] = *ev.Subnet
			}
		}
	}
	return false
}

// relist reads the VMs placed on this host and starts the grace period of
// those that left. The policy of their routing domains is read by the next
// reconcile, after the ports: a migrating VM's new port must not wait for
// that read, which is the slowest call to the server.
func (s *syncer) relist(ctx context.Context) error {
	a := s.a
	vms, err := a.server.VMs(ctx, policyserver.VMFilter{Host: a.cfg.Host})
	if err != nil {
		return err
	}
	local := map[string]policyserver.VM{}
	for _, vm := range vms {
		local[vm.Name] = vm
	}
	if err := s.departures(ctx, local); err != nil {
		return err
	}
	s.local, s.stale, s.listed = local, true, true
	return nil
}

// readPolicy reads the policy of the routing domains of the VMs placed here
// and of those that left within their grace period.
func (s *syncer) readPolicy(ctx context.Context) error {
	want := map[policy.GUID]bool{}
	for _, vm := range s.local {
		want[vm.RoutingDomainID] = true
	}
	now := time.Now()
	for rd, until := range s.linger {
		if now.Before(until) {
			want[rd] = true
		} else {
			delete(s.linger, rd)
		}
	}
	rds := map[policy.GUID]*rdModel{}
	for rd := range want {
		p, err := s.a.server.Policy(ctx, rd)
		if err != nil {
			return err
		}
		rds[rd] = newRDModel(p)
	}
	s.rds, s.extra, s.stale = rds, map[recKey]policy.LookupRecord{}, false
	return nil
}

// departures starts the grace period of the routing domain of each VM that
// still has a port here but is placed on another host now, and schedules a
// re-list for its end.
func (s *syncer) departures(ctx context.Context, local map[string]policyserver.VM) error {
	a := s.a
	ports, err := a.host.Ports(ctx)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if _, ok := local[p.Name]; ok || !a.managed(p) {
			continue
		}
		vm, err := a.server.VM(ctx, p.Name)
		if errors.Is(err, policy.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if _, ok := s.linger[vm.RoutingDomainID]; !ok {
			s.linger[vm.RoutingDomainID] = time.Now().Add(a.cfg.MigrationGrace)
			time.AfterFunc(a.cfg.MigrationGrace, func() { s.request(fetch{resync: true}) })
		}
	}
	return nil
}

// fetch answers a notification; it reports whether a full re-list is due.
func (s *syncer) fetch(ctx context.Context, f fetch) bool {
	if f.resync {
		return true
	}
	ans, err := s.a.server.Lookup(ctx, f.vsid, f.ca)
	if err != nil {
		if !errors.Is(err, policy.ErrNotFound) {
			s.a.log.Debug("on-demand lookup", "vsid", f.vsid, "ca", f.ca, "err", err)
		}
		return false
	}
	s.extra[keyOf(ans.Record)] = ans.Record
	s.a.log.Debug("fetched on demand", "vsid", f.vsid, "ca", f.ca, "pa", ans.Record.ProviderAddress)
	return false
}

// reconcile moves the host's ports, virtual subnets, customer routes and
// lookup records to the model, by level: it reads what the host has and
// applies the difference. Ports come first, before the policy is read again
// after a relist. Failures leave the rest in place and mark the syncer dirty
// so that it tries again.
func (s *syncer) reconcile(ctx context.Context) {
	if !s.listed {
		return
	}
	errs := s.reconcilePorts(ctx)
	if s.stale {
		if err := s.readPolicy(ctx); err != nil {
			errs = append(errs, fmt.Errorf("read the policy of the local VMs' routing domains: %w", err))
		}
	}
	if !s.stale {
		errs = append(errs, s.reconcileSubnets(ctx)...)
		errs = append(errs, s.reconcilePolicy(ctx)...)
	}
	s.dirty = len(errs) > 0
	for _, err := range errs {
		s.a.log.Warn("reconciling the host", "err", err)
	}
}

func (s *syncer) reconcilePorts(ctx context.Context) []error {
	a := s.a
	cur, err := a.host.Ports(ctx)
	if err != nil {
		return []error{err}
	}
	var errs []error
	waiting := map[string]bool{}
	defer func() { s.waiting = waiting }()
	have := map[string]provider.Port{}
	for _, p := range cur {
		have[p.Name] = p
		if !a.managed(p) {
			continue
		}
		vm, ok := s.local[p.Name]
		if ok && samePort(p.PortSpec, a.portSpec(vm)) {
			continue
		}
		// Placed elsewhere (migrated) or changed: keep the VM's NIC. Gone
		// from the server: delete it.
		_, err := a.server.VM(ctx, p.Name)
		switch {
		case err == nil:
			err = a.host.DetachMigratedPort(ctx, p.Name)
		case errors.Is(err, policy.ErrNotFound):
			err = a.host.DetachPort(ctx, p.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(have, p.Name)
		a.log.Info("port detached", "vm", p.Name)
	}
	for name, vm := range s.local {
		if _, ok := have[name]; ok {
			continue
		}
		if _, err := a.host.AttachPort(ctx, a.portSpec(vm)); err != nil {
			if errors.Is(err, policy.ErrNotFound) {
				// Its hypervisor has not created the interface yet: attach
				// it when it appears.
				if !s.waiting[name] {
					a.log.Info("waiting for the VM's interface", "vm", name, "err", err)
				}
				waiting[name] = true
				continue
			}
			errs = append(errs, err)
			continue
		}
		a.log.Info("port attached", "vm", name)
	}
	return errs
}

// samePort compares what the agent sets of a port.
func samePort(have, want provider.PortSpec) bool {
	if have.Interface != want.Interface || have.MACAddress != want.MACAddress || have.VirtualSubnetID != want.VirtualSubnetID || len(have.CustomerAddresses) != len(want.CustomerAddresses) {
		return false
	}
	for i := range have.CustomerAddresses {
		if have.CustomerAddresses[i] != want.CustomerAddresses[i] {
			return false
		}
	}
	return true
}

func (s *syncer) reconcileSubnets(ctx context.Context) []error {
	a := s.a
	cur, err := a.host.VirtualSubnets(ctx, policy.VirtualSubnetFilter{})
	if err != nil {
		return []error{err}
	}
	have := map[policy.VSID]policy.Encapsulation{}
	for _, v := range cur {
		have[v.VirtualSubnetID] = v.Encapsulation
	}
	var errs []error
	for _, m := range s.rds {
		for vsid, sub := range m.subnets {
			want := policy.EncapNVGRE
			if sub.Encapsulation == policyserver.VXLAN {
				want = policy.EncapVXLAN
			}
			enc, ok := have[vsid]
			switch {
			case !ok && want == policy.EncapVXLAN:
				_, err = a.host.AddVirtualSubnet(ctx, policy.VirtualSubnet{VirtualSubnetID: vsid, Encapsulation: want})
			case ok && enc != want:
				_, err = a.host.SetVirtualSubnets(ctx, policy.VirtualSubnetFilter{VirtualSubnetID: vsid}, policy.VirtualSubnetChange{Encapsulation: &want})
			default:
				continue
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// desired is the model as policy objects: every held routing domain's
// records and routes, with records fetched on demand taking precedence.
func (s *syncer) desired() policy.Objects {
	var o policy.Objects
	seen := map[recKey]bool{}
	for k, r := range s.extra {
		seen[k] = true
		o.LookupRecords = append(o.LookupRecords, r)
	}
	for _, m := range s.rds {
		for k, r := range m.records {
			if !seen[k] {
				o.LookupRecords = append(o.LookupRecords, r)
			}
		}
		for _, r := range m.routes {
			o.CustomerRoutes = append(o.CustomerRoutes, r)
		}
	}
	return o
}

func (s *syncer) reconcilePolicy(ctx context.Context) []error {
	h := s.a.host
	recs, err := h.LookupRecords(ctx, policy.LookupRecordFilter{})
	if err != nil {
		return []error{err}
	}
	routes, err := h.CustomerRoutes(ctx, policy.CustomerRouteFilter{})
	if err != nil {
		return []error{err}
	}
	b := policy.Diff(policy.Objects{LookupRecords: recs, CustomerRoutes: routes}, s.desired())
	var errs []error
	keep := func(err error) {
		if err != nil && !errors.Is(err, policy.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	for _, r := range b.RemoveLookupRecords {
		_, err := h.RemoveLookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: r.CustomerAddress, VirtualSubnetID: r.VirtualSubnetID, MACAddress: r.MACAddress})
		keep(err)
	}
	for _, r := range b.RemoveCustomerRoutes {
		_, err := h.RemoveCustomerRoutes(ctx, policy.CustomerRouteFilter{RoutingDomainID: r.RoutingDomainID, VirtualSubnetID: r.VirtualSubnetID, DestinationPrefix: r.DestinationPrefix, NextHop: r.NextHop})
		keep(err)
	}
	for _, r := range b.AddCustomerRoutes {
		_, err := h.AddCustomerRoute(ctx, r)
		keep(err)
	}
	for _, r := range b.AddLookupRecords {
		_, err := h.AddLookupRecord(ctx, r)
		keep(err)
	}
	for _, r := range b.PutLookupRecords {
		_, err := h.SetLookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: r.CustomerAddress, VirtualSubnetID: r.VirtualSubnetID, MACAddress: r.MACAddress},
			policy.LookupRecordChange{ProviderAddress: &r.ProviderAddress, CustomerID: &r.CustomerID, Context: &r.Context, Rule: &r.Rule, VMName: &r.VMName, UseVmMACAddress: &r.UseVmMACAddress})
		keep(err)
	}
	return errs
}
