package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/trace"
	"github.com/wnv/wnv/vswitch"
)

// traceOptions are wnvctl trace's flags.
type traceOptions struct {
	from, port string
	req        provider.TraceRequest
	socketDir  string
	apis       []string
	destHost   string
	live       bool
	wait       time.Duration
}

func init() {
	var o traceOptions
	cmd := &cobra.Command{
		Use:   "trace (--from VM | --port NAME) --to ADDR",
		Short: "Explain a packet's path: every step on the source and the destination host, or the drop and what to fix",
		Long: `trace runs a packet through the switch of the VM's host and then of the host its outer destination PA
belongs to, as they would switch it now (a dry run: no counter, cache, hold or event changes), and prints
each step: port and spoof checks, ARP/ND answer, on-link prefix or customer route, lookup record,
encapsulation, outer addresses, fast or slow path, validation on arrival and delivery, or the drop reason and
the object to fix. --live also sends a marked probe and reports from both hosts' counters where it was seen
and where it died.

The source: --from VM asks the policy server (--server) for the VM's host and port; --port NAME traces from a
port of the host at --socket or --host. The hosts' provider APIs: --api HOST=ENDPOINT (a socket path or
ADDR:PORT over mutual TLS with --credentials), or --socket-dir DIR (DIR/HOST/wnvd.sock, the lab's layout:
wnvctl lab's state directory); the destination host is found by its PA in the policy server's host list, or
given with --dest-host ENDPOINT.`,
		Example: "  wnvctl trace --from blue1 --to 10.0.1.10 --proto tcp --dport 80 --socket-dir /run/wnv-lab\n" +
			"  wnvctl trace --port blue1 --to 10.0.0.11 --dest-host /run/wnv-lab/host2/wnvd.sock --live",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			rep, err := o.run(ctx, cmd)
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printResult(cmd, rep)
			}
			printTrace(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	cmd.SetFlagErrorFunc(flagError)
	fs := cmd.Flags()
	fs.StringVar(&o.from, "from", "", "the VM that sends, as the policy server knows it")
	fs.StringVar(&o.port, "port", "", "the port that sends, on the host at --socket or --host (instead of --from)")
	fs.Var(addrValue{&o.req.Destination}, "to", "the destination customer address")
	fs.Var(addrValue{&o.req.Source}, "src", "the source customer address (default: the port's first of --to's family)")
	fs.StringVar(&o.req.Protocol, "proto", "udp", "tcp, udp or icmp")
	fs.Uint16Var(&o.req.SourcePort, "sport", 0, "TCP or UDP source port (default 40000)")
	fs.Uint16Var(&o.req.DestinationPort, "dport", 0, "TCP or UDP destination port")
	fs.Uint8Var(&o.req.TTL, "ttl", 0, "TTL or hop limit (default 64)")
	fs.IntVar(&o.req.Length, "len", 0, "length of the IP packet (default: minimal)")
	fs.Var(macValue{&o.req.DestinationMAC}, "dst-mac", "the frame's destination MAC (default: what the VM's ARP or ND gets, traced too)")
	fs.StringVar(&o.socketDir, "socket-dir", "", "`DIR` holding each host's provider API socket as DIR/HOST/wnvd.sock")
	fs.StringArrayVar(&o.apis, "api", nil, "a host's provider API as `HOST=ENDPOINT`: a socket path, or ADDR:PORT over mutual TLS (repeatable)")
	fs.StringVar(&o.destHost, "dest-host", "", "the destination host's provider API `ENDPOINT` (default: found by its PA through the policy server)")
	fs.BoolVar(&o.live, "live", false, "also send a marked probe from the port and report where it was seen and where it died")
	fs.DurationVar(&o.wait, "wait", 2*time.Second, "with --live, how long to watch the counters")
	fs.StringVar(&flagServer, "server", envOr("WNV_SERVER", "https://127.0.0.1:8440"), "policy server URL, for --from and the destination host (env WNV_SERVER)")
	fs.StringVar(&flagTLSCA, "tls-ca", os.Getenv("WNV_TLS_CA"), "CA to trust for an https --server (env WNV_TLS_CA)")
	fs.StringVar(&flagTLSCert, "tls-cert", os.Getenv("WNV_TLS_CERT"), "client certificate for mutual TLS (env WNV_TLS_CERT)")
	fs.StringVar(&flagTLSKey, "tls-key", os.Getenv("WNV_TLS_KEY"), "client key for mutual TLS (env WNV_TLS_KEY)")
	cmd.MarkFlagRequired("to")
	rootCmd.AddCommand(cmd)
}

// traceReport is what wnvctl trace prints; -o json prints it as it is.
type traceReport = trace.Report

func (o *traceOptions) run(ctx context.Context, cmd *cobra.Command) (*traceReport, error) {
	if (o.from == "") == (o.port == "") {
		return nil, errors.New("give --from VM (through the policy server) or --port NAME (on the host at --socket or --host), one of them")
	}
	apis, err := parseAPIs(o.apis)
	if err != nil {
		return nil, err
	}
	var ps *policyclient.Client
	usePS := o.from != "" || o.destHost == "" && (cmd.Flags().Changed("server") || os.Getenv("WNV_SERVER") != "")
	if usePS {
		cfg, err := clientTLS()
		if err != nil {
			return nil, err
		}
		ps = policyclient.New(flagServer, cfg)
	}
	var src trace.Hop
	if o.from != "" {
		vm, err := ps.VM(ctx, o.from)
		if err != nil {
			return nil, fmt.Errorf("--from %s: %w", o.from, err)
		}
		o.req.Port = vm.Name
		src.Host = vm.Host
		if src.Client, src.Endpoint, err = o.hostClient(vm.Host, apis); err != nil {
			return nil, err
		}
	} else {
		o.req.Port = o.port
		c, _, cancel, err := providerClient(cmd)
		if err != nil {
			return nil, err
		}
		cancel()
		src.Client, src.Endpoint = c, orElse(flagHost, flagSocket)
	}
	t := trace.Tracer{
		Client: func(host string) (*provider.Client, string, error) { return o.hostClient(host, apis) },
		NoHosts: func(pa netip.Addr) string {
			return fmt.Sprintf("the packet leaves for PA %s: give --dest-host ENDPOINT (or --server) to trace its arrival there", pa)
		},
	}
	if o.destHost != "" {
		c, err := endpointClient(o.destHost)
		if err != nil {
			return nil, err
		}
		t.Arrival = &trace.Hop{Endpoint: o.destHost, Client: c}
	}
	if ps != nil {
		t.Hosts = ps.Hosts
	}
	rep, err := t.Run(ctx, src, o.req)
	if err != nil {
		return nil, err
	}
	if o.live {
		if rep.Live, err = trace.RunLive(ctx, rep.Hops, o.req, o.wait); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// parseAPIs reads the --api flags.
func parseAPIs(apis []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range apis {
		name, ep, ok := strings.Cut(a, "=")
		if !ok || name == "" || ep == "" {
			return nil, fmt.Errorf("--api %q is not HOST=ENDPOINT: give e.g. host2=/run/wnv/host2.sock or host2=192.0.2.2:8450", a)
		}
		m[name] = ep
	}
	return m, nil
}

// endpointClient is a provider API client of ep: a Unix socket path, or
// ADDR:PORT over mutual TLS with --credentials.
func endpointClient(ep string) (*provider.Client, error) {
	if strings.Contains(ep, "/") {
		return provider.NewClient(ep), nil
	}
	if flagCredentials == "" {
		return nil, fmt.Errorf("provider API %s needs a client credential: give --credentials DIR or set WNV_CREDENTIALS", ep)
	}
	cfg, err := pki.CredentialsTLS(flagCredentials)
	if err != nil {
		return nil, fmt.Errorf("--credentials: %w", err)
	}
	return provider.NewRemoteClient(ep, cfg), nil
}

// hostClient is the provider API client of the named host.
func (o *traceOptions) hostClient(host string, apis map[string]string) (*provider.Client, string, error) {
	ep, ok := apis[host]
	if !ok && o.socketDir != "" {
		ep, ok = filepath.Join(o.socketDir, host, "wnvd.sock"), true
	}
	if !ok {
		return nil, "", fmt.Errorf("no provider API known for host %s: give --api %s=ENDPOINT or --socket-dir DIR", host, host)
	}
	c, err := endpointClient(ep)
	return c, ep, err
}

// print writes the report as one table of steps per host.
func printTrace(w io.Writer, rep *traceReport) {
	for i, h := range rep.Hops {
		if i > 0 {
			fmt.Fprintln(w)
		}
		role := "source"
		if i > 0 {
			role = "arrival"
		}
		fmt.Fprintf(w, "== %s (%s, %s)\n", orElse(h.Host, "?"), role, h.Endpoint)
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "STEP\tDETAIL\tOBJECT")
		if r := h.Trace.Resolve; r != nil {
			printSteps(tw, r.Steps)
		}
		if p := h.Trace.Packet; p != nil {
			printSteps(tw, p.Steps)
		}
		tw.Flush()
		fmt.Fprintln(w, h.Verdict)
		for _, s := range trace.Drops(h.Trace) {
			fmt.Fprintf(w, "DROPPED: %s\n  object: %s\n  fix: %s\n", s.Reason, s.Object, s.Fix)
		}
	}
	if rep.Note != "" {
		fmt.Fprintf(w, "\nnote: %s\n", rep.Note)
	}
	if rep.Live != nil {
		printLive(w, rep.Live)
	}
}

func printSteps(tw io.Writer, steps []vswitch.Step) {
	for _, s := range steps {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Step, s.Detail, strCell(s.Object))
	}
}
