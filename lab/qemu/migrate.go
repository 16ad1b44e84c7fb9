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
	// its setup, and how long the guest was paused for the final copy.
	Total, Setup, Downtime time.Duration
	// Transferred is the RAM sent, in bytes.
	Transferred uint64
}

// Migration tuning. The stream is a local unix socket, so bandwidth is not
// worth limiting (QEMU's default, 128 MiB/s, would make a 128 MiB guest take
// a second); the downtime limit lets the final copy of a mostly idle guest
// happen early instead of after extra rounds.
const (
	migrateBandwidth    = 4 << 30 // bytes per second
	migrateDowntimeMsec = 100
)

// Migrate live-migrates the guest from v to dst, which must have been
// started with Incoming (same image, memory and MAC), and waits until dst
// runs it. Afterwards v is stopped. On failure v keeps running the guest (as
// QEMU resumes a source whose migration failed) and dst is left to the caller.
func (v *VM) Migrate(ctx context.Context, dst *VM) (Stats, error) {
	if !dst.cfg.Incoming || dst.migrated {
		return Stats{}, fmt.Errorf("migrate %s to %s: the destination was not started as Incoming, or has received a guest already", v.cfg.Name, dst.cfg.Name)
	}
	if v == dst {
		return Stats{}, fmt.Errorf("migrate %s: source and destination are the same VM", v.cfg.Name)
	}
	fail := func(err error) (Stats, error) {
		return Stats{}, fmt.Errorf("migrate %s to %s: %w", v.cfg.Name, dst.cfg.Name, err)
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
	start := time.Now()
	if _, err := v.qmp.do(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		return fail(err)
	}
	var info struct {
		Status    string `json:"status"`
		ErrorDesc string `json:"error-desc"`
		Total     int64  `json:"total-time"`
		Setup     int64  `json:"setup-time"`
		Downtime  int64  `json:"downtime"`
		RAM       struct {
			Transferred uint64 `json:"transferred"`
		} `json:"ram"`
	}
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		ret, err := v.qmp.do(ctx, "query-migrate", nil)
		if err != nil {
			v.qmp.do(context.Background(), "migrate_cancel", nil)
			return fail(err)
		}
		if err := json.Unmarshal(ret, &info); err != nil {
			return fail(fmt.Errorf("query-migrate answered %s: %w", ret, err))
		}
		if info.Status == "completed" {
			break
		}
		if info.Status == "failed" || info.Status == "cancelled" {
			return fail(fmt.Errorf("QEMU reports the migration %s: %s", info.Status, info.ErrorDesc))
		}
		select {
		case <-ctx.Done():
			v.qmp.do(context.Background(), "migrate_cancel", nil)
			return fail(fmt.Errorf("%w while %s", ctx.Err(), info.Status))
		case <-dst.exited:
			return fail(fmt.Errorf("destination %w", dst.exitError()))
		case <-time.After(delay):
		}
	}
	dst.migrated = true
	if err := dst.waitRunning(ctx); err != nil {
		return fail(err)
	}
	st := Stats{
		Elapsed:     time.Since(start),
		Total:       time.Duration(info.Total) * time.Millisecond,
		Setup:       time.Duration(info.Setup) * time.Millisecond,
		Downtime:    time.Duration(info.Downtime) * time.Millisecond,
		Transferred: info.RAM.Transferred,
	}
	if err := v.Stop(); err != nil {
		return st, err
	}
	return st, nil
}

// waitRunning waits until QEMU reports the guest running (an incoming VM once
// its migration has arrived).
func (v *VM) waitRunning(ctx context.Context) error {
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ret, err := v.qmp.do(ctx, "query-status", nil)
		if err != nil {
			return fmt.Errorf("VM %s: %w%s", v.cfg.Name, err, errSuffix(v.whyNot()))
		}
		var st struct {
			Running bool   `json:"running"`
			Status  string `json:"status"`
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return fmt.Errorf("VM %s: query-status answered %s: %w", v.cfg.Name, ret, err)
		}
		if st.Running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VM %s is not running (QEMU status %s): %w", v.cfg.Name, st.Status, ctx.Err())
		case <-v.exited:
			return fmt.Errorf("VM %s: %w", v.cfg.Name, v.exitError())
		case <-time.After(delay):
		}
	}
}
