package policyserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// progressEvery is how often an idle watch stream gets a progress event, a
// keepalive that also tells the client how far it has seen.
const progressEvery = 10 * time.Second

// ErrCompacted is returned by Watch after it sent the resync event.
var ErrCompacted = errors.New("watch revision is compacted: re-read the policy")

// Watch sends to emit the changes after revision rev (0: from now) that
// concern the routing domains rds (all when empty) or, with host, place a VM
// on that host or take one away, starting with a progress event, each with
// its JSON line. It returns when ctx ends, emit fails, or after a resync
// event when rev is compacted or more than MaxReplay revisions old. A
// client holding MaxWatchesPerClient streams is refused before anything is
// sent.
func (s *Store) Watch(ctx context.Context, client string, rev int64, rds []policy.GUID, host string, emit func(ev *policyapi.Event, line []byte) error) error {
	if rev < 0 {
		return invalidf("rev %d is negative: use 0 (from now) or a revision read from the policy", rev)
	}
	release, err := s.watchers.take(client, s.MaxWatchesPerClient)
	if err != nil {
		return err
	}
	defer release()
	cur, err := s.revision(ctx)
	if err != nil {
		return err
	}
	if rev == 0 {
		rev = cur
	}
	if s.MaxReplay > 0 && cur-rev > s.MaxReplay {
		if err := emit(lined(&policyapi.Event{Type: policyapi.EventResync, Revision: cur})); err != nil {
			return err
		}
		return ErrCompacted
	}
	if err := emit(lined(&policyapi.Event{Type: policyapi.EventProgress, Revision: rev})); err != nil {
		return err
	}
	sub, err := s.hub.subscribe(ctx, rev)
	if err != nil {
		return err
	}
	if sub != nil {
		defer s.hub.unsubscribe(sub)
		return sub.run(ctx, rev, rds, host, emit)
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	seen := rev
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := emit(lined(&policyapi.Event{Type: policyapi.EventProgress, Revision: seen})); err != nil {
				return err
			}
		case wr, ok := <-wch:
			if !ok {
				return ctx.Err()
			}
			if wr.CompactRevision != 0 {
				if err := emit(lined(&policyapi.Event{Type: policyapi.EventResync, Revision: wr.CompactRevision})); err != nil {
					return err
				}
				return ErrCompacted
			}
			if err := wr.Err(); err != nil {
				return etcdError(err)
			}
			if wr.IsProgressNotify() {
				seen = max(seen, wr.Header.Revision)
				if err := emit(lined(&policyapi.Event{Type: policyapi.EventProgress, Revision: seen})); err != nil {
					return err
				}
				continue
			}
			for _, e := range wr.Events {
				ev, err := eventOf(e)
				if err != nil {
					return err
				}
				if ev == nil || !concerns(ev, rds, host) {
					continue
				}
				if err := emit(lined(ev)); err != nil {
					return err
				}
			}
			if n := len(wr.Events); n > 0 {
				seen = wr.Events[n-1].Kv.ModRevision
			}
		}
	}
}

// watchers counts the watch streams of each client.
type watchers struct {
	mu sync.Mutex
	n  map[string]int
}

// take counts a stream of client, or refuses it when the client holds max
// already; release uncounts it.
func (w *watchers) take(client string, max int) (release func(), err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if max > 0 && w.n[client] >= max {
		return nil, &policy.Error{Kind: policy.ErrTooMany,
			Msg: fmt.Sprintf("client %s already has %d watch streams, the most one client may hold: close one before watching again", client, max)}
	}
	if w.n == nil {
		w.n = map[string]int{}
	}
	w.n[client]++
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.n[client]--; w.n[client] == 0 {
			delete(w.n, client)
		}
	}, nil
}

// revision is etcd's current revision, read with the smallest request.
func (s *Store) revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, Prefix+"idx/vsid/", clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		return 0, etcdError(err)
	}
	return resp.Header.Revision, nil
}

func lined(ev *policyapi.Event) (*policyapi.Event, []byte) {
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err) // wire types with text marshalers that cannot fail
	}
	return ev, append(b, '\n')
}

// hub is one etcd watch per server shared by the watch streams that ask
// for revisions it has seen: a thousand watching hosts cost etcd one watcher,
// and each event is decoded and encoded once. It keeps the events after
// revision from in a bounded ring, so a stream resuming after a reconnect
// replays from memory; a stream asking for an older revision gets its own
// etcd watch. It starts with the first stream and stops, closing every
// stream (whose clients reconnect), when its etcd watch fails.
type hub struct {
	s       *Store
	mu      sync.Mutex
	running bool
	from    int64
	ring    []*cachedEvent
	subs    map[*subscriber]struct{}
}

