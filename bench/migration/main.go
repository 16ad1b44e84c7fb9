// Command migration measures live migration in the namespace lab: it brings
// up the default lab (policy server, three hosts with agents), then migrates
// blue2 back and forth between host2 and host3, each time under a 1 kHz UDP
// probe stream from blue1, and prints each migration's blackout and loss and
// the median and p99 over all of them. bench/migration.sh builds and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/wnv/wnv/lab"
)

// target is the goal for the median blackout.
const target = 50 * time.Millisecond

func main() {
	var (
		wnvd, wnvctl, stateDir, prefix string
		n                              int
		lead, length, pause            time.Duration
		keep                           bool
	)
	flag.StringVar(&wnvd, "wnvd", "", "wnvd binary (required)")
	flag.StringVar(&wnvctl, "wnvctl", "", "wnvctl binary, for the VMs' probe responders (required)")
	flag.StringVar(&stateDir, "state-dir", "/run/wnv/bench-migration", "the bench lab's pid files, logs and sockets")
	flag.StringVar(&prefix, "prefix", "wnvmig-", "namespace prefix of the bench lab (distinct from a running default lab)")
	flag.IntVar(&n, "n", 10, "number of migrations")
	flag.DurationVar(&lead, "lead", 300*time.Millisecond, "stream time before each migration call")
	flag.DurationVar(&length, "length", 1500*time.Millisecond, "length of each migration's stream")
	flag.DurationVar(&pause, "pause", 500*time.Millisecond, "pause between migrations")
	flag.BoolVar(&keep, "keep", false, "leave the lab up at the end")
	flag.Parse()
	if wnvd == "" || wnvctl == "" {
		fail(errors.New("--wnvd and --wnvctl are required: bench/migration.sh builds them"))
	}
	if os.Geteuid() != 0 {
		fail(errors.New("the bench creates network namespaces: run it as root"))
	}
	topo := lab.Default()
	topo.Prefix = prefix
	l := &lab.Lab{Topology: topo, StateDir: stateDir, Wnvd: wnvd, Wnvctl: wnvctl}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, l, n, lead, length, pause)
	if !keep {
		if derr := l.Down(); derr != nil && err == nil {
			err = derr
		}
	}
	if err != nil {
		fail(err)
	}
}

func run(ctx context.Context, l *lab.Lab, n int, lead, length, pause time.Duration) error {
	fmt.Printf("bringing up the lab (%s*, state in %s): policy server with embedded etcd, 3 hosts with agents, 5 VMs\n", l.Topology.Prefix, l.StateDir)
	if err := l.Up(ctx); err != nil && !errors.Is(err, lab.ErrAlreadyUp) {
		return err
	}
	fmt.Printf("%d live migrations of blue2 between host2 and host3, each under a 1 kHz UDP probe stream from blue1 (%v before the call, %v in all)\n\n", n, lead, length)
	const row = "%3v  %-6s %-6s %12v %6v %6v %14v  %-16s %s\n"
	fmt.Printf(row, "#", "FROM", "TO", "PORT UP (ms)", "SENT", "LOST", "BLACKOUT (ms)", "ANSWERED BEFORE", "ANSWERED AFTER")
	var blackouts, losses []float64
	var problems []string
	for i := range n {
		vm, _ := l.Topology.VM("blue2")
		to := "host3"
		if vm.Host == to {
			to = "host2"
		}
		r, err := l.MigrateUnderStream(ctx, lab.StreamMigration{VM: "blue2", To: to, Sender: "blue1", Lead: lead, Length: length})
		if err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		fmt.Printf(row, i+1, r.From, r.To, fmt.Sprintf("%.1f", ms(r.Took)), r.Sent, r.Lost, fmt.Sprintf("%.1f", ms(r.Blackout)), r.AnsweredBefore, r.AnsweredAfter)
		blackouts = append(blackouts, ms(r.Blackout))
		losses = append(losses, float64(r.Lost))
		for _, p := range r.Problems(time.Second) {
			problems = append(problems, fmt.Sprintf("migration %d: %s", i+1, p))
		}
		time.Sleep(pause)
	}
	fmt.Printf("\nblackout: median %.1f ms, p99 %.1f ms, max %.1f ms\n", percentile(blackouts, 50), percentile(blackouts, 99), slices.Max(blackouts))
	fmt.Printf("probes lost: median %.0f, p99 %.0f (of ~%d per stream)\n", percentile(losses, 50), percentile(losses, 99), int(length/time.Millisecond))
	verdict := "met"
	if percentile(blackouts, 50) > float64(target/time.Millisecond) {
		verdict = "MISSED"
	}
	fmt.Printf("target median blackout <= %v: %s (Andromeda, NSDI'18: 65 ms median, 388 ms p99)\n", target, verdict)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Println("FAIL:", p)
		}
		return fmt.Errorf("%d migrations failed their expectations", len(problems))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile p of xs.
func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "migration bench:", err)
	os.Exit(1)
}
