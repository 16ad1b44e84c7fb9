package host

import (
	"encoding/json"
	"maps"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/policyserver"
)

// TestMetricsExposeDropsAndNotifications scrapes the collector after the
// switch dropped a malformed underlay packet and the hub raised an event.
func TestMetricsExposeDropsAndNotifications(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a host loads the kernel fast path")
	}
	hub := notify.NewHub(notify.Config{})
	h, err := New(Config{Name: "h1", Underlays: []string{"lo"}}, hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		if _, err := Cleanup(Config{Name: "h1", Underlays: []string{"lo"}}); err != nil {
			t.Error(err)
		}
	})
	h.Switch().FromUnderlay(netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1"), []byte{0x20, 0x00, 0x08, 0x00})
	hub.PolicyMismatch(5001, netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("198.18.0.2"))
	h.mig.redirectsSent.Add(3)

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(h))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
		metrics:
			for _, m := range f.GetMetric() {
				got := map[string]string{}
				for _, l := range m.GetLabel() {
					got[l.GetName()] = l.GetValue()
				}
				for k, v := range labels {
					if got[k] != v {
						continue metrics
					}
				}
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	if v, ok := value("wnv_drops_total", map[string]string{"reason": "malformed-gre", "host": "h1"}); !ok || v != 1 {
		t.Errorf("wnv_drops_total{reason=malformed-gre} = %v (found %v), want 1", v, ok)
	}
	if v, ok := value("wnv_notifications_total", map[string]string{"type": notify.PolicyMismatchType.String(), "outcome": "raised"}); !ok || v != 1 {
		t.Errorf("raised policy mismatches = %v (found %v), want 1", v, ok)
	}
	if v, ok := value("wnv_migration_total", map[string]string{"event": "redirect_sent"}); !ok || v != 3 {
		t.Errorf("wnv_migration_total{event=redirect_sent} = %v (found %v), want 3", v, ok)
	}
	for _, path := range []string{"kernel", "slow"} {
		for _, from := range []string{"port", "underlay"} {
			if _, ok := value("wnv_path_frames_total", map[string]string{"path": path, "from": from}); !ok {
				t.Errorf("wnv_path_frames_total{path=%s,from=%s} missing", path, from)
			}
		}
	}
	if v, ok := value("wnv_provider_routes", map[string]string{"state": "installed"}); !ok || v != 0 {
		t.Errorf("wnv_provider_routes{state=installed} = %v (found %v), want 0", v, ok)
	}
	if _, ok := value("wnv_notification_handles", nil); !ok {
		t.Error("wnv_notification_handles missing")
	}
}

// TestGrafanaDashboardUsesExportedMetrics keeps docs/grafana/wnv.json true
// to the metrics: every wnv_ metric it queries is one a host's collector
// describes or the policy server exports.
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	described := map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		NewCollector(&Host{}).Describe(ch)
		close(ch)
	}()
	for d := range ch {
		described[regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())[1]] = true
	}
	rec := httptest.NewRecorder()
	policyserver.NewMetrics().Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	served := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (wnv_[a-z_]+)`).FindAllStringSubmatch(rec.Body.String(), -1) {
		served[m[1]] = true
	}
	used := grafanaMetrics(t, "../docs/grafana/wnv.json")
	n := 0
	for _, m := range used {
		if strings.HasPrefix(m, "wnv_policy_") {
			if !served[m] {
				t.Errorf("docs/grafana/wnv.json queries %s, which the policy server does not export", m)
			}
			continue
		}
		n++
		if !described[m] {
			t.Errorf("docs/grafana/wnv.json queries %s, which no host exports", m)
		}
	}
	if n < 10 {
		t.Errorf("the dashboard queries %d host metrics (%v), want the host's traffic, drops and control metrics", n, used)
	}
}

// grafanaMetrics lists the wnv_ metric names a Grafana dashboard's queries
// use.
func grafanaMetrics(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	seen := map[string]bool{}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			for _, m := range regexp.MustCompile(`\bwnv_[a-z_]+`).FindAllString(q.Expr, -1) {
				seen[m] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