type cachedEvent struct {
	ev   *policyapi.Event
	line []byte
}

// hubRing bounds the events the hub keeps for resuming streams.
const hubRing = 1 << 16

// subscriber is one stream fed by the hub.
type subscriber struct {
	backlog []*cachedEvent
	ch      chan []*cachedEvent // closed by the hub: too slow, or the hub stopped
}

// subscribe returns a subscriber fed from after rev, or nil when rev is
// older than what the hub holds.
func (h *hub) subscribe(ctx context.Context, rev int64) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		rev, err := h.s.revision(ctx)
		if err != nil {
			return nil, err
		}
		h.running, h.from, h.ring, h.subs = true, rev, nil, map[*subscriber]struct{}{}
		go h.run(h.from)
	}
	if rev < h.from {
		return nil, nil
	}
	sub := &subscriber{ch: make(chan []*cachedEvent, 1024)}
	for _, ce := range h.ring {
		if ce.ev.Revision > rev {
			sub.backlog = append(sub.backlog, ce)
		}
	}
	h.subs[sub] = struct{}{}
	return sub, nil
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
}

// run is the hub's etcd watch from after rev.
func (h *hub) run(rev int64) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer cancel()
	for wr := range h.s.cli.Watch(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV()) {
		if wr.CompactRevision != 0 || wr.Err() != nil {
			break
		}
		var batch []*cachedEvent
		for _, e := range wr.Events {
			// A damaged value is skipped here; a stream's own watch reports it.
			if ev, err := eventOf(e); err == nil && ev != nil {
				ce := &cachedEvent{}
				ce.ev, ce.line = lined(ev)
				batch = append(batch, ce)
			}
		}
		if len(batch) == 0 {
			continue
		}
		h.mu.Lock()
		h.ring = append(h.ring, batch...)
		if len(h.ring) > hubRing {
			drop := len(h.ring) - hubRing/2
			h.from = h.ring[drop-1].ev.Revision
			h.ring = append([]*cachedEvent(nil), h.ring[drop:]...)
		}
		for sub := range h.subs {
			select {
			case sub.ch <- batch:
			default:
				h.drop(sub)
			}
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	for sub := range h.subs {
		h.drop(sub)
	}
	h.running = false
	h.mu.Unlock()
}

// drop ends a subscriber's stream; its client resumes from its revision.
func (h *hub) drop(sub *subscriber) {
	close(sub.ch)
	delete(h.subs, sub)
}

// errHubClosed ends a stream the hub dropped; the client reconnects.
var errHubClosed = errors.New("watch stream fell behind or etcd's watch failed: reconnect from the last revision")

// run feeds one stream from the hub.
func (sub *subscriber) run(ctx context.Context, rev int64, rds []policy.GUID, host string, emit func(*policyapi.Event, []byte) error) error {
	seen := rev
	send := func(batch []*cachedEvent) error {
		for _, ce := range batch {
			if concerns(ce.ev, rds, host) {
				if err := emit(ce.ev, ce.line); err != nil {
					return err
				}
			}
			seen = ce.ev.Revision
		}
		return nil
	}
	if err := send(sub.backlog); err != nil {
		return err
	}
	sub.backlog = nil
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := emit(lined(&policyapi.Event{Type: policyapi.EventProgress, Revision: seen})); err != nil {
				return err
			}
		case batch, ok := <-sub.ch:
			if !ok {
				return errHubClosed
			}
			if err := send(batch); err != nil {
				return err
			}
		}
	}
}

// concerns reports whether ev is for a watcher of rds and host: a host
// agent watches the routing domains of its VMs and gateways and must also
// see a VM or gateway of another routing domain arrive.
func concerns(ev *policyapi.Event, rds []policy.GUID, host string) bool {
	if len(rds) == 0 && host == "" {
		return true
	}
	switch ev.Kind {
	case policyapi.KindHost, policyapi.KindLiveness:
		return true
	case policyapi.KindTenant:
		return false
	case policyapi.KindVM:
		if host != "" && ((ev.VM != nil && ev.VM.Host == host) || (ev.PrevVM != nil && ev.PrevVM.Host == host)) {
			return true
		}
	case policyapi.KindGateway:
		if host != "" && ((ev.Gateway != nil && ev.Gateway.Host == host) || (ev.PrevGateway != nil && ev.PrevGateway.Host == host)) {
			return true
		}
	}
	return slices.Contains(rds, ev.RoutingDomainID)
}

