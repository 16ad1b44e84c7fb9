package policyserver

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wnv/wnv/policy"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errStoreFull answers a write etcd refused with its NOSPACE alarm raised.
var errStoreFull = &policy.Error{Kind: policy.ErrFull,
	Msg: "policy store is full: etcd reached its space quota, so existing policy stays readable but writes are refused until compaction and defragmentation free space (raise --etcd-quota-bytes if this persists)"}

// Metrics are the policy server's Prometheus metrics.
type Metrics struct {
	nospace, dbBytes, inUseBytes, quotaBytes prometheus.Gauge
	defrags                                  prometheus.Counter
	reg                                      *prometheus.Registry
}

// NewMetrics returns the policy server's metrics in a registry of their own.
func NewMetrics() *Metrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &Metrics{
		nospace:    g("wnv_policy_store_nospace", "1 while etcd's NOSPACE alarm is raised: the policy store refuses writes."),
		dbBytes:    g("wnv_policy_store_db_bytes", "Size of etcd's backend database file."),
		inUseBytes: g("wnv_policy_store_db_in_use_bytes", "Bytes of etcd's backend database in use; the rest is freed by defragmentation."),
		quotaBytes: g("wnv_policy_store_quota_bytes", "etcd's backend space quota (0: not known for an external cluster)."),
		defrags:    prometheus.NewCounter(prometheus.CounterOpts{Name: "wnv_policy_store_defrags_total", Help: "Defragmentations of the embedded etcd member."}),
		reg:        prometheus.NewRegistry(),
	}
	m.reg.MustRegister(m.nospace, m.dbBytes, m.inUseBytes, m.quotaBytes, m.defrags)
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// Maintenance watches an etcd member's space: it shows the NOSPACE alarm as
// a metric and one log line. With Repair (the embedded member, which the
// server owns) it also gives the space back: it defragments once compaction
// has freed enough, and while the alarm is raised it compacts the history,
// defragments and disarms the alarm when the database fits the quota again.
type Maintenance struct {
	Cli      *clientv3.Client
	Endpoint string // the member whose status is read and which is defragmented
	Quota    int64  // the member's backend quota; 0 when not known
	Repair   bool
	Every    time.Duration // default 10 s
	Log      *slog.Logger
	Metrics  *Metrics

	full, stuck bool // what was logged last
}

// Run checks every m.Every until ctx ends.
func (m *Maintenance) Run(ctx context.Context) {
	tick := time.NewTicker(cmp.Or(m.Every, 10*time.Second))
	defer tick.Stop()
	for {
		if err := m.check(ctx); err != nil && ctx.Err() == nil {
			m.Log.Warn("policy store maintenance failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// health is what one look at the member found.
type health struct {
	nospace              bool
	memberID             uint64
	revision             int64
	dbSize, inUse, quota int64
}

// wantsDefrag: defragmentation blocks the member while it copies the
// database, so it runs only when it gives back an eighth of the quota, or any
// space while the store is full.
func wantsDefrag(h health) bool {
	free := h.dbSize - h.inUse
	return free > 0 && (h.nospace || h.quota > 0 && free >= h.quota/8)
}

// hasRoom: disarming the alarm makes sense only when writes fit again;
// below nine tenths of the quota they do for a while.
func hasRoom(h health) bool { return h.quota > 0 && h.dbSize < h.quota/10*9 }

func (m *Maintenance) look(ctx context.Context) (health, error) {
	h := health{quota: m.Quota}
	alarms, err := m.Cli.AlarmList(ctx)
	if err != nil {
		return h, err
	}
	for _, a := range alarms.Alarms {
		if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
			h.nospace, h.memberID = true, a.MemberID
		}
	}
	st, err := m.Cli.Status(ctx, m.Endpoint)
	if err != nil {
		return h, err
	}
	h.revision, h.dbSize, h.inUse = st.Header.Revision, st.DbSize, st.DbSizeInUse
	return h, nil
}

func (m *Maintenance) check(ctx context.Context) error {
	h, err := m.look(ctx)
	if err != nil {
		return err
	}
	m.show(h)
	if !m.Repair {
		return nil
	}
	if h.nospace {
		// Watchers resuming from before this revision get a resync.
		if _, err := m.Cli.Compact(ctx, h.revision, clientv3.WithCompactPhysical()); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
			return err
		}
		if h, err = m.look(ctx); err != nil {
			return err
		}
	}
	if wantsDefrag(h) {
		if _, err := m.Cli.Defragment(ctx, m.Endpoint); err != nil {
			return err
		}
		m.Metrics.defrags.Inc()
		if h, err = m.look(ctx); err != nil {
			return err
		}
	}
	if h.nospace && hasRoom(h) {
		if _, err := m.Cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: h.memberID, Alarm: etcdserverpb.AlarmType_NOSPACE}); err != nil {
			return err
		}
		h.nospace = false
	}
	if h.nospace && !m.stuck {
		m.Log.Error("policy store stays full after compaction and defragmentation: delete objects or raise --etcd-quota-bytes", "db-bytes", h.dbSize, "quota-bytes", h.quota)
	}
	m.stuck = h.nospace
	m.show(h)
	return nil
}

// show sets the metrics and logs the alarm's changes, once each.
func (m *Maintenance) show(h health) {
	m.Metrics.dbBytes.Set(float64(h.dbSize))
	m.Metrics.inUseBytes.Set(float64(h.inUse))
	m.Metrics.quotaBytes.Set(float64(h.quota))
	if h.nospace {
		m.Metrics.nospace.Set(1)
	} else {
		m.Metrics.nospace.Set(0)
	}
	switch {
	case h.nospace && !m.full:
		m.Log.Error("policy store is full: etcd raised its NOSPACE alarm and refuses writes", "db-bytes", h.dbSize, "quota-bytes", h.quota, "repair", m.Repair)
	case !h.nospace && m.full:
		m.Log.Info("policy store takes writes again: etcd's NOSPACE alarm is disarmed", "db-bytes", h.dbSize, "quota-bytes", h.quota)
	}
	m.full = h.nospace
}
