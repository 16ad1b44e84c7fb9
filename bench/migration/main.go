// Command migration measures live migration in the namespace lab: it brings
// up the default lab (policy server, three hosts with agents) with blue3 as a
// real QEMU guest, then migrates the stand-in VM blue2 back and forth between
// host2 and host3, and the QEMU guest between host3 and host2 with QEMU's own
// live migration, each time under a 1 kHz UDP probe stream from blue1. It
// prints each migration's blackout and loss and the median and p99 of each
// series; the 50 ms target applies to the stand-in VM. bench/migration.sh
// builds and runs it.
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
	"github.com/wnv/wnv/lab/qemu"
)

// target is the goal for the median blackout.
const target = 50 * time.Millisecond

func main() {
	var (
		wnvd, wnvctl, stateDir, prefix, guest string
		n, qemuN                              int
		lead, length, pause                   time.Duration
		keep                                  bool
	)
	flag.StringVar(&wnvd, "wnvd", "", "wnvd binary (required)")
	flag.StringVar(&wnvctl, "wnvctl", "", "wnvctl binary, for the VMs' probe responders (required)")
	flag.StringVar(&stateDir, "state-dir", "/run/wnv/bench-migration", "the bench lab's pid files, logs and sockets")
	flag.StringVar(&prefix, "prefix", "wnvmig-", "namespace prefix of the bench lab (distinct from a running default lab)")
	flag.IntVar(&n, "n", 10, "number of migrations of the stand-in VM blue2")
	flag.StringVar(&guest, "qemu", "blue3", "VM to run as a QEMU guest and migrate with QEMU (empty: none)")
	flag.IntVar(&qemuN, "qemu-n", 5, "number of migrations of the QEMU guest")
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
	if guest != "" {
		if err := qemu.Available(); err != nil {
			fmt.Printf("QEMU guest: skipped: %v\n", err)
			guest = ""
		} else if topo, err = topo.WithQEMU(guest); err != nil {
			fail(fmt.Errorf("--qemu: %w", err))
		}
	}
	if guest == "blue2" {
		fail(errors.New("--qemu blue2: blue2 is the stand-in VM the target applies to; pick another VM"))
	}
	l := &lab.Lab{Topology: topo, StateDir: stateDir, Wnvd: wnvd, Wnvctl: wnvctl}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, l, n, guest, qemuN, lead, length, pause)
	l.Close()
	if !keep {
		if derr := l.Down(); derr != nil && err == nil {
			err = derr
		}
	}
	if err != nil {
		fail(err)
	}
}

func run(ctx context.Context, l *lab.Lab, n int, guest string, qemuN int, lead, length, pause time.Duration) error {
	kind := "no QEMU guest"
	if guest != "" {
		kind = guest + " a QEMU guest"
	}
	fmt.Printf("bringing up the lab (%s*, state in %s): policy server with embedded etcd, 3 hosts with agents, 5 VMs (%s)\n", l.Topology.Prefix, l.StateDir, kind)
	if err := l.Up(ctx); err != nil && !errors.Is(err, lab.ErrAlreadyUp) {
		return err
	}
	fmt.Printf("\n%d live migrations of the stand-in VM blue2 between host2 and host3, each under a 1 kHz UDP probe stream from blue1 (%v before the call, %v in all)\n\n", n, lead, length)
	stand, problems, err := series(ctx, l, "blue2", n, lead, length, pause)
	if err != nil {
		return err
	}
	if guest != "" {
		fmt.Printf("\n%d migrations of the QEMU guest %s with QEMU's migration (-incoming, migrate; live with KVM, paused for the RAM copy under TCG), each under a 1 kHz UDP probe stream\n\n", qemuN, guest)
		_, p, err := series(ctx, l, guest, qemuN, lead, length, pause)
		if err != nil {
			return err
		}
		problems = append(problems, p...)
	}
	if len(stand) > 0 {
		verdict := "met"
		if percentile(stand, 50) > float64(target/time.Millisecond) {
			verdict = "MISSED"
		}
		fmt.Printf("\ntarget median blackout <= %v for the stand-in VM: %s (%.1f ms; Andromeda, NSDI'18: 65 ms median, 388 ms p99)\n", target, verdict, percentile(stand, 50))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Println("FAIL:", p)
		}
		return fmt.Errorf("%d migrations failed their expectations", len(problems))
	}
	return nil
}

// series migrates vm n times as lab.MigrationPlan says, prints each
// migration and the series' median and p99, and returns the blackouts in ms
// and the failed expectations.
func series(ctx context.Context, l *lab.Lab, vm string, n int, lead, length, pause time.Duration) ([]float64, []string, error) {
	const row = "%3v  %-6s %-6s %12v %11v %6v %6v %14v  %-16s %s\n"
	fmt.Printf(row, "#", "FROM", "TO", "PORT UP (ms)", "PAUSED (ms)", "SENT", "LOST", "BLACKOUT (ms)", "ANSWERED BEFORE", "ANSWERED AFTER")
	var blackouts, losses []float64
	var problems []string
	for i := range n {
		m, err := l.Topology.MigrationPlan(vm)
		if err != nil {
			return nil, nil, err
		}
		m.Lead, m.Length = lead, length
		r, err := l.MigrateUnderStream(ctx, m)
		if err != nil {
			return nil, nil, fmt.Errorf("migration %d of %s: %w", i+1, vm, err)
		}
		paused := "-"
		if r.Guest != nil {
			paused = fmt.Sprintf("%.1f", ms(r.Resumed-r.Paused))
		}
		fmt.Printf(row, i+1, r.From, r.To, fmt.Sprintf("%.1f", ms(r.Took)), paused, r.Sent, r.Lost, fmt.Sprintf("%.1f", ms(r.Blackout)), r.AnsweredBefore, r.AnsweredAfter)
		blackouts = append(blackouts, ms(r.Blackout))
		losses = append(losses, float64(r.Lost))
		v, _ := l.Topology.VM(vm)
		for _, p := range r.Problems(lab.MaxBlackout(v)) {
			problems = append(problems, fmt.Sprintf("migration %d of %s: %s", i+1, vm, p))
		}
		time.Sleep(pause)
	}
	if n > 0 {
		fmt.Printf("%s blackout: median %.1f ms, p99 %.1f ms, max %.1f ms\n", vm, percentile(blackouts, 50), percentile(blackouts, 99), slices.Max(blackouts))
		fmt.Printf("%s probes lost: median %.0f, p99 %.0f\n", vm, percentile(losses, 50), percentile(losses, 99))
	}
	return blackouts, problems, nil
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
