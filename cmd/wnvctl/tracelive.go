package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/wnv/wnv/provider"
)

// liveReport is where a live probe was seen and where it died, from the
// counters of both paths on every host of the trace, read before the probe
// and until it shows up as a drop or a delivery (or --wait passes). Other
// traffic in the same moment counts too: the report says what changed.
type liveReport struct {
	Mark     string     `json:"Mark"`
	Injected string     `json:"Injected"`
	Hosts    []liveHost `json:"Hosts"`
	// DiedAt is the first host (in the packet's order) that counted a
	// drop, with the reason it counted most; empty if none did.
	DiedAt string `json:"DiedAt,omitempty"`
	Reason string `json:"Reason,omitempty"`
	// Delivered says the last host's destination port sent a frame.
	Delivered bool `json:"Delivered"`
}

// liveHost is what one host's counters say changed.
type liveHost struct {
	Host  string            `json:"Host"`
	Drops map[string]uint64 `json:"Drops"`
	// Ports are the ports' changes (Rx: from the VM; Tx: to it).
	Ports map[string]provider.PortCounters `json:"Ports"`
	// Paths is the change of frames per path, absent without the kernel
	// fast path.
	Paths *provider.PathCounters `json:"Paths,omitempty"`
}

func (lh *liveHost) seen() bool {
	return len(lh.Drops) > 0 || len(lh.Ports) > 0 || lh.Paths != nil && *lh.Paths != (provider.PathCounters{})
}

func (o *traceOptions) runLive(ctx context.Context, hops []traceHop) (*liveReport, error) {
	before := make([]provider.Counters, len(hops))
	for i, h := range hops {
		c, err := h.client.Counters(ctx)
		if err != nil {
			return nil, fmt.Errorf("counters of %s: %w", h.Host, err)
		}
		before[i] = c
	}
	res, err := hops[0].client.Trace(ctx, o.req, true)
	if err != nil {
		return nil, fmt.Errorf("inject the probe on %s: %w", hops[0].Host, err)
	}
	rep := &liveReport{Mark: res.Mark, Injected: res.Injected}
	// The port the probe is delivered to on the last host, if the dry run
	// says it is.
	last := hops[len(hops)-1].Trace
	deliverTo := ""
	if last.Packet != nil && last.Packet.Verdict == "to-port" {
		deliverTo = portNamed(last)
	}
	deadline := time.Now().Add(o.wait)
	for {
		rep.Hosts = rep.Hosts[:0]
		rep.DiedAt, rep.Reason, rep.Delivered = "", "", false
		for i, h := range hops {
			after, err := h.client.Counters(ctx)
			if err != nil {
				return nil, fmt.Errorf("counters of %s: %w", h.Host, err)
			}
			lh := diffCounters(h.Host, before[i], after)
			rep.Hosts = append(rep.Hosts, lh)
			if rep.DiedAt == "" && len(lh.Drops) > 0 {
				rep.DiedAt, rep.Reason = h.Host, topReason(lh.Drops)
			}
			if i == len(hops)-1 && deliverTo != "" && lh.Ports[deliverTo].TxFrames > 0 {
				rep.Delivered = true
			}
		}
		if rep.DiedAt != "" || rep.Delivered || time.Now().After(deadline) {
			return rep, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// portNamed is the name of the port a trace delivers to: the object of its
// deliver step.
func portNamed(t provider.TraceResponse) string {
	for _, s := range t.Packet.Steps {
		if s.Step == "deliver" {
			if name, ok := strings.CutPrefix(s.Object, "port "); ok {
				return name
			}
		}
	}
	return ""
}

func diffCounters(host string, a, b provider.Counters) liveHost {
	lh := liveHost{Host: host, Drops: map[string]uint64{}, Ports: map[string]provider.PortCounters{}}
	old := map[string]uint64{}
	for _, d := range a.Drops {
		old[d.Reason] = d.Count
	}
	for _, d := range b.Drops {
		if n := d.Count - old[d.Reason]; d.Count > old[d.Reason] {
			lh.Drops[d.Reason] = n
		}
	}
	oldPorts := map[string]provider.PortCounters{}
	for _, p := range a.Ports {
		oldPorts[p.Name] = p.PortCounters
	}
	for _, p := range b.Ports {
		o := oldPorts[p.Name]
		d := provider.PortCounters{RxFrames: sub(p.RxFrames, o.RxFrames), RxBytes: sub(p.RxBytes, o.RxBytes),
			TxFrames: sub(p.TxFrames, o.TxFrames), TxBytes: sub(p.TxBytes, o.TxBytes), Drops: sub(p.Drops, o.Drops)}
		if d != (provider.PortCounters{}) {
			lh.Ports[p.Name] = d
		}
	}
	if a.Paths != nil && b.Paths != nil {
		lh.Paths = &provider.PathCounters{KernelFromPorts: sub(b.Paths.KernelFromPorts, a.Paths.KernelFromPorts),
			KernelFromUnderlay: sub(b.Paths.KernelFromUnderlay, a.Paths.KernelFromUnderlay),
			SlowFromPorts:      sub(b.Paths.SlowFromPorts, a.Paths.SlowFromPorts),
			SlowFromUnderlay:   sub(b.Paths.SlowFromUnderlay, a.Paths.SlowFromUnderlay)}
	}
	return lh
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0 // a counter that restarted
	}
	return a - b
}

func topReason(drops map[string]uint64) string {
	best, n := "", uint64(0)
	for r, c := range drops {
		if c > n || c == n && r < best {
			best, n = r, c
		}
	}
	return best
}

func (l *liveReport) print(w io.Writer) {
	fmt.Fprintf(w, "\n== live probe %q: injected at the source port, %s\n", l.Mark, l.Injected)
	for _, h := range l.Hosts {
		if !h.seen() {
			fmt.Fprintf(w, "%s: not seen\n", h.Host)
			continue
		}
		var parts []string
		for _, name := range sortedKeys(h.Ports) {
			p := h.Ports[name]
			parts = append(parts, fmt.Sprintf("port %s rx %d tx %d drops %d", name, p.RxFrames, p.TxFrames, p.Drops))
		}
		if p := h.Paths; p != nil {
			parts = append(parts, fmt.Sprintf("kernel path %d from ports %d from underlay, slow path %d from ports %d from underlay",
				p.KernelFromPorts, p.KernelFromUnderlay, p.SlowFromPorts, p.SlowFromUnderlay))
		}
		for _, r := range sortedKeys(h.Drops) {
			parts = append(parts, fmt.Sprintf("dropped %s: %d", r, h.Drops[r]))
		}
		fmt.Fprintf(w, "%s: seen: %s\n", h.Host, strings.Join(parts, "; "))
	}
	switch {
	case l.DiedAt != "":
		fmt.Fprintf(w, "the probe died on %s: %s\n", l.DiedAt, l.Reason)
	case l.Delivered:
		fmt.Fprintln(w, "the probe was delivered")
	default:
		fmt.Fprintln(w, "no drop and no delivery counted within --wait")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
