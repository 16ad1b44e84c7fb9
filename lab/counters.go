package lab

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/wnv/wnv/provider"
)

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
