package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/pcap"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/provider"
)

func init() { rootCmd.AddCommand(monitorCmd()) }

func monitorCmd() *cobra.Command {
	var (
		q       provider.MonitorQuery
		tenants []string
		pcapTo  string
		count   int
	)
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Watch the host's drops live, from the kernel fast path and the slow path (and with --flows the flows the slow path decides)",
		Long: `Streams samples of what the host drops: time, path (kernel or slow), host, reason, port (the VM),
VSID, addresses and a summary of the headers. Sampling (--sample) and a rate limit (--rate, default 100 a
second) bound the cost; lines starting with # say what they suppressed. --pcap writes the dropped frames'
first 128 bytes for Wireshark. Ctrl-C stops.`,
		Example: "  wnvctl monitor --vm blue1\n" +
			"  wnvctl monitor --tenant contoso --reason spoofed-mac,spoofed-ca --pcap drops.pcap\n" +
			"  wnvctl monitor --virtual-subnet-id 5001 --flows --count 20 -o json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 0 {
				return fmt.Errorf("--count %d is negative: give the number of events to stop after, or 0 for no end", count)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if len(tenants) > 0 {
				vsids, err := tenantVSIDs(ctx, cmd, tenants)
				if err != nil {
					return err
				}
				q.VirtualSubnetID = append(q.VirtualSubnetID, vsids...)
			}
			c, _, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			cancel() // the stream has no deadline: ctx ends it
			var pw *pcap.Writer
			if pcapTo != "" {
				f, err := os.Create(pcapTo)
				if err != nil {
					return fmt.Errorf("--pcap: %w", err)
				}
				defer f.Close()
				if pw, err = pcap.NewWriter(f, monitor.SnapLen); err != nil {
					return fmt.Errorf("--pcap %s: %w", pcapTo, err)
				}
			}
			return watch(ctx, cmd.OutOrStdout(), c, q, pw, count)
		},
	}
	f := cmd.Flags()
	f.Var(listOf(&q.Port, "names", func(s string) (string, error) { return s, nil }, "use VM (port) names"), "vm", "only the drops of these VMs' ports (a host agent names a VM's port after the VM); commas or repeated")
	f.Var(vsidFilter(&q.VirtualSubnetID), "virtual-subnet-id", "only these virtual subnets; commas or repeated")
	f.StringSliceVar(&tenants, "tenant", nil, "only the virtual subnets of these tenants (name or CustomerID), as the policy server (--server) knows them")
	f.StringSliceVar(&q.Reason, "reason", nil, "only these drop reasons (as wnvctl counters names them, e.g. spoofed-mac); commas or repeated")
	f.BoolVar(&q.Flows, "flows", false, "also show the flows the slow path decides and installs")
	f.StringVar(&pcapTo, "pcap", "", "write the dropped frames (their first 128 bytes) to this pcap `FILE`")
	f.Uint32Var(&q.Sample, "sample", 1, "show 1 in N of the selected drops and flows")
	f.Uint32Var(&q.Rate, "rate", monitor.DefaultRate, "show at most N a second (the host allows up to 10000)")
	f.IntVar(&count, "count", 0, "stop after N drops and flows (0: until Ctrl-C)")
	f.StringVar(&flagServer, "server", envOr("WNV_SERVER", "https://127.0.0.1:8440"), "policy server URL, for --tenant (env WNV_SERVER)")
	aliasFlags(cmd, "vsid", "virtual-subnet-id")
	cmd.RegisterFlagCompletionFunc("vm", completePorts)
	cmd.RegisterFlagCompletionFunc("tenant", completeTenants)
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}

// tenantVSIDs resolves tenants (names or CustomerIDs) to their virtual
// subnets through the policy server.
func tenantVSIDs(ctx context.Context, cmd *cobra.Command, tenants []string) ([]policy.VSID, error) {
	cfg, err := clientTLS()
	if err != nil {
		return nil, err
	}
	ps := policyclient.New(flagServer, cfg)
	ts, err := ps.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	rds, err := ps.RoutingDomains(ctx)
	if err != nil {
		return nil, err
	}
	var vsids []policy.VSID
	for _, name := range tenants {
		found := false
		for _, t := range ts {
			if !strings.EqualFold(t.Name, name) && !strings.EqualFold(t.CustomerID.String(), name) && !strings.EqualFold("{"+name+"}", t.CustomerID.String()) {
				continue
			}
			found = true
			for _, rd := range rds {
				if rd.CustomerID != t.CustomerID {
					continue
				}
				subs, err := ps.Subnets(ctx, rd.RoutingDomainID)
				if err != nil {
					return nil, err
				}
				for _, s := range subs {
					vsids = append(vsids, s.VirtualSubnetID)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("--tenant %q is not a tenant of the policy server at %s: list them with wnvctl tenant get", name, flagServer)
		}
	}
	if len(vsids) == 0 {
		return nil, fmt.Errorf("--tenant %s has no virtual subnets: nothing to watch", strings.Join(tenants, ","))
	}
	return vsids, nil
}

// watch prints the stream until ctx ends, it ends, or count events came.
func watch(ctx context.Context, w io.Writer, c *provider.Client, q provider.MonitorQuery, pw *pcap.Writer, count int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for e, err := range c.Monitor(ctx, q) {
		if err != nil {
			return err
		}
		if pw != nil && e.Type == monitor.TypeDrop && len(e.Frame) > 0 {
			if err := pw.WriteFrame(e.Time, e.Frame, e.Length); err != nil {
				return fmt.Errorf("--pcap: %w", err)
			}
		}
		if structured() {
			if err := encode(w, e, true); err != nil {
				return err
			}
		} else {
			printEvent(w, e)
		}
		if e.Type == monitor.TypeDrop || e.Type == monitor.TypeFlow {
			if n++; n == count {
				return nil
			}
		}
	}
	return nil
}

const monitorLine = "%-12s  %-6s  %-8s  %-22s  %-10s  %-8s  %s\n"

func printEvent(w io.Writer, e monitor.Event) {
	switch e.Type {
	case monitor.TypeStart:
		fmt.Fprintf(w, "# monitoring %s: 1 in %d, at most %d a second\n", e.Host, e.Sample, e.Rate)
		fmt.Fprintf(w, monitorLine, "TIME", "PATH", "HOST", "REASON", "PORT", "VSID", "SRC > DST  HEADER")
	case monitor.TypeSuppressed:
		s := e.Suppressed
		fmt.Fprintf(w, "# suppressed since the start: kernel %s; slow path %s; this stream %s\n", counts(s.Kernel), counts(s.Slow), counts(s.Stream))
	case monitor.TypeDrop:
		port := e.Port
		if e.FromUnderlay {
			port = "underlay"
		} else if port == "" {
			port = "-"
		}
		fmt.Fprintf(w, monitorLine, e.Time.Format("15:04:05.000"), e.Path, e.Host, e.Reason, port, vsidText(e.VirtualSubnetID),
			fmt.Sprintf("%s > %s  %s", e.Src, e.Dst, e.Header))
	case monitor.TypeFlow:
		routed := ""
		if e.Routed {
			routed = " (routed)"
		}
		fmt.Fprintf(w, monitorLine, e.Time.Format("15:04:05.000"), e.Path, e.Host, "flow", e.Port, vsidText(e.VirtualSubnetID),
			fmt.Sprintf("> %s  via %s%s", e.Destination, e.NextHop, routed))
	}
}

func vsidText(v uint32) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprint(v)
}

func counts(c monitor.Counts) string {
	return fmt.Sprintf("%d sampled out, %d over the rate, %d lost", c.Sampled, c.RateLimited, c.Lost)
}
