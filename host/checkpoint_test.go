package host

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

// TestCorruptCheckpointStartsEmpty: a checkpoint file that is not a bbolt
// database, or one whose state is not JSON, is moved aside or ignored; the
// host starts empty with one line logged and the counter at 1, and the
// checkpoint works for the next save.
func TestCorruptCheckpointStartsEmpty(t *testing.T) {
	for name, corrupt := range map[string]func(t *testing.T, path string){
		"not a database": func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("not bbolt "), 1000), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"state not JSON": func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(checkpointBucket)
				if err != nil {
					return err
				}
				return b.Put([]byte("state"), []byte(`{"Objects": [truncated`))
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "host.db")
			corrupt(t, path)
			var log strings.Builder
			h := &Host{store: policy.NewStore(), log: slog.New(slog.NewTextHandler(&log, nil)), sw: vswitch.New(vswitch.Config{})}
			c, err := OpenCheckpoint(path)
			if err != nil {
				t.Fatalf("OpenCheckpoint refused a corrupt file: %v", err)
			}
			defer c.Close()
			records, ports, err := h.Restore(c)
			if err != nil || records != 0 || ports != 0 {
				t.Fatalf("Restore: %d records, %d ports, %v; want an empty start without error", records, ports, err)
			}
			if n := h.CheckpointsDiscarded(); n != 1 {
				t.Errorf("checkpoints discarded = %d, want 1", n)
			}
			if lines := strings.Count(log.String(), "\n"); lines != 1 || !strings.Contains(log.String(), "starting without the checkpoint") {
				t.Errorf("log %q, want one line saying the host starts without the checkpoint", log.String())
			}
			if len(h.store.LookupRecords(policy.LookupRecordFilter{})) != 0 || h.restored {
				t.Error("the host did not start empty")
			}
			if err := c.save(checkpointState{}); err != nil {
				t.Fatalf("saving to the checkpoint after the start: %v", err)
			}
			if _, found, err := c.load(); err != nil || !found {
				t.Errorf("loading what was saved: %v, found %v", err, found)
			}
		})
	}
}

// TestCheckpointHeldStillRefused: a file another wnvd holds is no reason to
// start empty.
func TestCheckpointHeldStillRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.db")
	c, err := OpenCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := OpenCheckpoint(path); err == nil || !strings.Contains(err.Error(), "held by another process") {
		t.Errorf("second OpenCheckpoint: %v, want held by another process", err)
	}
	if _, err := os.Stat(path + ".corrupt"); err == nil {
		t.Error("a held checkpoint was moved aside")
	}
}

// TestCheckpointCountersTellWhetherTheFileIsCurrent: the counters say a
// change of policy is not yet in the file until it is saved.
func TestCheckpointCountersTellWhetherTheFileIsCurrent(t *testing.T) {
	h := &Host{store: policy.NewStore(), log: slog.New(slog.DiscardHandler), sw: vswitch.New(vswitch.Config{})}
	if h.checkpointCounters() != nil {
		t.Fatal("counters for a host without a checkpoint")
	}
	c, err := OpenCheckpoint(filepath.Join(t.TempDir(), "host.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A debounce no test waits out: only the first save and ours happen.
	go h.KeepCheckpoint(t.Context(), c, time.Hour)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if cc := h.checkpointCounters(); cc != nil && cc.Saves == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no first save: %+v", h.checkpointCounters())
		}
	}
	if cc := h.checkpointCounters(); !cc.Current {
		t.Fatalf("after the first save: %+v, want current", cc)
	}
	if _, err := h.store.AddProviderAddress(policy.ProviderAddress{ProviderAddress: netip.MustParseAddr("198.18.0.1"), PrefixLength: 15}); err != nil {
		t.Fatal(err)
	}
	if cc := h.checkpointCounters(); cc.Current || cc.Saves != 1 {
		t.Errorf("after a change not yet saved: %+v, want not current", cc)
	}
	h.saveCheckpoint()
	if cc := h.checkpointCounters(); !cc.Current || cc.Saves != 2 {
		t.Errorf("after saving the change: %+v, want current after 2 saves", cc)
	}
}
