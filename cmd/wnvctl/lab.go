package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/wnv/wnv/lab"
)

var (
	flagLabWnvd       string
	flagLabState      string
	flagLabKeep       bool
	flagLabTo         string
	flagLabStreamFrom string
	flagLabQEMU       []string
)

var labCmd = &cobra.Command{
	Use:   "lab",
	Short: "Run a multi-host wnv lab in network namespaces on this machine",
	Long: `The lab builds the default topology in network namespaces: wnv-underlay (bridge br0,
with the policy server 'wnvd policy' at https://198.18.0.254:8440 (mutual TLS) and its embedded etcd),
wnv-host1..3 (each running 'wnvd host' with its agent and PA 198.18.0.1..3), and the VMs
wnv-blue1..3, wnv-red1, wnv-red2 (created at the policy server; eth0 is a port of their
host's switch, with a probe responder on port 7007). It needs root and iproute2.
Each host agent has its own host credential (<state-dir>/credentials/<host>); 'lab exec'
sets WNV_SERVER and WNV_CREDENTIALS (the admin credential, <state-dir>/pki/admin), so
'wnvctl lab exec underlay -- wnvctl vm get' reaches the lab's policy server. 'lab up --qemu blue3' runs blue3 as a real QEMU guest (Debian's
cloud kernel and busybox, built by 'make guest'), whose TAP is its port; 'lab demo'
does so by default. See docs/lab.md for the topology.`,
	Example: "  sudo wnvctl lab demo\n  sudo wnvctl lab up && sudo wnvctl lab exec blue1 -- wnvctl probe udp --to 10.0.0.11",
}

func init() {
	labCmd.PersistentFlags().StringVar(&flagLabWnvd, "wnvd", "", "wnvd binary to run on each host (default: wnvd next to wnvctl, else on PATH)")
	labCmd.PersistentFlags().StringVar(&flagLabState, "state-dir", lab.DefaultStateDir, "directory for pid files, logs, sockets and lab state")

	up := &cobra.Command{
		Use:     "up",
		Example: "  sudo wnvctl lab up\n  sudo wnvctl lab up --qemu blue3",
		Short:   "Build the lab (says so and exits 0 when it is already up)",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := newLab(false)
			if err != nil {
				return err
			}
			ctx, cancel := labContext()
			defer cancel()
			err = l.Up(ctx)
			// The QEMU guests run on without this process.
			l.Close()
			if errors.Is(err, lab.ErrAlreadyUp) {
				fmt.Printf("lab is already up (state in %s): 'wnvctl lab status' shows it, 'wnvctl lab down' removes it\n", l.StateDir)
				return nil
			}
			var partial *lab.PartialError
			if errors.As(err, &partial) {
				return fmt.Errorf("%w\nthe partial lab is left for inspection (logs in %s); 'wnvctl lab down' removes it", err, l.StateDir)
			}
			return err
		},
	}
	down := &cobra.Command{
		Use:     "down",
		Example: "  sudo wnvctl lab down",
		Short:   "Remove the lab: daemons, responders, namespaces and state (also after a crash)",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := newLab(true)
			if err != nil {
				return err
			}
			if err := l.Down(); err != nil {
				return err
			}
			fmt.Println("lab is down")
			return nil
		},
	}
	status := &cobra.Command{
		Use:     "status",
		Example: "  sudo wnvctl lab status\n  sudo wnvctl lab status -o yaml",
		Short:   "Show the lab's namespaces, daemons, provider addresses and VMs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(true)
			if err != nil {
				return err
			}
			return printStatus(l.Status(cmd.Context()))
		},
	}
	execCmd := &cobra.Command{
		Use:     "exec NAME -- CMD [ARGS...]",
		Example: "  sudo wnvctl lab exec blue1 -- ip addr\n  sudo wnvctl lab exec underlay -- wnvctl vm get",
		Short:   "Run a command in the namespace of a host, VM or 'underlay' (e.g. lab exec blue1 -- ip addr)",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash != 1 {
				return fmt.Errorf("lab exec takes one NAME before '--': use lab exec NAME -- CMD [ARGS...]")
			}
			l, err := newLab(true)
			if err != nil {
				return err
			}
			code, err := l.Exec(args[0], args[1:], os.Stdin, os.Stdout, os.Stderr)
			if err != nil {
				return err
			}
			if code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
	demo := &cobra.Command{
		Use:     "demo",
		Example: "  sudo wnvctl lab demo\n  sudo wnvctl lab demo --keep --qemu=",
		Short:   "Bring the lab up, check reachability and isolation, move data, show counters and NVGRE frames",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := newLab(false)
			if err != nil {
				return err
			}
			ctx, cancel := labContext()
			defer cancel()
			err = l.Demo(ctx, os.Stdout, flagLabKeep)
			l.Close()
			return err
		},
	}
	var dashListen string
	dash := &cobra.Command{
		Use:     "dashboard",
		Example: "  sudo wnvctl lab up && sudo wnvctl lab dashboard",
		Short:   "Serve the lab policy server's web dashboard on this machine until Ctrl-C, with an observer token",
		Long: `The policy server of the lab lives on the lab's underlay; this forwards its port to --listen
in the root namespace and prints the dashboard's URL and an observer token to log in with.
  wnvctl lab up && wnvctl lab dashboard`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := newLab(false)
			if err != nil {
				return err
			}
			defer l.Close()
			if !l.IsUp() {
				return fmt.Errorf("the lab is not up in %s: run wnvctl lab up first", l.StateDir)
			}
			ctx, cancel := labContext()
			defer cancel()
			d, err := l.StartDashboard(ctx, dashListen, "lab-dashboard")
			if err != nil {
				return err
			}
			defer d.Close()
			fmt.Printf("dashboard: %s\nobserver token: %s\nthe lab's CA, for the browser to trust: %s\nCtrl-C to stop\n", d.URL, d.Token, d.CA)
			<-ctx.Done()
			return nil
		},
	}
	dash.Flags().StringVar(&dashListen, "listen", lab.DashboardAddr, "address in the root namespace to serve the dashboard on")
	demo.Flags().BoolVar(&flagLabKeep, "keep", false, "leave the lab running after the demo")
	up.Flags().StringSliceVar(&flagLabQEMU, "qemu", nil, "VMs to run as QEMU guests instead of namespaces (e.g. blue3)")
	demo.Flags().StringSliceVar(&flagLabQEMU, "qemu", []string{"blue3"}, "VMs to run as QEMU guests instead of namespaces (--qemu= for none)")
	migrate := &cobra.Command{
		Use:     "migrate VM --to HOST [--stream-from VM]",
		Example: "  sudo wnvctl lab migrate blue2 --to host3\n  sudo wnvctl lab migrate blue3 --to host1 --stream-from red1",
		Short:   "Live-migrate a lab VM through the policy server under a 1 kHz probe stream, and show loss, blackout and notifications",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			l, err := newLab(true)
			if err != nil {
				return err
			}
			if !l.IsUp() {
				return fmt.Errorf("the lab is not up in %s: run 'wnvctl lab up' first", l.StateDir)
			}
			ctx, cancel := labContext()
			defer cancel()
			r, err := l.MigrateUnderStream(ctx, lab.StreamMigration{VM: args[0], To: flagLabTo, Sender: flagLabStreamFrom})
			l.Close()
			if err != nil {
				return err
			}
			lab.PrintMigration(os.Stdout, r)
			v, _ := l.Topology.VM(r.VM)
			if p := r.Problems(lab.MaxBlackout(v)); len(p) > 0 {
				return fmt.Errorf("live migration of %s: %s", r.VM, strings.Join(p, "; "))
			}
			return nil
		},
	}
	migrate.Flags().StringVar(&flagLabTo, "to", "", "destination host (required)")
	migrate.Flags().StringVar(&flagLabStreamFrom, "stream-from", "blue1", "VM that sends the probe stream")
	migrate.MarkFlagRequired("to")
	labCmd.AddCommand(up, down, status, execCmd, demo, migrate, dash)
	rootCmd.AddCommand(labCmd)
}

