package policyserver

import (
	"context"
	"iter"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyapi"
)

// A host reports its own status only; an observer reads every host's
// latest report and history and follows new reports and sampled drops on
// the stream; a tenant reads none of it.
func TestHostStatus(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	provisionTenants(t, s.admin)
	ctx := ctxT(t)
	h1, _ := s.issue("host", "host1", "198.18.0.1")
	obs, _ := s.issue("observer", "eyes")
	ten, _ := s.issue("tenant", cidBlue.String())

	report := policyapi.HostStatus{Host: "host1", Time: time.Now(), FastPath: true, InSync: true, Revision: 7,
		ProviderAddresses: []policyapi.PAStatus{{Address: netip.MustParseAddr("198.18.0.1"), State: "Preferred"}},
		Ports:             []policyapi.PortTraffic{{Port: "blue1", Traffic: policyapi.Traffic{RxFrames: 3, TxFrames: 4}}},
		Totals:            policyapi.Traffic{RxFrames: 3, TxFrames: 4}}

	refused(t, "report another host's status", h1.ReportStatus(ctx, withHost(report, "host2")), 403, "host2")
	refused(t, "report under another name", h1.Do(ctx, http.MethodPost, "/v1/hosts/host1/status", nil, withHost(report, "host2"), nil), 400, "Host", "host2")
	big := report
	big.Sampled = make([]monitor.Event, policyapi.MaxSampledDrops+1)
	refused(t, "too many sampled drops", h1.ReportStatus(ctx, big), 400, "Sampled")
	refused(t, "report as an observer", obs.ReportStatus(ctx, report), 403)
	_, err := ten.Status(ctx)
	refused(t, "tenant reads host health", err, 403, "host health")

	// The stream starts with the latest report, then carries the new ones
	// and their drops.
	if err := h1.ReportStatus(ctx, report); err != nil {
		t.Fatal(err)
	}
	events, stop := iter.Pull2(obs.StatusStream(ctx))
	defer stop()
	next := func() policyapi.StatusEvent {
		t.Helper()
		ev, err, ok := events()
		if !ok || err != nil {
			t.Fatalf("status stream ended: %v", err)
		}
		return ev
	}
	if ev := next(); ev.Type != "status" || ev.Status.Revision != 7 {
		t.Errorf("the stream starts with %+v, want host1's latest status", ev)
	}
	withDrop := report
	withDrop.Sampled = []monitor.Event{{Time: time.Now(), Reason: "spoofed-source", Port: "blue1"}}
	if err := h1.ReportStatus(ctx, withDrop); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Type != "status" || ev.Status == nil || ev.Status.Host != "host1" || !ev.Status.Reporting || len(ev.Status.Sampled) != 0 {
		t.Errorf("first stream event %+v, want host1's status without its drops", ev)
	}
	if ev := next(); ev.Type != "drop" || ev.Drop == nil || ev.Drop.Host != "host1" || ev.Drop.Reason != "spoofed-source" {
		t.Errorf("second stream event %+v, want host1's drop", ev)
	}

	health, err := obs.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(health) != 1 || health[0].Status.Host != "host1" || !health[0].Status.Reporting || !health[0].Status.FastPath ||
		len(health[0].History) != 2 || health[0].History[1].Ports["blue1"].TxFrames != 4 {
		t.Errorf("health = %+v, want host1 reporting with two samples", health)
	}
}

func withHost(s policyapi.HostStatus, h string) policyapi.HostStatus {
	s.Host = h
	return s
}

// A report older than StaleAfter shows its host as not reporting; samples
// older than HistoryWindow are dropped.
func TestStatusStaleAndWindow(t *testing.T) {
	b := newStatusBook()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hosts := []policyapi.Host{{Name: "host1"}, {Name: "host2"}}
	b.report(t0, policyapi.HostStatus{Host: "host1"})
	b.report(t0.Add(HistoryWindow/2), policyapi.HostStatus{Host: "host1"})
	b.report(t0.Add(HistoryWindow+time.Second), policyapi.HostStatus{Host: "host1"})
	h := b.health(t0.Add(HistoryWindow+time.Second), hosts)
	if len(h) != 1 || !h[0].Status.Reporting || len(h[0].History) != 2 {
		t.Fatalf("health = %+v, want host1 reporting with the two samples of the window", h)
	}
	h = b.health(t0.Add(HistoryWindow+time.Second+StaleAfter+time.Second), hosts)
	if h[0].Status.Reporting {
		t.Error("a host silent for longer than StaleAfter still shows as reporting")
	}
	if h = b.health(t0, hosts[1:]); len(h) != 0 {
		t.Errorf("health of hosts no longer registered = %+v, want none", h)
	}
}

// The trace's refusals: a live probe for an observer, a request without
// its VM or destination, a host that serves no provider API.
func TestTraceRefusals(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	provisionTenants(t, s.admin)
	ctx := ctxT(t)
	obs, _ := s.issue("observer", "eyes")
	ten, _ := s.issue("tenant", cidBlue.String())
	post := func(c interface {
		Do(context.Context, string, string, url.Values, any, any) error
	}, body map[string]any) error {
		return c.Do(ctx, http.MethodPost, "/v1/trace", nil, body, nil)
	}
	refused(t, "live trace as an observer", post(obs, map[string]any{"From": "blue1", "Destination": "10.0.0.11", "Live": true}), 403, "admin credential")
	refused(t, "trace as a tenant", post(ten, map[string]any{"From": "blue1", "Destination": "10.0.0.11"}), 403, "run traces")
	refused(t, "trace without From", post(obs, map[string]any{"Destination": "10.0.0.11"}), 400, "From is missing")
	refused(t, "trace without Destination", post(obs, map[string]any{"From": "blue1"}), 400, "Destination is missing")
	refused(t, "trace from a port", post(obs, map[string]any{"From": "blue1", "Port": "x", "Destination": "10.0.0.11"}), 400, "Port and Outer")
	refused(t, "trace of an unknown VM", post(obs, map[string]any{"From": "nosuch", "Destination": "10.0.0.11"}), 404, "nosuch")
	refused(t, "trace from a host without a provider API", post(obs, map[string]any{"From": "blue1", "Destination": "10.0.0.11"}), 400, "--api-listen")
}

// The credential the server traces through hosts with is issued once per
// role and reused until half its validity has passed.
func TestHostAPICredentialIsReused(t *testing.T) {
	p, err := pki.EnsureServerPKI(filepath.Join(t.TempDir(), "pki"), nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a := &Auth{pki: p, roots: p.Pool(), now: func() time.Time { return now }}
	obs, err := a.hostAPITLS(pki.Observer)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := a.hostAPITLS(pki.Observer); again != obs {
		t.Error("a second observer trace issued a new credential")
	}
	if adm, _ := a.hostAPITLS(pki.Admin); adm == obs {
		t.Error("the admin credential is the observer's")
	}
	now = now.Add(hostAPIValidity/2 + time.Second)
	if later, _ := a.hostAPITLS(pki.Observer); later == obs {
		t.Error("past half its validity the credential was not reissued")
	}
}
