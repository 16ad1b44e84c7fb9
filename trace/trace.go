// Package trace follows a packet across hosts: it runs the switch's trace
// (a dry run of provider.Client.Trace) on the VM's host, then on the host
// its outer destination PA belongs to, and so on, and with Live sends a
// marked probe and reports from every host's counters and drop monitor
// where it was seen and where it died. wnvctl trace and the policy
// server's trace (the dashboard's form) both run it.
package trace

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// MaxHops bounds how far a trace follows a packet: the source, the
// destination, and the host a migrated VM's packets are forwarded to.
const MaxHops = 4

// Report is a whole trace: each host's part in the packet's order.
type Report struct {
	Hops []Hop  `json:"Hops"`
	Note string `json:"Note,omitempty"`
	Live *Live  `json:"Live,omitempty"`
}

// Hop is one host's trace.
type Hop struct {
	Host     string                 `json:"Host"`
	Endpoint string                 `json:"Endpoint"`
	Trace    provider.TraceResponse `json:"Trace"`
	// Verdict is the hop's outcome in a sentence (Verdict).
	Verdict string           `json:"Verdict"`
	Client  *provider.Client `json:"-"`
}

// Tracer finds the hosts a trace crosses.
type Tracer struct {
	// Hosts lists the hosts and their PAs (the policy server's); nil: the
	// trace stops where the packet leaves the first host unless Arrival
	// says where it goes.
	Hosts func(ctx context.Context) ([]policyapi.Host, error)
	// Client is the provider API client of a named host and its endpoint.
	Client func(host string) (*provider.Client, string, error)
	// Arrival, when set, is the host the source's packet arrives at.
	Arrival *Hop
	// NoHosts is the note when the packet leaves for pa and neither Hosts
	// nor Arrival say where that is.
	NoHosts func(pa netip.Addr) string
}

// Run traces req from src (its Client set) and on every host the packet
// reaches, up to MaxHops.
func (t Tracer) Run(ctx context.Context, src Hop, req provider.TraceRequest) (*Report, error) {
	var err error
	src.Trace, err = src.Client.Trace(ctx, req, false)
	if err != nil {
		return nil, fmt.Errorf("trace on %s: %w", orElse(src.Host, src.Endpoint), err)
	}
	src.Host = orElse(src.Trace.Host, src.Host)
	src.Verdict = Verdict(src.Trace)
	rep := &Report{Hops: []Hop{src}}
	for len(rep.Hops) < MaxHops {
		last := rep.Hops[len(rep.Hops)-1].Trace.Packet
		if last == nil || last.Outer == nil {
			break
		}
		next, err := t.destination(ctx, last.Outer.Dst, len(rep.Hops) == 1)
		if err != nil {
			rep.Note = err.Error()
			break
		}
		next.Trace, err = next.Client.Trace(ctx, provider.TraceRequest{Outer: last.Outer}, false)
		if err != nil {
			return nil, fmt.Errorf("trace the arrival on %s: %w", orElse(next.Host, next.Endpoint), err)
		}
		next.Host = orElse(next.Trace.Host, next.Host)
		next.Verdict = Verdict(next.Trace)
		rep.Hops = append(rep.Hops, next)
	}
	return rep, nil
}

// destination finds the host that owns PA pa: Arrival for the first hop,
// else by the hosts' PAs.
func (t Tracer) destination(ctx context.Context, pa netip.Addr, first bool) (Hop, error) {
	if first && t.Arrival != nil {
		return *t.Arrival, nil
	}
	if t.Hosts == nil {
		if t.NoHosts != nil {
			return Hop{}, fmt.Errorf("%s", t.NoHosts(pa))
		}
		return Hop{}, fmt.Errorf("the packet leaves for PA %s, whose host is unknown here", pa)
	}
	hosts, err := t.Hosts(ctx)
	if err != nil {
		return Hop{}, fmt.Errorf("find the host of PA %s: %w", pa, err)
	}
	for _, ph := range hosts {
		if slices.Contains(ph.ProviderAddresses, pa) {
			h := Hop{Host: ph.Name}
			h.Client, h.Endpoint, err = t.Client(ph.Name)
			return h, err
		}
	}
	return Hop{}, fmt.Errorf("no host registered with the policy server has PA %s: the sender's lookup record may name a wrong PA", pa)
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Drops are the drop steps of a host's trace.
func Drops(t provider.TraceResponse) []vswitch.Step {
	var out []vswitch.Step
	for _, r := range []*vswitch.TraceResult{t.Resolve, t.Packet} {
		if r == nil {
			continue
		}
		for _, s := range r.Steps {
			if s.Step == "drop" {
				out = append(out, s)
			}
		}
	}
	return out
}

// Verdict says in a sentence what became of the packet on one host.
func Verdict(t provider.TraceResponse) string {
	p := t.Packet
	if p == nil {
		if t.Resolve != nil {
			return fmt.Sprintf("verdict: the VM's address resolution got no answer (%s %s): the packet is never sent", t.Resolve.Verdict, t.Resolve.Reason)
		}
		return "verdict: none"
	}
	v := "verdict: " + p.Verdict
	switch {
	case p.Reason != "":
		v += " (" + p.Reason + ")"
	case p.Outer != nil:
		v += fmt.Sprintf(" %s -> %s", p.Outer.Src, p.Outer.Dst)
	case p.Port >= 0:
		v += fmt.Sprintf(" port %d", p.Port)
	}
	switch {
	case p.FastPath && t.Installed:
		v += "; fast path: the kernel holds this decision now"
	case p.FastPath:
		v += "; fast path: not installed yet, the next packet of the flow installs it"
	case p.Verdict != "drop":
		v += "; slow path"
	}
	if t.Injected != "" {
		v += fmt.Sprintf("; live probe %q injected: %s", t.Mark, t.Injected)
	}
	return v
}
