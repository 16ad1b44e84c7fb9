package policyserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wnv/wnv/bounded"
	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/policyapi"
)

// Host health: each host agent reports its host's status (PAs and their
// DAD state, fast path, policy sync, traffic and drop counters, sampled
// drops) every few seconds. The server keeps the latest report and
// HistoryWindow of samples per host in memory (telemetry, not policy: a
// restarted server starts empty and fills again within one interval) and
// serves them to observers: GET /v1/status, and GET /v1/status/stream for
// the new reports and the sampled drops as they arrive.

const (
	// HistoryWindow is how far back a host's samples go.
	HistoryWindow = 10 * time.Minute
	// StaleAfter is when a host whose last report is older shows as not
	// reporting: three of the agent's default report intervals.
	StaleAfter = 3 * DefaultStatusInterval
	// DefaultStatusInterval is how often an agent reports by default.
	DefaultStatusInterval = 5 * time.Second
	// DropRelayRate bounds the drops relayed to each stream a second;
	// the counters still count every drop.
	DropRelayRate = 20

	maxStatusPorts   = 4096
	maxStatusDrops   = 256
	maxStatusPAs     = 64
	maxHistory       = 2048
	streamQueue      = 256
	maxStatusVersion = 128
)

// statusBook holds every host's reports and the streams that follow them.
type statusBook struct {
	mu    sync.Mutex
	hosts map[string]*hostHealth
	subs  map[*statusSub]bool
}

type hostHealth struct {
	latest  policyapi.HostStatus
	history []policyapi.StatusSample
}

// statusSub is one stream's queue and drop limiter; a stream that falls
// behind loses events rather than hold up the reports.
type statusSub struct {
	ch    chan policyapi.StatusEvent
	drops monitor.Limiter
}

func newStatusBook() *statusBook {
	return &statusBook{hosts: map[string]*hostHealth{}, subs: map[*statusSub]bool{}}
}

// checkStatus refuses a report for another host or one too large to keep.
func checkStatus(name string, s policyapi.HostStatus) error {
	switch {
	case s.Host != name:
		return invalidf("Host %q differs from the path's host %q: a host reports its own status", s.Host, name)
	case len(s.Ports) > maxStatusPorts:
		return invalidf("Ports has %d entries: at most %d", len(s.Ports), maxStatusPorts)
	case len(s.Drops) > maxStatusDrops:
		return invalidf("Drops has %d entries: at most %d", len(s.Drops), maxStatusDrops)
	case len(s.ProviderAddresses) > maxStatusPAs:
		return invalidf("ProviderAddresses has %d entries: at most %d", len(s.ProviderAddresses), maxStatusPAs)
	case len(s.Sampled) > policyapi.MaxSampledDrops:
		return invalidf("Sampled has %d drops: at most %d a report", len(s.Sampled), policyapi.MaxSampledDrops)
	case len(s.Version) > maxStatusVersion:
		return invalidf("Version is %d bytes long: at most %d", len(s.Version), maxStatusVersion)
	}
	return nil
}

// report keeps s, received at now, and hands it and its sampled drops to
// the streams.
func (b *statusBook) report(now time.Time, s policyapi.HostStatus) {
	s.Received = now
	s.Reporting = true
	sample := policyapi.StatusSample{Time: now, Totals: s.Totals, Ports: make(map[string]policyapi.Traffic, len(s.Ports))}
	for _, p := range s.Ports {
		sample.Ports[p.Port] = p.Traffic
	}
	drops := s.Sampled
	s.Sampled = nil
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.hosts[s.Host]
	if h == nil {
		h = &hostHealth{}
		b.hosts[s.Host] = h
	}
	h.latest = s
	cut := 0
	for cut < len(h.history) && (now.Sub(h.history[cut].Time) > HistoryWindow || len(h.history)-cut >= maxHistory) {
		cut++
	}
	h.history = append(slices.Delete(h.history, 0, cut), sample)
	st := s
	for sub := range b.subs {
		sub.offer(policyapi.StatusEvent{Type: "status", Status: &st})
		for i := range drops {
			d := drops[i]
			d.Host = s.Host
			if sub.drops.Admit(now.UnixNano(), 1, 1, DropRelayRate) {
				sub.offer(policyapi.StatusEvent{Type: "drop", Drop: &d})
			}
		}
	}
}

