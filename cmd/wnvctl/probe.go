package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/wnv/wnv/lab/probe"
)

var (
	flagProbeName    string
	flagProbeTo      string
	flagProbeFrom    string
	flagProbePort    int
	flagProbeCount   int
	flagProbeTimeout time.Duration
	flagProbeBytes   int64
)

var probeCmd = &cobra.Command{
	Use:   "probe",
	Short: "Send or answer test traffic that names the VM answering (run inside a VM namespace)",
	Long: `The probe tool is the lab's traffic generator. 'probe serve' answers UDP echoes and sinks TCP
streams on port 7007 with its own name; 'probe udp' and 'probe tcp' report which VM answered.
In the lab: wnvctl lab exec blue1 -- wnvctl probe udp --to 10.0.0.11`,
	Example: "  wnvctl probe serve --name blue2\n  wnvctl probe udp --to 10.0.0.11 --count 5",
}

func init() {
	serve := &cobra.Command{
		Use:     "serve",
		Example: "  wnvctl probe serve --name blue2",
		Short:   "Answer probes on UDP and TCP as --name until SIGTERM",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ctx, cancel := labContext()
			defer cancel()
			return probe.Serve(ctx, flagProbeName, flagProbePort, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		},
	}
	serve.Flags().StringVar(&flagProbeName, "name", "", "name to answer with (the VM's name)")
	serve.MarkFlagRequired("name")

	udp := &cobra.Command{
		Use:     "udp --to ADDR",
		Example: "  wnvctl probe udp --to 10.0.0.11\n  wnvctl probe udp --to fd00:0:0:1::11 --count 10 -o json",
		Short:   "Send UDP echo requests and print who answered and the round-trip time",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			to, from, err := probeAddrs()
			if err != nil {
				return err
			}
			ctx, cancel := labContext()
			defer cancel()
			replies, err := probe.UDP(ctx, to, probe.UDPOptions{Count: flagProbeCount, Timeout: flagProbeTimeout, Source: from})
			if err != nil {
				return err
			}
			if structured() {
				if err := encode(os.Stdout, replies, false); err != nil {
					return err
				}
			} else {
				for _, r := range replies {
					fmt.Printf("reply from %v (%s): seq=%d rtt=%v\n", r.From.Addr().Unmap(), r.Responder, r.Seq, r.RTT.Round(time.Microsecond))
				}
				fmt.Printf("%d probes sent to %v, %d answered\n", max(flagProbeCount, 1), to, len(replies))
			}
			if len(replies) == 0 {
				return fmt.Errorf("no reply from %v within %v per probe", to, flagProbeTimeout)
			}
			return nil
		},
	}
	udp.Flags().IntVar(&flagProbeCount, "count", 3, "number of probes, sent one after the other")
	udp.Flags().DurationVar(&flagProbeTimeout, "timeout", time.Second, "how long to wait for each answer")

	tcp := &cobra.Command{
		Use:     "tcp --to ADDR --bytes N",
		Example: "  wnvctl probe tcp --to 10.0.0.11 --bytes 100000000",
		Short:   "Stream N bytes over TCP and print throughput and who received them",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			to, from, err := probeAddrs()
			if err != nil {
				return err
			}
			if flagProbeBytes <= 0 {
				return fmt.Errorf("--bytes %d is invalid: use a positive byte count", flagProbeBytes)
			}
			ctx, cancel := labContext()
			defer cancel()
			tr, err := probe.TCP(ctx, to, flagProbeBytes, from, flagProbeTimeout)
			if err != nil {
				return err
			}
			if structured() {
				return encode(os.Stdout, tr, false)
			}
			fmt.Printf("%d bytes to %v received by %s in %v: %.1f Mbit/s\n", tr.Bytes, to, tr.Responder, tr.Elapsed.Round(time.Millisecond), tr.Mbps())
			return nil
		},
	}
	tcp.Flags().Int64Var(&flagProbeBytes, "bytes", 1<<20, "bytes to send")
	tcp.Flags().DurationVar(&flagProbeTimeout, "timeout", 60*time.Second, "limit for the whole transfer")

	for _, c := range []*cobra.Command{udp, tcp} {
		c.Flags().StringVar(&flagProbeTo, "to", "", "address of the responder (IPv4 or IPv6)")
		c.Flags().StringVar(&flagProbeFrom, "from", "", "source address to send from (default: chosen by routing)")
		c.MarkFlagRequired("to")
	}
	for _, c := range []*cobra.Command{serve, udp, tcp} {
		c.Flags().IntVar(&flagProbePort, "port", probe.Port, "UDP and TCP port")
	}
	probeCmd.AddCommand(serve, udp, tcp)
	rootCmd.AddCommand(probeCmd)
}

func probeAddrs() (to netip.AddrPort, from netip.Addr, err error) {
	a, err := netip.ParseAddr(flagProbeTo)
	if err != nil {
		return to, from, fmt.Errorf("--to %q is not an IP address: use e.g. 10.0.0.11 or fd00:0:0:1::11", flagProbeTo)
	}
	if flagProbePort < 1 || flagProbePort > 65535 {
		return to, from, fmt.Errorf("--port %d is out of range: use 1..65535", flagProbePort)
	}
	if flagProbeFrom != "" {
		if from, err = netip.ParseAddr(flagProbeFrom); err != nil {
			return to, from, fmt.Errorf("--from %q is not an IP address: use one of this namespace's addresses", flagProbeFrom)
		}
	}
	return netip.AddrPortFrom(a, uint16(flagProbePort)), from, nil
}
