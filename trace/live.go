package trace

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/provider"
)

// Live is where a live probe was seen and where it died. Where it
// died comes from each host's drop monitor: the first host (in the packet's
// order) that dropped a frame carrying the probe's mark. What the counters
// of both paths say changed on every host, read before the probe and until
// it shows up as a drop or a delivery (or --wait passes), is reported
// beside it; other traffic in the same moment counts there too.
type Live struct {
	Mark     string     `json:"Mark"`
	Injected string     `json:"Injected"`
	Hosts    []LiveHost `json:"Hosts"`
	// DiedAt is the first host that dropped the probe, and Reason why;
	// empty if none did.
	DiedAt string `json:"DiedAt,omitempty"`
	Reason string `json:"Reason,omitempty"`
	// Delivered says the last host's destination port sent a frame.
	Delivered bool `json:"Delivered"`
}

// LiveHost is what one host's counters say changed.
type LiveHost struct {
	Host  string            `json:"Host"`
	Drops map[string]uint64 `json:"Drops"`
	// Ports are the ports' changes (Rx: from the VM; Tx: to it).
	Ports map[string]provider.PortCounters `json:"Ports"`
	// Paths is the change of frames per path, absent without the kernel
	// fast path.
	Paths *provider.PathCounters `json:"Paths,omitempty"`
}

// Seen says the host counted anything in the probe's moment.
func (lh *LiveHost) Seen() bool {
	return len(lh.Drops) > 0 || len(lh.Ports) > 0 || lh.Paths != nil && *lh.Paths != (provider.PathCounters{})
}

// RunLive sends a probe of req from the first hop's port (the hops are a
// dry run's, with their Client set) and watches every hop's counters and
// drop monitor until the probe is dropped or delivered, or wait passes.
func RunLive(ctx context.Context, hops []Hop, req provider.TraceRequest, wait time.Duration) (*Live, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	drops, err := watchProbeDrops(ctx, hops)
	if err != nil {
		return nil, err
	}
	before := make([]provider.Counters, len(hops))
	for i, h := range hops {
		c, err := h.Client.Counters(ctx)
		if err != nil {
			return nil, fmt.Errorf("counters of %s: %w", h.Host, err)
		}
		before[i] = c
	}
	res, err := hops[0].Client.Trace(ctx, req, true)
	if err != nil {
		return nil, fmt.Errorf("inject the probe on %s: %w", hops[0].Host, err)
	}
	rep := &Live{Mark: res.Mark, Injected: res.Injected}
	// The port the probe is delivered to on the last host, if the dry run
	// says it is.
	last := hops[len(hops)-1].Trace
	deliverTo := ""
	if last.Packet != nil && last.Packet.Verdict == "to-port" {
		deliverTo = portNamed(last)
	}
	deadline := time.Now().Add(wait)
	for {
		rep.Hosts = rep.Hosts[:0]
		rep.Delivered = false
		for i, h := range hops {
			after, err := h.Client.Counters(ctx)
			if err != nil {
				return nil, fmt.Errorf("counters of %s: %w", h.Host, err)
			}
			lh := diffCounters(h.Host, before[i], after)
			rep.Hosts = append(rep.Hosts, lh)
			if i == len(hops)-1 && deliverTo != "" && lh.Ports[deliverTo].TxFrames > 0 {
				rep.Delivered = true
			}
		}
		if i, reason, ok := drops.first([]byte(rep.Mark)); ok {
			rep.DiedAt, rep.Reason = hops[i].Host, reason
		}
		if rep.DiedAt != "" || rep.Delivered || time.Now().After(deadline) {
			return rep, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-drops.more:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probeDrops are the drops of marked probes the hops' monitors reported.
type probeDrops struct {
	mu sync.Mutex
	// byHop are the frames and reasons each hop dropped.
	byHop [][]monitor.Event
	more  chan struct{}
}

// maxProbeDrops bounds what a hop keeps: marked probes are rare.
const maxProbeDrops = 1024

// watchProbeDrops opens a monitor stream of every drop on each hop and
// returns once all of them stand, so that the probe's drop cannot pass
// unseen; the streams end with ctx.
func watchProbeDrops(ctx context.Context, hops []Hop) (*probeDrops, error) {
	d := &probeDrops{byHop: make([][]monitor.Event, len(hops)), more: make(chan struct{}, 1)}
	started := make(chan error, len(hops))
	for i, h := range hops {
		go func() {
			first := true
			for e, err := range h.Client.Monitor(ctx, provider.MonitorQuery{Sample: 1, Rate: monitor.MaxRate}) {
				if first {
					first = false
					if err != nil {
						err = fmt.Errorf("monitor the drops of %s: %w", h.Host, err)
					}
					started <- err
				}
				if err != nil {
					return
				}
				// Only a frame holding markPrefix can carry a mark
				// (carriesMark): the rest never fill the bound.
				if e.Type == monitor.TypeDrop && bytes.Contains(e.Frame, markPrefix) {
					d.add(i, e)
				}
			}
		}()
	}
	for range hops {
		select {
		case err := <-started:
			if err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return d, nil
}

func (d *probeDrops) add(hop int, e monitor.Event) {
	d.mu.Lock()
	if len(d.byHop[hop]) < maxProbeDrops {
		d.byHop[hop] = append(d.byHop[hop], e)
	}
	d.mu.Unlock()
	select {
	case d.more <- struct{}{}:
	default:
	}
}

// first is the first hop that dropped the frame carrying mark, and why.
func (d *probeDrops) first(mark []byte) (int, string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, es := range d.byHop {
		for _, e := range es {
			if carriesMark(e, mark) {
				return i, e.Reason, true
			}
		}
	}
	return 0, "", false
}

// markPrefix begins every probe's mark (host.Trace).
var markPrefix = []byte("wnv-trace ")

// carriesMark: the frame holds mark (not as the beginning of a longer
// one), or ends in its beginning where the
// sample cut a long frame (a tunnel packet's headers push the mark out of
// the kernel's sample); the beginning must outlast markPrefix to count.
func carriesMark(e monitor.Event, mark []byte) bool {
	if len(mark) == 0 {
		return false
	}
	for f := e.Frame; ; {
		i := bytes.Index(f, mark)
		if i < 0 {
			break
		}
		// Probe 2's mark begins probe 23's.
		if f = f[i+len(mark):]; len(f) == 0 || f[0] < '0' || f[0] > '9' {
			return true
		}
	}
	if e.Length <= len(e.Frame) {
		return false
	}
	for n := len(mark) - 1; n > len(markPrefix); n-- {
		if bytes.HasSuffix(e.Frame, mark[:n]) {
			return true
		}
	}
	return false
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

func diffCounters(host string, a, b provider.Counters) LiveHost {
	lh := LiveHost{Host: host, Drops: map[string]uint64{}, Ports: map[string]provider.PortCounters{}}
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
