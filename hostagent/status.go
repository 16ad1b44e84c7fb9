package hostagent

import (
	"context"
	"iter"
	"sync"
	"time"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
)

// Status reports: every StatusInterval, and soon after the policy sync
// changes or the host drops a frame, the agent tells the policy server
// its host's health (PAs and their DAD state, fast path, policy sync,
// traffic and drop counters, the drops its wnvd's monitor sampled). It is
// telemetry for the dashboard: a report that fails is not retried, the
// next one replaces it.

// StatusServer is the policy server's status endpoint;
// *policyclient.Client implements it. An agent whose server lacks it
// reports nothing.
type StatusServer interface {
	ReportStatus(ctx context.Context, s policyapi.HostStatus) error
}

// StatusHost is what the reports read of wnvd beyond Provider;
// *provider.Client implements it.
type StatusHost interface {
	Counters(ctx context.Context) (provider.Counters, error)
	Monitor(ctx context.Context, q provider.MonitorQuery) iter.Seq2[monitor.Event, error]
}

const (
	// minReportGap spaces the reports a change or a drop brings forward.
	minReportGap = time.Second
	// sampledDropRate is how many drops a second the agent asks its wnvd's
	// monitor for.
	sampledDropRate = 5
)

// syncState is the model's policy sync as the reports tell it.
type syncState struct {
	rev    int64
	inSync bool
}

// Synced returns the newest policy revision the model has seen and whether
// the host has everything it has seen installed: the watch is open and
// listed, no routing domain's policy is stale or being fetched, and no
// reconcile is pending, in flight or waiting for a VM's interface.
func (m *Model) Synced() (rev int64, inSync bool) {
	return m.rev, m.open != nil && m.listed && !m.listing && len(m.stale) == 0 && len(m.fetching) == 0 &&
		!m.dirty && !m.reading && !m.applying && len(m.waiting) == 0
}

// statusReporter is the agent's shared state between the driver (which
// publishes the sync) and the reporting goroutine.
type statusReporter struct {
	mu      sync.Mutex
	sync    syncState
	drops   []monitor.Event
	changed chan struct{} // the sync changed or a drop arrived
}

func newStatusReporter() *statusReporter {
	return &statusReporter{changed: make(chan struct{}, 1)}
}

func (s *statusReporter) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// publish records the model's sync, waking the reporter when it changed.
func (s *statusReporter) publish(m *Model) {
	rev, in := m.Synced()
	s.mu.Lock()
	was := s.sync
	s.sync = syncState{rev, in}
	s.mu.Unlock()
	if was.inSync != in {
		s.poke()
	}
}

// dropped keeps a sampled drop for the next report, at most
// policyapi.MaxSampledDrops of them.
func (s *statusReporter) dropped(e monitor.Event) {
	s.mu.Lock()
	if len(s.drops) < policyapi.MaxSampledDrops {
		e.Frame = nil // the summary is what the server relays
		s.drops = append(s.drops, e)
	}
	s.mu.Unlock()
	s.poke()
}

// take returns the sync and the drops since the last report.
func (s *statusReporter) take() (syncState, []monitor.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops
	s.drops = nil
	return s.sync, d
}

// reportStatus reports until ctx ends.
func (a *Agent) reportStatus(ctx context.Context, srv StatusServer, host StatusHost) {
	started := time.Now()
	go a.followDrops(ctx, host)
	t := time.NewTicker(a.cfg.StatusInterval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.status.changed:
		}
		if gap := time.Since(last); gap < minReportGap {
			sleep(ctx, minReportGap-gap)
		}
		last = time.Now()
		st, err := a.readStatus(ctx, host, started)
		if err != nil {
			a.log.Debug("reading the host's status", "err", err)
			continue
		}
		if err := srv.ReportStatus(ctx, st); err != nil && ctx.Err() == nil {
			a.log.Debug("reporting status", "err", err)
		}
	}
}

// readStatus builds a report from wnvd's counters and PAs.
func (a *Agent) readStatus(ctx context.Context, host StatusHost, started time.Time) (policyapi.HostStatus, error) {
	c, err := host.Counters(ctx)
	if err != nil {
		return policyapi.HostStatus{}, err
	}
	pas, err := a.host.ProviderAddresses(ctx, policy.ProviderAddressFilter{})
	if err != nil {
		return policyapi.HostStatus{}, err
	}
	sync, drops := a.status.take()
	return statusOf(a.cfg, started, time.Now(), c, pas, sync, drops), nil
}

// statusOf is the report of what was read.
func statusOf(cfg Config, started, now time.Time, c provider.Counters, pas []policy.ProviderAddress, sync syncState, drops []monitor.Event) policyapi.HostStatus {
	st := policyapi.HostStatus{Host: cfg.Host, Time: now, Version: cfg.Version, Started: started, APIEndpoint: cfg.APIEndpoint,
		FastPath: c.Paths != nil && !cfg.SlowPathOnly, Revision: sync.rev, InSync: sync.inSync, Sampled: drops,
		ProviderAddresses: []policyapi.PAStatus{}, Ports: []policyapi.PortTraffic{}, Drops: []policyapi.DropCounter{}}
	for _, p := range pas {
		st.ProviderAddresses = append(st.ProviderAddresses, policyapi.PAStatus{Address: p.ProviderAddress, State: p.AddressState.String()})
	}
	for _, p := range c.Ports {
		t := policyapi.Traffic{RxFrames: p.RxFrames, RxBytes: p.RxBytes, TxFrames: p.TxFrames, TxBytes: p.TxBytes, Drops: p.Drops}
		st.Ports = append(st.Ports, policyapi.PortTraffic{Port: p.Name, Traffic: t})
		st.Totals.RxFrames += t.RxFrames
		st.Totals.RxBytes += t.RxBytes
		st.Totals.TxFrames += t.TxFrames
		st.Totals.TxBytes += t.TxBytes
	}
	for _, d := range c.Drops {
		st.Drops = append(st.Drops, policyapi.DropCounter{Reason: d.Reason, Count: d.Count})
		st.Totals.Drops += d.Count
	}
	return st
}

// followDrops keeps the drops wnvd's monitor samples for the reports,
// reopening the stream when it ends.
func (a *Agent) followDrops(ctx context.Context, host StatusHost) {
	b := a.newBackoff()
	for ctx.Err() == nil {
		for e, err := range host.Monitor(ctx, provider.MonitorQuery{Rate: sampledDropRate}) {
			if err != nil {
				a.log.Debug("drop monitor", "err", err)
				break
			}
			b.Reset()
			if e.Type == monitor.TypeDrop {
				a.status.dropped(e)
			}
		}
		sleep(ctx, b.Next())
	}
}
