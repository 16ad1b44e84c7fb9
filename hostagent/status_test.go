package hostagent_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/wnv/wnv/policyapi"
)

// Both hosts' agents report their status: PAs Preferred, the policy in
// sync, the fast path as wnvd runs it, and the VMs' traffic, which grows
// with the probes.
func TestStatusReports(t *testing.T) {
	ctx := t.Context()
	tb, p := hostsAB(t, ctx, 2, false)
	var before policyapi.Traffic
	tb.eventually("both hosts report a healthy status", 30*time.Second, func() error {
		health, err := tb.server.Status(ctx)
		if err != nil {
			return err
		}
		if len(health) != 2 {
			return fmt.Errorf("%d hosts report, want 2", len(health))
		}
		for i, h := range health {
			s := h.Status
			host, vm := fmt.Sprintf("h%d", i+1), string(rune('a'+i))
			switch {
			case s.Host != host || !s.Reporting || !s.InSync || s.Revision == 0:
				return fmt.Errorf("status %s reporting %v in sync %v at revision %d, want %s reporting and in sync", s.Host, s.Reporting, s.InSync, s.Revision, host)
			case len(s.ProviderAddresses) != 1 || s.ProviderAddresses[0].State != "Preferred":
				return fmt.Errorf("%s's PAs %+v, want one Preferred", host, s.ProviderAddresses)
			case s.FastPath != (os.Getenv("WNV_FAST_PATH") != "off"):
				return fmt.Errorf("%s's fast path %v with WNV_FAST_PATH=%q", host, s.FastPath, os.Getenv("WNV_FAST_PATH"))
			case len(s.Ports) != 1 || s.Ports[0].Port != vm || s.Ports[0].RxFrames == 0:
				return fmt.Errorf("%s's ports %+v, want %s with traffic", host, s.Ports, vm)
			case s.Started.IsZero() || s.Version == "":
				return fmt.Errorf("%s's wnvd version %q started %v", host, s.Version, s.Started)
			}
		}
		before = health[0].Status.Ports[0].Traffic
		return nil
	})
	for range 10 {
		p.roundTrip(time.Second)
	}
	tb.eventually("h1's next report counts the probes", 30*time.Second, func() error {
		health, err := tb.server.Status(ctx)
		if err != nil {
			return err
		}
		last := health[0].History[len(health[0].History)-1]
		if a := last.Ports["a"]; a.RxFrames < before.RxFrames+10 {
			return fmt.Errorf("a's frames from the VM %d, want at least %d", a.RxFrames, before.RxFrames+10)
		}
		return nil
	})
}