func (sub *statusSub) offer(ev policyapi.StatusEvent) {
	select {
	case sub.ch <- ev:
	default:
	}
}

// health is every host's latest report and history among hosts (the
// registered ones), by name; a host registered but never reported is left
// out, one whose report is stale is marked not Reporting.
func (b *statusBook) health(now time.Time, hosts []policyapi.Host) []policyapi.HostHealth {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []policyapi.HostHealth{}
	for _, ph := range hosts {
		h := b.hosts[ph.Name]
		if h == nil {
			continue
		}
		s := h.latest
		s.Reporting = now.Sub(s.Received) <= StaleAfter
		out = append(out, policyapi.HostHealth{Status: s, History: slices.Clone(h.history)})
	}
	slices.SortFunc(out, func(a, b policyapi.HostHealth) int { return strings.Compare(a.Status.Host, b.Status.Host) })
	return out
}

// endpoint is the provider API host last reported, if any.
func (b *statusBook) endpoint(host string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.hosts[host]; h != nil {
		return h.latest.APIEndpoint
	}
	return ""
}

func (b *statusBook) subscribe() *statusSub {
	sub := &statusSub{ch: make(chan policyapi.StatusEvent, streamQueue)}
	b.mu.Lock()
	b.subs[sub] = true
	b.mu.Unlock()
	return sub
}

func (b *statusBook) unsubscribe(sub *statusSub) {
	b.mu.Lock()
	delete(b.subs, sub)
	b.mu.Unlock()
}

// statusRoutes adds the host health routes.
func (h *handler) statusRoutes(route func(string, http.HandlerFunc)) {
	route("POST /v1/hosts/{name}/status", func(w http.ResponseWriter, r *http.Request) {
		var s policyapi.HostStatus
		if err := jsonapi.DecodeBody(r.Body, &s); err != nil {
			h.fail(w, r, err)
			return
		}
		name := r.PathValue("name")
		if err := checkStatus(name, s); err != nil {
			h.fail(w, r, err)
			return
		}
		// Only registered hosts are kept, which bounds the book.
		if _, err := h.st.Host(r.Context(), name); err != nil {
			h.fail(w, r, err)
			return
		}
		h.status.report(time.Now(), s)
		w.WriteHeader(http.StatusNoContent)
	})
	route("GET /v1/status", h.answer(func(ctx context.Context, r *http.Request) (any, error) {
		hosts, err := h.st.Hosts(ctx)
		if err != nil {
			return nil, err
		}
		return h.status.health(time.Now(), hosts), nil
	}))
	route("GET /v1/status/stream", h.statusStream)
}

// statusStream sends each host's latest report, then the new reports and
// sampled drops as NDJSON, or as server-sent events to a browser, with a
// keepalive when idle.
func (h *handler) statusStream(w http.ResponseWriter, r *http.Request) {
	release, err := h.st.watchers.take(clientOf(r), h.st.MaxWatchesPerClient)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer release()
	hosts, err := h.st.Hosts(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sub := h.status.subscribe()
	defer h.status.unsubscribe(sub)
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	beforeWrite := bounded.Streaming(w, r)
	write := func(ev policyapi.StatusEvent) error {
		line, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if err := beforeWrite(); err != nil {
			return err
		}
		if sse {
			_, err = fmt.Fprintf(w, "data: %s\n\n", line)
		} else {
			_, err = fmt.Fprintf(w, "%s\n", line)
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	// The stream starts with each host's latest report.
	for _, hh := range h.status.health(time.Now(), hosts) {
		if err := write(policyapi.StatusEvent{Type: "status", Status: &hh.Status}); err != nil {
			return
		}
	}
	if err := write(policyapi.StatusEvent{Type: "progress"}); err != nil {
		return
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		var ev policyapi.StatusEvent
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			ev.Type = "progress"
		case ev = <-sub.ch:
		}
		if err := write(ev); err != nil {
			return
		}
	}
}
