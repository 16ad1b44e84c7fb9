package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Stats describes one live migration.
type Stats struct {
	// Elapsed is the wall-clock time from the migrate command until the
	// destination runs the guest.
	Elapsed time.Duration
	// Total, Setup and Downtime are QEMU's own figures: the whole migration,
	// its setup, and how long the guest was paused for the final copy (the
	// switchover included).
	Total, Setup, Downtime time.Duration
	// Switchover is how long the switchover took (the source TAP taken down
	// and the switchover function run), the guest paused.
	Switchover time.Duration
	// Paused is when the guest paused: for the switchover (QEMU's report),
	// or under TCG for the whole copy; Resumed is when the destination was
	// seen running it.
	Paused, Resumed time.Time
	// Transferred is the RAM sent, in bytes.
	Transferred uint64
	// Live says the RAM was copied while the guest ran (KVM); under TCG
	// the guest is paused for the whole copy.
	Live bool
}

// Migration tuning. The stream is a local unix socket, so bandwidth is not
// worth limiting (QEMU's default, 128 MiB/s, would make a 128 MiB guest take
// a second); the downtime limit asks for a short pause (QEMU's default is
// 300 ms).
const (
	migrateBandwidth    = 4 << 30 // bytes per second
	migrateDowntimeMsec = 20
)

// Migrate live-migrates the guest from v to dst, which must have been
// started with Incoming (same image, memory and MAC) and not have received a
// guest yet, and waits until dst runs it. Afterwards v is stopped. On failure
// v keeps running the guest (as QEMU resumes a source whose migration failed)
// and dst is left to the caller.
//
// switchover, if not nil, runs while the guest is paused on v after its last
// RAM pass and before its device state goes to dst: the moment to move the
// guest's network to the destination host. If it fails, the migration is
// cancelled and the guest resumes on v.
//
// Under KVM the migration is live: RAM is copied while the guest runs, and
// the guest pauses only for the last pass. Under TCG the guest pauses for the
// whole copy: QEMU 7.2's TCG precopy loses guest writes (with both host CPUs
// busy, the destination guest panicked on a corrupted kernel stack in 3 of 9
// live migrations, and in none of 20 paused for the copy).
//
// While the guest is paused, v's TAP is taken down for good: frames that
// still reach the source host are dropped there, not queued for a guest that
// has left.
func (v *VM) Migrate(ctx context.Context, dst *VM, switchover func(context.Context) error) (Stats, error) {
	fail := func(err error) (Stats, error) {
		return Stats{}, fmt.Errorf("migrate %s to %s: %w", v.cfg.Name, dst.cfg.Name, err)
	}
	if v == dst {
		return Stats{}, fmt.Errorf("migrate %s: source and destination are the same VM", v.cfg.Name)
	}
	if st, err := dst.status(ctx); err != nil {
		return fail(err)
	} else if !dst.cfg.Incoming || st != "inmigrate" {
		return fail(fmt.Errorf("the destination is not waiting for a migration (QEMU status %s): start it with Incoming", st))
	}
	uri := "unix:" + dst.path(migrateSock)
	// migrate-incoming returns once the destination listens.
	if _, err := dst.qmp.do(ctx, "migrate-incoming", map[string]any{"uri": uri}); err != nil {
		return fail(err)
	}
	if _, err := v.qmp.do(ctx, "migrate-set-parameters", map[string]any{
		"max-bandwidth": migrateBandwidth, "downtime-limit": migrateDowntimeMsec,
	}); err != nil {
		return fail(err)
	}
	// MIGRATION events tell each state change at once: polling would add
	// its interval to the guest's pause, and polling briskly slows an
	// emulated guest's migration down.
	caps := []map[string]any{
		{"capability": "events", "state": true},
		{"capability": "pause-before-switchover", "state": true},
	}
	if _, err := v.qmp.do(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}); err != nil {
		return fail(err)
	}
	live := kvm()
	tapDown := false
	// The guest resumes on v: so must its TAP.
	cancel := func() {
		v.qmp.do(context.Background(), "migrate_cancel", nil)
		if tapDown {
			setLink(v.cfg.Netns, v.cfg.TAP, true)
		}
		if !live {
			v.qmp.do(context.Background(), "cont", nil)
		}
	}
	st := Stats{Live: live}
	start := time.Now()
	if !live {
		if _, err := v.qmp.do(ctx, "stop", nil); err != nil {
			return fail(err)
		}
		st.Paused = time.Now()
	}
	if _, err := v.qmp.do(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		if !live {
			v.qmp.do(context.Background(), "cont", nil)
		}
		return fail(err)
	}
	for done := false; !done; {
		data, err := v.qmp.waitEvent(ctx, "MIGRATION")
		if err != nil {
			cancel()
			return fail(err)
		}
		var ev struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return fail(fmt.Errorf("MIGRATION event %s: %w", data, err))
		}
		switch ev.Status {
		case "completed":
			done = true
		case "failed", "cancelled":
			info, _ := v.queryMigrate(ctx)
			cancel()
			return fail(fmt.Errorf("QEMU reports the migration %s: %s", ev.Status, info.ErrorDesc))
		case "pre-switchover":
			switchStart := time.Now()
			if live {
				st.Paused = switchStart
			}
			if err := setLink(v.cfg.Netns, v.cfg.TAP, false); err != nil {
				cancel()
				return fail(err)
			}
			tapDown = true
			if switchover != nil {
				if err := switchover(ctx); err != nil {
					cancel()
					return fail(fmt.Errorf("switchover: %w", err))
				}
			}
			st.Switchover = time.Since(switchStart)
			if _, err := v.qmp.do(ctx, "migrate-continue", map[string]any{"state": "pre-switchover"}); err != nil {
				cancel()
				return fail(err)
			}
		}
	}
	if !live {
		// A guest that left paused arrives paused.
		if err := dst.waitStatus(ctx, "paused"); err != nil {
			return fail(err)
		}
		if _, err := dst.qmp.do(ctx, "cont", nil); err != nil {
			return fail(err)
		}
	}
	if err := dst.waitStatus(ctx, "running"); err != nil {
		return fail(err)
	}
	st.Resumed = time.Now()
	st.Elapsed = st.Resumed.Sub(start)
	// Asked only now: QEMU reports completed a moment before its times.
	info, err := v.queryMigrate(ctx)
	if err != nil {
		return fail(err)
	}
	st.Total = time.Duration(info.Total) * time.Millisecond
	st.Setup = time.Duration(info.Setup) * time.Millisecond
	st.Downtime = time.Duration(info.Downtime) * time.Millisecond
	st.Transferred = info.RAM.Transferred
	if err := v.Stop(); err != nil {
		return st, err
	}
	return st, nil
}

