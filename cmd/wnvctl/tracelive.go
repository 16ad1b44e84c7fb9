package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/wnv/wnv/trace"
)

// printLive writes where a live probe was seen and where it died.
func printLive(w io.Writer, l *trace.Live) {
	fmt.Fprintf(w, "\n== live probe %q: injected at the source port, %s\n", l.Mark, l.Injected)
	for _, h := range l.Hosts {
		if !h.Seen() {
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