// newLab returns the default lab; with load, the topology saved by the lab
// that is up replaces it, so status, exec and down see what up built.
func newLab(load bool) (*lab.Lab, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the lab needs root: it creates network namespaces; run it with sudo")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the wnvctl binary: %w", err)
	}
	wnvd := flagLabWnvd
	if wnvd == "" {
		wnvd = filepath.Join(filepath.Dir(self), "wnvd")
		if _, err := os.Stat(wnvd); err != nil {
			if p, err := exec.LookPath("wnvd"); err == nil {
				wnvd = p
			}
		}
	}
	topo, err := lab.Default().WithEdge().WithQEMU(flagLabQEMU...)
	if err != nil {
		return nil, fmt.Errorf("--qemu: %w", err)
	}
	l := &lab.Lab{Topology: topo, StateDir: flagLabState, Wnvd: wnvd, Wnvctl: self, Out: os.Stdout}
	if load {
		l.Load()
	}
	return l, nil
}

// labContext is cancelled by SIGINT/SIGTERM so that a demo stops its probes.
func labContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func printStatus(s lab.Status) error {
	if structured() {
		return encode(os.Stdout, s, false)
	}
	state := "down"
	if s.Up {
		state = "up"
	}
	fmt.Printf("lab is %s (state in %s)\n\n", state, s.StateDir)
	if ps := s.PolicyServer; ps != nil {
		answer := fmt.Sprintf("answers: %d VMs, live hosts %s", ps.VMs, labOrDash(strings.Join(ps.HostsAlive, ",")))
		if ps.Error != "" {
			answer = "does not answer: " + ps.Error
		}
		fmt.Printf("policy server %s (wnvd policy pid %d, alive %v) %s\n\n", ps.URL, ps.PID, ps.Alive, answer)
	} else {
		fmt.Print("static lab: no policy server, policy provisioned per host\n\n")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tEXISTS")
	for _, n := range s.Namespaces {
		fmt.Fprintf(tw, "%s\t%v\n", n.Name, n.Exists)
	}
	tw.Flush()
	fmt.Println()
	fmt.Fprintln(tw, "HOST\tPA\tWNVD PID\tALIVE\tPAS REPORTED\tSOCKET")
	for _, h := range s.Hosts {
		pas := make([]string, len(h.PAs))
		for i, a := range h.PAs {
			pas[i] = a.String()
		}
		fmt.Fprintf(tw, "%s\t%v\t%d\t%v\t%s\t%s\n", h.Name, h.PA, h.PID, h.Alive, labOrDash(strings.Join(pas, ",")), h.Socket)
	}
	tw.Flush()
	fmt.Println()
	fmt.Fprintln(tw, "VM\tKIND\tHOST\tHOST AT SERVER\tTENANT\tVSID\tMAC\tIPV4 CA\tIPV6 CA\tRESPONDER")
	for _, v := range s.VMs {
		kind := "namespace"
		if v.QEMU {
			kind = fmt.Sprintf("qemu (pid %d)", v.QEMUPID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%v\t%v\t%v\n", v.Name, kind, v.Host, labOrDash(v.ServerHost), v.Tenant, v.VSID, v.MAC, v.V4, v.V6, v.ResponderAlive)
	}
	return tw.Flush()
}

func labOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
