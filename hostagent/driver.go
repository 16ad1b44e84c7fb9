package hostagent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
)

// driver is the imperative shell around the model: one goroutine owns the
// model, starts the I/O its Ready asks for, each in a goroutine of its own,
// and steps the model with the results.
type driver struct {
	a *Agent
	m *Model
	// results carries the answers of the I/O the driver started; notes the
	// host's notifications, offered without blocking.
	results, notes chan Event
	stopWatch      context.CancelFunc
	// unfiltered: the server refused a watch filtered by host.
	unfiltered bool
	// logged remembers what is logged once: missing interfaces and
	// endpoints an older peer lacks.
	logged map[string]bool
}

func newDriver(a *Agent) *driver {
	m := NewModel(ModelConfig{
		Host: a.cfg.Host, MigrationGrace: a.cfg.MigrationGrace, NegativeTTL: a.cfg.NegativeTTL,
		MaxLookups: 8, QueuePerVSID: 64, QueueTotal: 4096, MaxPolicyFetches: 4, InterfaceRetry: time.Second,
		Edges: a.cfg.Edges != nil, EdgePrefix: a.cfg.EdgePrefix, EdgeMTU: a.cfg.EdgeMTU,
		RetryMin: a.cfg.RetryMin, RetryMax: a.cfg.RetryMax, Rand: rand.Float64,
	})
	m.Step(time.Now(), Registered{})
	return &driver{a: a, m: m, results: make(chan Event, 64), notes: make(chan Event, 1024), logged: map[string]bool{}}
}

func (d *driver) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer func() {
		if d.stopWatch != nil {
			d.stopWatch()
		}
	}()
	for {
		r := d.m.Ready(time.Now())
		d.execute(ctx, r)
		d.a.status.publish(d.m)
		timer.Stop()
		if !r.Wake.IsZero() {
			timer.Reset(time.Until(r.Wake))
		}
		select {
		case <-ctx.Done():
			return
		case ev := <-d.results:
			d.step(ev)
		case ev := <-d.notes:
			d.step(ev)
		case <-d.a.cfg.Interfaces:
			d.step(InterfaceAppeared{})
		case <-timer.C:
			d.step(Tick{})
		}
		// Take in what else has arrived before asking for I/O again, so
		// that a burst of watch events ends in one reconcile.
		for drained := false; !drained; {
			select {
			case ev := <-d.results:
				d.step(ev)
			case ev := <-d.notes:
				d.step(ev)
			default:
				drained = true
			}
		}
	}
}

// watchRefused is the driver's own: the server refused the host filter.
type watchRefused struct {
	gen int
	err error
}

func (watchRefused) event() {}

// step logs what a person wants to know of ev and hands it to the model.
func (d *driver) step(ev Event) {
	log := d.a.log
	switch ev := ev.(type) {
	case watchRefused:
		log.Info("the policy server does not filter watches by host: watching every routing domain", "err", ev.err)
		d.unfiltered = true
		d.m.Step(time.Now(), WatchEnded{Gen: ev.gen})
		return
	case WatchEvent:
		if ev.Event.Type == policyapi.EventResync {
			log.Info("watch asks for a resync")
		}
	case LookupDone:
		if ev.Err == nil {
			log.Debug("fetched on demand", "vsid", ev.VSID, "ca", ev.CA, "pa", ev.Answer.Record.ProviderAddress)
		} else if !isNotFound(ev.Err) {
			log.Debug("on-demand lookup", "vsid", ev.VSID, "ca", ev.CA, "err", ev.Err)
		}
	case HostRead:
		if ev.Err != nil {
			log.Warn("reading the host", "err", ev.Err)
		}
	case Applied:
		if ev.Batch != nil {
			log.Warn("installing policy", "err", ev.Batch)
		}
		if ev.Subnets != nil {
			log.Warn("setting virtual subnets", "err", ev.Subnets)
		}
		if ev.Gateways != nil {
			log.Warn("building edge gateways", "err", ev.Gateways)
		}
		for _, p := range ev.Ports {
			switch {
			case p.Err == nil && p.Attach:
				log.Info("port attached", "vm", p.Name)
				delete(d.logged, "waiting "+p.Name)
			case p.Err == nil:
				log.Info("port detached", "vm", p.Name)
			case p.Attach && isNotFound(p.Err):
				d.once("waiting "+p.Name, "waiting for the VM's interface", "vm", p.Name, "err", p.Err)
			default:
				log.Warn("reconciling ports", "vm", p.Name, "err", p.Err)
			}
		}
	case KeysFetched:
		if isNotFound(ev.Err) {
			d.once("keys", "the policy server has no redirect keys: redirects stay unauthenticated", "err", ev.Err)
		} else if ev.Err != nil {
			log.Debug("fetching redirect keys", "err", ev.Err)
		}
	case KeysPushed:
		if isNotFound(ev.Err) {
			d.once("push", "wnvd takes no redirect keys: redirects stay unauthenticated", "err", ev.Err)
		} else if ev.Err != nil {
			log.Warn("handing redirect keys to wnvd", "err", ev.Err)
		}
	}
	d.m.Step(time.Now(), ev)
}

