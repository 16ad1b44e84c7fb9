package host

import (
	"net/netip"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wnv/wnv/notify"
)

// TestMetricsExposeDropsAndNotifications scrapes the collector after the
// switch dropped a malformed underlay packet and the hub raised an event.
func TestMetricsExposeDropsAndNotifications(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a host loads the kernel fast path")
	}
	hub := notify.NewHub(notify.Config{})
	h, err := New(Config{Name: "h1", Underlay: "lo"}, hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		if _, err := Cleanup(Config{Name: "h1", Underlay: "lo"}); err != nil {
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
