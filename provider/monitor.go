package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"time"

	"github.com/wnv/wnv/bounded"
	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

// Monitorer is a Backend that streams samples of what its paths drop
// (GET /v1/monitor).
type Monitorer interface {
	MonitorHub() *monitor.Hub
	HostName() string
}

// MonitorQuery is the query of GET /v1/monitor: filters (an absent one
// matches anything, a repeated one any of its values) and the stream's
// bounds.
type MonitorQuery struct {
	Port            []string      `json:"Port"`
	VirtualSubnetID []policy.VSID `json:"VirtualSubnetID"`
	// Reason names drop reasons (vswitch.Reasons, e.g. spoofed-mac).
	Reason []string `json:"Reason"`
	// Flows adds the flows the slow path decides.
	Flows bool `json:"Flows"`
	// Sample: 1 in Sample of the selected drops and flows (1..1000000;
	// absent: every one). Rate: at most Rate a second (1..10000; absent:
	// monitor.DefaultRate).
	Sample uint32 `json:"Sample"`
	Rate   uint32 `json:"Rate"`
}

// Options checks q and returns the subscription it asks for.
func (q MonitorQuery) Options() (monitor.Options, error) {
	o := monitor.Options{Filter: monitor.Filter{Ports: q.Port, Flows: q.Flows}, Sample: max(q.Sample, 1), Rate: q.Rate}
	if q.Sample > monitor.MaxSample {
		return o, fmt.Errorf("Sample %d is too large: use 1..%d", q.Sample, monitor.MaxSample)
	}
	if o.Rate == 0 {
		o.Rate = monitor.DefaultRate
	}
	if o.Rate > monitor.MaxRate {
		return o, fmt.Errorf("Rate %d is too high: use 1..%d samples a second", q.Rate, monitor.MaxRate)
	}
	for _, v := range q.VirtualSubnetID {
		o.VSIDs = append(o.VSIDs, uint32(v))
	}
	for _, name := range q.Reason {
		r, ok := reasonByName(name)
		if !ok {
			return o, fmt.Errorf("Reason %q is not a drop reason: use one that wnvctl counters lists, e.g. spoofed-mac", name)
		}
		o.Reasons = append(o.Reasons, uint8(r))
	}
	return o, nil
}

func reasonByName(name string) (vswitch.Reason, bool) {
	for _, r := range vswitch.Reasons() {
		if r.String() == name {
			return r, true
		}
	}
	return 0, false
}

func reasonName(r uint8) string { return vswitch.Reason(r).String() }

// monitor streams the samples a subscription selects as NDJSON: a start
// line with the settings in effect, the events, and every ReportEvery the
// suppressed counts if they changed, until the client goes away.
func (h *handler) monitor(w http.ResponseWriter, r *http.Request) {
	m, ok := h.b.(Monitorer)
	if !ok {
		jsonapi.WriteError(w, jsonapi.Invalid(errors.New("this wnvd does not monitor drops")))
		return
	}
	var q MonitorQuery
	if err := jsonapi.DecodeQuery(r.URL.Query(), &q); err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	opts, err := q.Options()
	if err != nil {
		jsonapi.WriteError(w, jsonapi.Invalid(err))
		return
	}
	sub, err := m.MonitorHub().Subscribe(opts)
	if err != nil {
		jsonapi.WriteError(w, fmt.Errorf("%w: %w", policy.ErrTooMany, err))
		return
	}
	defer sub.Close()
	st := sub.Stream()
	host := m.HostName()
	rc := http.NewResponseController(w)
	beforeWrite := bounded.Streaming(w, r)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	write := func(e monitor.Event) error {
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := beforeWrite(); err != nil {
			return err
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
		return rc.Flush()
	}
	if write(monitor.Event{Type: monitor.TypeStart, Time: time.Now(), Host: host, Sample: opts.Sample, Rate: opts.Rate}) != nil {
		return
	}
	tick := time.NewTicker(monitor.ReportEvery)
	defer tick.Stop()
	var reported monitor.Suppressed
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case s := <-st.C():
			if st.Admit(&s) {
				err = write(monitor.EventOf(host, &s, reasonName))
			}
		case now := <-tick.C:
			if s := st.Suppressed(); s != reported {
				reported = s
				err = write(monitor.Event{Type: monitor.TypeSuppressed, Time: now, Host: host, Suppressed: &s})
			}
		}
		if err != nil {
			return
		}
	}
}

// Monitor streams the host's samples that q selects, until ctx ends or the
// caller stops iterating. A refusal (a bad query, too many streams) is the
// first and last error; so is the stream's end.
func (c *Client) Monitor(ctx context.Context, q MonitorQuery) iter.Seq2[monitor.Event, error] {
	return func(yield func(monitor.Event, error) bool) {
		resp, err := c.api.Request(ctx, http.MethodGet, "/v1/monitor", jsonapi.EncodeQuery(q), nil)
		if err != nil {
			yield(monitor.Event{}, err)
			return
		}
		defer resp.Body.Close()
		stopped, err := jsonapi.DecodeLines(resp.Body, 1<<20, c.api.Server+"'s monitor stream", func(e monitor.Event) bool { return yield(e, nil) })
		if stopped || ctx.Err() != nil {
			return
		}
		if err == nil {
			err = fmt.Errorf("%s ended the monitor stream", c.api.Server)
		}
		yield(monitor.Event{}, err)
	}
}