func (d *driver) once(key, msg string, args ...any) {
	if !d.logged[key] {
		d.logged[key] = true
		d.a.log.Info(msg, args...)
	}
}

// execute starts the I/O of r.
func (d *driver) execute(ctx context.Context, r Ready) {
	a := d.a
	done := func(ev Event) { send(ctx, d.results, ev) }
	if r.Watch != nil {
		d.watch(ctx, *r.Watch)
	}
	if r.ListVMs {
		go func() {
			vms, err := a.server.VMs(ctx, policyapi.VMFilter{Host: a.cfg.Host})
			var gws []policyapi.Gateway
			if err == nil {
				gws, err = a.server.Gateways(ctx)
			}
			gws = slices.DeleteFunc(gws, func(g policyapi.Gateway) bool { return g.Host != a.cfg.Host })
			done(VMsListed{VMs: vms, Gateways: gws, Err: err})
		}()
	}
	for _, rd := range r.FetchPolicy {
		go func() {
			p, err := a.server.Policy(ctx, rd)
			done(PolicyFetched{RD: rd, Policy: p, Err: err})
		}()
	}
	for _, l := range r.Lookups {
		go func() {
			ans, err := a.server.Lookup(ctx, l.VSID, l.CA)
			done(LookupDone{VSID: l.VSID, CA: l.CA, Answer: ans, Err: err})
		}()
	}
	for _, name := range r.ResolveVMs {
		go func() {
			vm, err := a.server.VM(ctx, name)
			done(VMResolved{Name: name, VM: vm, Err: err})
		}()
	}
	if r.ReadHost {
		go func() { done(d.readHost(ctx)) }()
	}
	if r.Apply != nil {
		go func() { done(d.apply(ctx, *r.Apply)) }()
	}
	if r.FetchKeys {
		go func() {
			keys, err := a.server.RedirectKeys(ctx, a.cfg.Host)
			done(KeysFetched{Keys: keys, Err: err})
		}()
	}
	for _, l := range r.Report {
		go func() {
			err := a.retry(ctx, "reporting a learned CA", func() error {
				_, err := a.server.ReportLearned(ctx, a.cfg.Host, l)
				return err
			})
			if err != nil && ctx.Err() == nil {
				a.log.Warn("the policy server refused a learned CA", "vsid", l.VirtualSubnetID, "ca", l.CustomerAddress, "mac", l.MACAddress, "err", err)
			}
		}()
	}
	for _, l := range r.Forget {
		go func() {
			err := a.retry(ctx, "forgetting a learned CA", func() error {
				return a.server.ForgetLearned(ctx, a.cfg.Host, l.VirtualSubnetID, l.CustomerAddress)
			})
			if err != nil && !isNotFound(err) && ctx.Err() == nil {
				a.log.Warn("forgetting a learned CA at the policy server", "vsid", l.VirtualSubnetID, "ca", l.CustomerAddress, "err", err)
			}
		}()
	}
	if r.PushKeys != nil {
		keys := *r.PushKeys
		go func() { done(KeysPushed{Err: pushKeys(ctx, a.host, keys)}) }()
	}
}

// pushKeys hands the policy server's redirect keys to wnvd in wnvd's form.
func pushKeys(ctx context.Context, host Provider, keys []policyapi.RedirectKey) error {
	out := make([]provider.RedirectKey, len(keys))
	for i, k := range keys {
		if len(k.Key) != len(out[i].Key) {
			return fmt.Errorf("the policy server's redirect key for %s and %s has %d bytes, not %d", k.LocalPA, k.PeerPA, len(k.Key), len(out[i].Key))
		}
		out[i].LocalPA, out[i].PeerPA = k.LocalPA, k.PeerPA
		copy(out[i].Key[:], k.Key)
	}
	_, err := host.SetRedirectKeys(ctx, out)
	return err
}

