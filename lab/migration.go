package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/lab/qemu"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/provider"
)

// StreamMigration is a live migration measured under a probe stream: Sender
// (a namespace VM) sends a 1 kHz UDP stream to VM's IPv4 CA, and Lead after
// the first probe the VM migrates to host To; the stream goes on for Length
// in all, and after the migration at least until the VM answers again.
type StreamMigration struct {
	VM, To, Sender string
	Lead, Length   time.Duration
}

// MigrationResult is what a StreamMigration measured.
type MigrationResult struct {
	VM, From, To, Sender string
	Addr                 netip.Addr
	Sent, Lost           int
	// Blackout is the longest time without an answer; BlackoutStart is when
	// it began, relative to the migration call.
	Blackout, BlackoutStart time.Duration
	// Took is from the migration call until the destination host had the port.
	Took time.Duration
	// Paused and Resumed are when a QEMU guest paused for the switchover and
	// ran again on the destination, relative to the migration call.
	Paused, Resumed time.Duration
	// AnsweredBefore and AnsweredAfter are the hosts whose PA was the outer
	// source of the VM's first and last answers seen on the underlay.
	AnsweredBefore, AnsweredAfter string
	Responders                    []string
	// Notifications counts, per host, the notifications raised during the
	// stream, by kind.
	Notifications map[string]map[string]int
	// Reachable reports whether the VM answered a probe after the stream.
	Reachable bool
	// Guest is QEMU's account of a QEMU VM's migration; nil for a namespace
	// VM.
	Guest *qemu.Stats
	// Paths counts, per host, the frames each path carried during the
	// stream; nil for a host without the kernel fast path.
	Paths map[string]*provider.PathCounters
}

// NotificationKinds are the MigrationResult.Notifications keys, in print order.
var NotificationKinds = []string{"policy-mismatch", "redirect", "ca-added", "ca-deleted", "ca-moved", "pa-change"}

func kindOf(ev notify.Event) string {
	switch {
	case ev.PolicyMismatch != nil:
		return "policy-mismatch"
	case ev.Redirect != nil:
		return "redirect"
	case ev.ObjectChange != nil && ev.ObjectChange.CustomerAddress != nil:
		switch ev.ObjectChange.CustomerAddress.NotificationReason {
		case notify.CustomerAddressAdded:
			return "ca-added"
		case notify.CustomerAddressDeleted:
			return "ca-deleted"
		case notify.CustomerAddressMoved:
			return "ca-moved"
		}
	case ev.ObjectChange != nil && ev.ObjectChange.ProviderAddress != nil:
		return "pa-change"
	}
	return "other"
}

