package lab

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/wnv/wnv/provider"
)

// fastPathOff says why a host has no path counters.
const fastPathOff = "every frame through wnvd's switch: the kernel fast path is off (wnvd --fast-path, default $WNV_FAST_PATH)"

// PrintPaths writes, per host, the frames each path carried: the kernel fast
// path or wnvd's switch (the slow path), from the VMs' ports and from the
// underlay.
func PrintPaths(w io.Writer, paths map[string]*provider.PathCounters) {
	hosts := slices.Sorted(maps.Keys(paths))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tKERNEL FROM PORTS\tKERNEL FROM UNDERLAY\tSWITCH FROM PORTS\tSWITCH FROM UNDERLAY")
	for _, h := range hosts {
		if p := paths[h]; p != nil {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", h, p.KernelFromPorts, p.KernelFromUnderlay, p.SlowFromPorts, p.SlowFromUnderlay)
		} else {
			fmt.Fprintf(tw, "%s\t%s\n", h, fastPathOff)
		}
	}
	tw.Flush()
}

// PrintCounters writes a host's port, VSID and drop counters as tables.
func PrintCounters(w io.Writer, c provider.Counters) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tRX FRAMES\tRX BYTES\tTX FRAMES\tTX BYTES\tDROPS")
	for _, p := range c.Ports {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", p.Name, p.RxFrames, p.RxBytes, p.TxFrames, p.TxBytes, p.Drops)
	}
	tw.Flush()
	fmt.Fprintln(tw, "VSID\tTX FRAMES\tRX FRAMES\tENCAPSULATED\tDECAPSULATED\tDROPS")
	for _, v := range c.VSIDs {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\n", v.VirtualSubnetID, v.TxFrames, v.RxFrames, v.Encapsulated, v.Decapsulated, v.Drops)
	}
	tw.Flush()
	if p := c.Paths; p != nil {
		fmt.Fprintf(w, "paths: the kernel fast path forwarded %d frames from ports and %d from the underlay; wnvd's switch %d and %d\n",
			p.KernelFromPorts, p.KernelFromUnderlay, p.SlowFromPorts, p.SlowFromUnderlay)
	} else {
		fmt.Fprintln(w, "paths: "+fastPathOff)
	}
	if m := c.Migration; m != (provider.MigrationCounters{}) {
		fmt.Fprintf(w, "migration: %d packets forwarded to a moved VM, %d redirects sent, %d applied\n", m.Forwarded, m.RedirectsSent, m.RedirectsApplied)
	}
	if len(c.Drops) == 0 {
		fmt.Fprintln(w, "drops: none")
		return
	}
	fmt.Fprintln(tw, "DROP REASON\tCOUNT")
	for _, d := range c.Drops {
		fmt.Fprintf(tw, "%s\t%d\n", d.Reason, d.Count)
	}
	tw.Flush()
}