// watch replaces the open stream with one for spec. The policy client
// reconnects a broken stream by itself; an end is the server's word
// (resync, refusal).
func (d *driver) watch(ctx context.Context, spec WatchSpec) {
	if d.stopWatch != nil {
		d.stopWatch()
	}
	wctx, cancel := context.WithCancel(ctx)
	d.stopWatch = cancel
	a := d.a
	host, rds := a.cfg.Host, spec.RDs
	if d.unfiltered {
		host, rds = "", nil
	}
	go func() {
		started := false
		for ev, err := range a.server.WatchHost(wctx, spec.Rev, host, rds...) {
			if err != nil {
				if !started && host != "" && errors.Is(err, policy.ErrInvalid) {
					// A server older than the host filter refuses it: watch
					// everything, as agents did before; the model picks.
					send(wctx, d.results, watchRefused{gen: spec.Gen, err: err})
					return
				}
				a.log.Debug("watch", "err", err)
				continue
			}
			started = true
			send(wctx, d.results, WatchEvent{Gen: spec.Gen, Event: ev})
		}
		if wctx.Err() == nil {
			send(wctx, d.results, WatchEnded{Gen: spec.Gen})
		}
	}()
}

func (d *driver) readHost(ctx context.Context) HostRead {
	h := d.a.host
	var r HostRead
	if r.Ports, r.Err = h.Ports(ctx); r.Err != nil {
		return r
	}
	if r.Records, r.Err = h.LookupRecords(ctx, policy.LookupRecordFilter{}); r.Err != nil {
		return r
	}
	if r.Routes, r.Err = h.CustomerRoutes(ctx, policy.CustomerRouteFilter{}); r.Err != nil {
		return r
	}
	if r.Subnets, r.Err = h.VirtualSubnets(ctx, policy.VirtualSubnetFilter{}); r.Err != nil {
		return r
	}
	r.PAs, r.Err = h.ProviderAddresses(ctx, policy.ProviderAddressFilter{})
	return r
}

// apply makes the changes of one reconcile. Ports come first: a migrating
// VM's new port, and the source's migrated detach that starts its
// forwarding, must not wait for the policy. The policy difference is one
// provider API call, published by wnvd as one table.
func (d *driver) apply(ctx context.Context, ap Apply) Applied {
	h := d.a.host
	var out Applied
	for _, p := range ap.Detach {
		var err error
		if p.Migrated {
			err = h.DetachMigratedPort(ctx, p.Name)
		} else {
			err = h.DetachPort(ctx, p.Name)
		}
		out.Ports = append(out.Ports, PortResult{Name: p.Name, Err: err})
	}
	if ap.Gateways != nil {
		out.Gateways = d.a.cfg.Edges.Reconcile(ctx, *ap.Gateways)
	}
	for _, spec := range ap.Attach {
		_, err := h.AttachPort(ctx, spec)
		out.Ports = append(out.Ports, PortResult{Name: spec.Name, Attach: true, Err: err})
	}
	out.PAs = d.applyPAs(ctx, ap)
	var errs []error
	for _, v := range ap.Subnets {
		_, err := h.SetVirtualSubnets(ctx, policy.VirtualSubnetFilter{VirtualSubnetID: v.VirtualSubnetID}, policy.VirtualSubnetChange{Encapsulation: &v.Encapsulation})
		if errors.Is(err, policy.ErrNotFound) {
			_, err = h.AddVirtualSubnet(ctx, v)
		}
		errs = append(errs, err)
	}
	out.Subnets = errors.Join(errs...)
	if !batchEmpty(ap.Batch) {
		out.Batch = h.Apply(ctx, ap.Batch)
		if isRequestError(out.Batch) {
			// One item wnvd refuses must not hold back the rest: apply
			// them one by one, keeping the errors for the retry.
			out.Batch = applyEach(ctx, h, ap.Batch)
		}
	}
	return out
}

func isRequestError(err error) bool {
	return errors.Is(err, policy.ErrInvalid) || errors.Is(err, policy.ErrNotFound) || errors.Is(err, policy.ErrExists)
}

// applyEach applies b's items as batches of one, in b's order; a remove of
// what is gone already is no error.
func applyEach(ctx context.Context, h Provider, b policy.Batch) error {
	var errs []error
	one := func(b policy.Batch, remove bool) {
		if err := h.Apply(ctx, b); err != nil && !(remove && errors.Is(err, policy.ErrNotFound)) {
			errs = append(errs, err)
		}
	}
	for _, r := range b.RemoveLookupRecords {
		one(policy.Batch{RemoveLookupRecords: []policy.LookupRecord{r}}, true)
	}
	for _, r := range b.RemoveCustomerRoutes {
		one(policy.Batch{RemoveCustomerRoutes: []policy.CustomerRoute{r}}, true)
	}
	for _, r := range b.AddCustomerRoutes {
		one(policy.Batch{AddCustomerRoutes: []policy.CustomerRoute{r}}, false)
	}
	for _, r := range b.AddLookupRecords {
		one(policy.Batch{AddLookupRecords: []policy.LookupRecord{r}}, false)
	}
	for _, r := range b.PutLookupRecords {
		one(policy.Batch{PutLookupRecords: []policy.LookupRecord{r}}, false)
	}
	return errors.Join(errs...)
}