// migrateInfo is what query-migrate answers.
type migrateInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	Total     int64  `json:"total-time"`
	Setup     int64  `json:"setup-time"`
	Downtime  int64  `json:"downtime"`
	RAM       struct {
		Transferred uint64 `json:"transferred"`
	} `json:"ram"`
}

func (v *VM) queryMigrate(ctx context.Context) (migrateInfo, error) {
	var info migrateInfo
	ret, err := v.qmp.do(ctx, "query-migrate", nil)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(ret, &info); err != nil {
		return info, fmt.Errorf("query-migrate answered %s: %w", ret, err)
	}
	return info, nil
}

// status is QEMU's run state: running, paused, inmigrate, postmigrate, ...
func (v *VM) status(ctx context.Context) (string, error) {
	ret, err := v.qmp.do(ctx, "query-status", nil)
	if err != nil {
		return "", fmt.Errorf("VM %s: %w%s", v.cfg.Name, err, errSuffix(v.whyNot()))
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(ret, &st); err != nil {
		return "", fmt.Errorf("VM %s: query-status answered %s: %w", v.cfg.Name, ret, err)
	}
	return st.Status, nil
}

// waitStatus waits until QEMU reports the run state want (an incoming VM's
// once its migration has arrived).
func (v *VM) waitStatus(ctx context.Context, want string) error {
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		st, err := v.status(ctx)
		if err != nil {
			return err
		}
		if st == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VM %s is not %s (QEMU status %s): %w", v.cfg.Name, want, st, ctx.Err())
		case <-v.exited:
			return fmt.Errorf("VM %s: %w", v.cfg.Name, v.exitError())
		case <-time.After(delay):
		}
	}
}