// eventOf turns an etcd event into an Event with its derived policy, or nil
// for keys watchers don't see (indexes, records, memberships).
func eventOf(e *clientv3.Event) (*policyapi.Event, error) {
	rest, _ := strings.CutPrefix(string(e.Kv.Key), Prefix)
	kind, name, _ := strings.Cut(rest, "/")
	ev := &policyapi.Event{Type: policyapi.EventPut, Revision: e.Kv.ModRevision}
	if e.Type == mvccpb.DELETE {
		ev.Type = policyapi.EventDelete
	}
	cur, prev := e.Kv.Value, []byte(nil)
	if ev.Type == policyapi.EventDelete {
		cur = nil
	}
	if e.PrevKv != nil {
		prev = e.PrevKv.Value
	}
	var err error
	switch kind {
	case "tenants":
		ev.Kind, ev.Name = policyapi.KindTenant, name
		ev.Tenant, ev.PrevTenant, err = both[policyapi.Tenant](cur, prev)
	case "rds":
		ev.Kind, ev.Name = policyapi.KindRoutingDomain, name
		ev.RoutingDomain, ev.PrevRoutingDomain, err = both[policyapi.RoutingDomain](cur, prev)
		if err == nil {
			ev.RoutingDomainID = cmpOrPtr(ev.RoutingDomain, ev.PrevRoutingDomain).RoutingDomainID
		}
	case "subnets":
		ev.Kind = policyapi.KindSubnet
		ev.Subnet, ev.PrevSubnet, err = both[policyapi.Subnet](cur, prev)
		if err == nil {
			s := cmpOrPtr(ev.Subnet, ev.PrevSubnet)
			ev.Name, ev.RoutingDomainID = fmt.Sprint(s.VirtualSubnetID), s.RoutingDomainID
			ev.Routes, ev.PrevRoutes = derive(ev.Subnet, ev.PrevSubnet, RoutesFor)
		}
	case "hosts":
		ev.Kind, ev.Name = policyapi.KindHost, name
		ev.Host, ev.PrevHost, err = both[policyapi.Host](cur, prev)
	case "alive":
		ev.Kind, ev.Name = policyapi.KindLiveness, name
	case "vms":
		ev.Kind, ev.Name = policyapi.KindVM, name
		ev.VM, ev.PrevVM, err = both[policyapi.VM](cur, prev)
		if err == nil {
			ev.RoutingDomainID = cmpOrPtr(ev.VM, ev.PrevVM).RoutingDomainID
			ev.Records, ev.PrevRecords = derive(ev.VM, ev.PrevVM, RecordsFor)
		}
	case "gateways":
		ev.Kind, ev.Name = policyapi.KindGateway, name
		ev.Gateway, ev.PrevGateway, err = both[policyapi.Gateway](cur, prev)
		if err == nil {
			ev.RoutingDomainID = cmpOrPtr(ev.Gateway, ev.PrevGateway).RoutingDomainID
			ev.Records, ev.PrevRecords = derive(ev.Gateway, ev.PrevGateway, GatewayRecords)
			ev.Routes, ev.PrevRoutes = derive(ev.Gateway, ev.PrevGateway, GatewayRoutes)
		}
	case "learned":
		ev.Kind, ev.Name = policyapi.KindLearned, name
		ev.Learned, ev.PrevLearned, err = both[policyapi.Learned](cur, prev)
		if err == nil {
			ev.RoutingDomainID = cmpOrPtr(ev.Learned, ev.PrevLearned).RoutingDomainID
			ev.Records, ev.PrevRecords = derive(ev.Learned, ev.PrevLearned, LearnedRecords)
		}
	default:
		return nil, nil
	}
	if errors.Is(err, errNoValue) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("watch: %s %s is not valid JSON (%v): the etcd data is damaged", kind, name, err)
	}
	return ev, nil
}

// errNoValue: a delete whose previous value is compacted away; there is
// nothing to tell the watcher beyond what a resync gives.
var errNoValue = errors.New("neither the value nor the previous value is known")

func both[T any](cur, prev []byte) (*T, *T, error) {
	var c, p *T
	if cur != nil {
		c = new(T)
		if err := json.Unmarshal(cur, c); err != nil {
			return nil, nil, err
		}
	}
	if prev != nil {
		p = new(T)
		if err := json.Unmarshal(prev, p); err != nil {
			return nil, nil, err
		}
	}
	if c == nil && p == nil {
		return nil, nil, errNoValue
	}
	return c, p, nil
}

// derive applies f to the current and the previous object, each when known.
func derive[T, D any](cur, prev *T, f func(*T) D) (c, p D) {
	if cur != nil {
		c = f(cur)
	}
	if prev != nil {
		p = f(prev)
	}
	return c, p
}

func cmpOrPtr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}