// notificationCounter counts the notifications of every host on handles
// opened before the migration.
type notificationCounter struct {
	mu     sync.Mutex
	counts map[string]map[string]int
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (l *Lab) countNotifications(ctx context.Context) (*notificationCounter, error) {
	ctx, cancel := context.WithCancel(ctx)
	nc := &notificationCounter{counts: map[string]map[string]int{}, cancel: cancel}
	for _, h := range l.Topology.Hosts {
		hd, err := notify.Open(l.notifySocket(h.Name))
		if err != nil {
			nc.stop()
			return nil, fmt.Errorf("open the notification API of %s: %w", h.Name, err)
		}
		nc.counts[h.Name] = map[string]int{}
		nc.wg.Go(func() {
			defer hd.Close()
			for ev, err := range hd.Events(ctx) {
				var over *notify.OverflowError
				if err != nil && !errors.As(err, &over) {
					return
				}
				if err == nil {
					nc.mu.Lock()
					nc.counts[h.Name][kindOf(ev)]++
					nc.mu.Unlock()
				}
			}
		})
	}
	return nc, nil
}

func (nc *notificationCounter) stop() map[string]map[string]int {
	nc.cancel()
	nc.wg.Wait()
	return nc.counts
}

// MigrateUnderStream runs m and measures it: probes lost, the blackout, which
// host answered before and after (from the underlay), the notifications
// each host raised, the paths that carried the frames, and whether the VM
// answers afterwards.
func (l *Lab) MigrateUnderStream(ctx context.Context, m StreamMigration) (MigrationResult, error) {
	t := l.Topology
	vm, ok := t.VM(m.VM)
	sender, sok := t.VM(m.Sender)
	if !ok || !sok {
		return MigrationResult{}, fmt.Errorf("VMs %q and %q must both be in the topology", m.VM, m.Sender)
	}
	if sender.QEMU {
		return MigrationResult{}, fmt.Errorf("the stream's sender %s is a QEMU guest: send from a namespace VM, whose 1 kHz schedule an emulated CPU cannot disturb", sender.Name)
	}
	if m.Lead <= 0 {
		m.Lead = 500 * time.Millisecond
	}
	if m.Length <= m.Lead {
		m.Length = m.Lead + 1500*time.Millisecond
	}
	cur, err := l.Server().VM(ctx, vm.Name)
	if err != nil {
		return MigrationResult{}, fmt.Errorf("policy server: VM %s: %w", vm.Name, err)
	}
	res := MigrationResult{VM: vm.Name, From: cur.Host, To: m.To, Sender: sender.Name, Addr: vm.V4}
	nc, err := l.countNotifications(ctx)
	if err != nil {
		return res, err
	}
	capt, err := StartCapture(t.Namespace("underlay"), "br0")
	if err != nil {
		nc.stop()
		return res, err
	}
	pathsBefore := l.paths(ctx)
	type streamed struct {
		r   probe.StreamResult
		err error
	}
	done := make(chan streamed, 1)
	stop := make(chan struct{})
	start := time.Now()
	go func() {
		var s streamed
		s.err = InNamespace(t.Namespace(sender.Name), func() error {
			var err error
			// Stop ends it; the duration only bounds a migration that hangs.
			s.r, err = probe.Stream(ctx, netip.AddrPortFrom(vm.V4, probe.Port), probe.StreamOptions{Duration: m.Length + 5*time.Minute, Stop: stop})
			return err
		})
		done <- s
	}()
	time.Sleep(m.Lead)
	called := time.Now()
	guest, merr := l.migrate(ctx, vm.Name, m.To)
	res.Took = time.Since(called)
	if res.Guest = guest; guest != nil {
		res.Paused, res.Resumed = guest.Paused.Sub(called), guest.Resumed.Sub(called)
	}
	if merr == nil {
		// However long the VM takes to answer again, the stream sees it.
		l.waitAnswer(ctx, sender.Name, vm)
		time.Sleep(time.Until(start.Add(m.Length)))
	}
	close(stop)
	s := <-done
	frames, _ := capt.Stop()
	res.Notifications = nc.stop()
	if merr != nil {
		return res, merr
	}
	if s.err != nil {
		return res, fmt.Errorf("probe stream from %s: %w", sender.Name, s.err)
	}
	res.Paths = pathDelta(pathsBefore, l.paths(ctx))
	res.Sent, res.Lost = len(s.r.Echoes), s.r.Lost()
	gap := s.r.Blackout()
	res.Blackout, res.BlackoutStart = gap.Len(), gap.From.Sub(called)
	res.Responders = s.r.Responders()
	res.AnsweredBefore, res.AnsweredAfter = t.answeringHosts(frames, vm, sender)
	rep, ok, err := l.ProbeUDP(ctx, sender.Name, vm.V4, netip.Addr{}, 3, 500*time.Millisecond)
	if err != nil {
		return res, err
	}
	res.Reachable = ok && rep.Responder == vm.Name
	return res, nil
}

// waitAnswer waits, at most answerWait, until vm answers a probe from
// sender.
func (l *Lab) waitAnswer(ctx context.Context, sender string, vm VM) {
	ctx, cancel := context.WithTimeout(ctx, answerWait)
	defer cancel()
	for ctx.Err() == nil {
		if rep, ok, _ := l.ProbeUDP(ctx, sender, vm.V4, netip.Addr{}, 1, 200*time.Millisecond); ok && rep.Responder == vm.Name {
			return
		}
	}
}

// answerWait bounds how long a stream waits for a migrated VM's answers: a
// QEMU guest's migration stretches with the machine's load.
const answerWait = 2 * time.Minute

// paths reads every host's path counters; a host without the kernel fast
// path has a nil entry, one that does not answer none.
func (l *Lab) paths(ctx context.Context) map[string]*provider.PathCounters {
	ps := map[string]*provider.PathCounters{}
	for _, h := range l.Topology.Hosts {
		if c, err := l.Client(h.Name).Counters(ctx); err == nil {
			ps[h.Name] = c.Paths
		}
	}
	return ps
}

// pathDelta is what each path carried between two readings.
func pathDelta(before, after map[string]*provider.PathCounters) map[string]*provider.PathCounters {
	d := map[string]*provider.PathCounters{}
	for h, a := range after {
		b, ok := before[h]
		if !ok {
			continue
		}
		if a == nil || b == nil {
			d[h] = nil
			continue
		}
		d[h] = &provider.PathCounters{
			KernelFromPorts:    a.KernelFromPorts - b.KernelFromPorts,
			KernelFromUnderlay: a.KernelFromUnderlay - b.KernelFromUnderlay,
			SlowFromPorts:      a.SlowFromPorts - b.SlowFromPorts,
			SlowFromUnderlay:   a.SlowFromUnderlay - b.SlowFromUnderlay,
		}
	}
	return d
}

// answeringHosts names the hosts whose PA sent the first and the last of
// vm's frames to sender seen on the underlay.
func (t Topology) answeringHosts(frames []Frame, vm, sender VM) (first, last string) {
	for _, f := range frames {
		if !slices.Contains(vm.CAs(), f.InnerSrc) || !slices.Contains(sender.CAs(), f.InnerDst) {
			continue
		}
		name := f.OuterSrc.String()
		for _, h := range t.Hosts {
			if h.PA.Addr() == f.OuterSrc {
				name = h.Name
			}
		}
		if first == "" {
			first = name
		}
		last = name
	}
	return first, last
}

// Problems lists the expectations r fails: the VM must answer after the
// migration, from its new host, and alone; with a maxBlackout above zero,
// with a blackout under it (the demo and the bench hold one; tests, which
// run on machines of any load, do not).
func (r MigrationResult) Problems(maxBlackout time.Duration) []string {
	var bad []string
	if !r.Reachable {
		bad = append(bad, fmt.Sprintf("%s does not answer %s at %v after the migration", r.VM, r.Sender, r.Addr))
	}
	if r.AnsweredAfter != r.To {
		bad = append(bad, fmt.Sprintf("the last answers of %s came from %s, want %s", r.VM, orNone(r.AnsweredAfter), r.To))
	}
	if maxBlackout > 0 && r.Blackout > maxBlackout {
		bad = append(bad, fmt.Sprintf("blackout %v exceeds %v", r.Blackout.Round(time.Millisecond), maxBlackout))
	}
	if len(r.Responders) != 1 || r.Responders[0] != r.VM {
		bad = append(bad, fmt.Sprintf("the stream was answered by %v, want %s alone", r.Responders, r.VM))
	}
	return bad
}

// PrintMigration writes a MigrationResult for people.
func PrintMigration(w io.Writer, r MigrationResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	if g := r.Guest; g != nil {
		kind := "live migration (RAM copied while the guest runs)"
		if !g.Live {
			kind = "migration (under TCG the guest is paused for the RAM copy: see docs/migration.md)"
		}
		fmt.Fprintf(w, "QEMU %s of %s from %s to %s (-incoming on %s, migrate on %s): %d MiB of RAM, %s in all (QEMU's count)\n",
			kind, r.VM, r.From, r.To, r.To, r.From, g.Transferred>>20, ms(g.Total))
		fmt.Fprintf(w, "guest paused %s after the migration call for %s (QEMU's downtime %s), %s of it to move the VM at the policy server; running on %s %s after the call\n",
			ms(r.Paused), ms(r.Resumed-r.Paused), ms(g.Downtime), ms(g.Switchover), r.To, ms(r.Resumed))
	}
	fmt.Fprintf(w, "migrated %s from %s to %s: the destination had the port %s after the call\n", r.VM, r.From, r.To, ms(r.Took))
	fmt.Fprintf(w, "probe stream %s -> %s (%v) at 1 kHz: %d sent, %d lost (%.2f%%)\n", r.Sender, r.VM, r.Addr, r.Sent, r.Lost, 100*float64(r.Lost)/float64(max(r.Sent, 1)))
	fmt.Fprintf(w, "blackout: %s (longest gap between answers, starting %s after the migration call)\n", ms(r.Blackout), ms(r.BlackoutStart))
	fmt.Fprintf(w, "answered by %s from %s before and from %s after the migration (outer source PA on the underlay)\n",
		strings.Join(r.Responders, ","), orNone(r.AnsweredBefore), orNone(r.AnsweredAfter))
	reach := "yes"
	if !r.Reachable {
		reach = "NO"
	}
	fmt.Fprintf(w, "%s reachable afterwards: %s\n\n", r.VM, reach)
	fmt.Fprintln(w, "frames each path carried during the stream, per host:")
	PrintPaths(w, r.Paths)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "notifications raised during the stream, per host:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\t"+strings.ToUpper(strings.Join(NotificationKinds, "\t")))
	hosts := make([]string, 0, len(r.Notifications))
	for h := range r.Notifications {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		row := []string{h}
		for _, k := range NotificationKinds {
			row = append(row, fmt.Sprint(r.Notifications[h][k]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}
