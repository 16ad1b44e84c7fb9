package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

// TestMonitorStream: a stream sampling 1 in 2 shows half of what is
// published and reports the other half as suppressed by it; the 17th
// stream is refused with 429.
func TestMonitorStream(t *testing.T) {
	b := providertest.NewBackend()
	c := provider.NewClient(providertest.Serve(t, b))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	events := make(chan monitor.Event, 16)
	go func() {
		for e, err := range c.Monitor(ctx, provider.MonitorQuery{Sample: 2, Rate: 1000}) {
			if err != nil {
				return
			}
			events <- e
		}
	}()
	if e := <-events; e.Type != monitor.TypeStart || e.Sample != 2 || e.Rate != 1000 || e.Host != "test-host" {
		t.Fatalf("start line %+v", e)
	}
	for i := range 4 {
		s := monitor.Sample{Time: time.Now(), Path: monitor.PathSlow, Reason: 3, Port: "vm", VSID: 5001, Weight: 1}
		s.SetFrame([]byte{byte(i)})
		b.MonitorHub().Publish(&s)
	}
	drops := 0
wait:
	for {
		select {
		case e := <-events:
			switch e.Type {
			case monitor.TypeDrop:
				drops++
			case monitor.TypeSuppressed:
				if drops != 2 || e.Suppressed.Stream.Sampled != 2 {
					t.Fatalf("%d drops shown, then suppressed %+v; want 2 and 2 sampled out", drops, e.Suppressed)
				}
				break wait
			}
		case <-ctx.Done():
			t.Fatalf("%d drops and no suppressed report", drops)
		}
	}
	for range monitor.MaxSubscribers - 1 {
		if _, err := b.MonitorHub().Subscribe(monitor.Options{Rate: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range c.Monitor(ctx, provider.MonitorQuery{}) {
		if !errors.Is(err, policy.ErrTooMany) {
			t.Errorf("stream %d: %v, want too many", monitor.MaxSubscribers+1, err)
		}
		break
	}
}
