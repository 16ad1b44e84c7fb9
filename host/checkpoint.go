package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// checkpointBucket holds one JSON value per key of checkpointState.
var checkpointBucket = []byte("wnv-host-checkpoint")

// checkpointState is a host's desired state: what it restores before it
// talks to anyone after a restart.
type checkpointState struct {
	Objects        policy.Objects         `json:"Objects"`
	VirtualSubnets []policy.VirtualSubnet `json:"VirtualSubnets"`
	Ports          []provider.PortSpec    `json:"Ports"`
	SavedAt        time.Time              `json:"SavedAt"`
}

// Checkpoint is a host's bbolt checkpoint file.
type Checkpoint struct {
	db    *bolt.DB
	kick  chan struct{}
	mu    sync.Mutex // serialises saves
	last  []byte     // what was saved last, to skip saving it again
	saves uint64
	// saved is the policy snapshot the file holds (ports are saved as they
	// change), so whether the file is current needs no comparison.
	saved *policy.Table
	// discarded says why a corrupt file was moved aside at open.
	discarded error
}

// OpenCheckpoint opens (creating it and its directory if needed) the
// checkpoint file at path. Only one wnvd may hold it. A file bbolt cannot
// open (corrupt, truncated, another format) is moved aside to path.corrupt
// and a new one started: a host without its checkpoint starts empty and is
// refilled by its agent, where a host that refused to start stays dark.
func OpenCheckpoint(path string) (*Checkpoint, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	db, err := openBolt(path)
	if err == nil {
		return &Checkpoint{db: db, kick: make(chan struct{}, 1)}, nil
	}
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("checkpoint %s is held by another process: give each wnvd its own --checkpoint", path)
	}
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	aside := path + ".corrupt"
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, fmt.Errorf("checkpoint %s is unreadable (%v) and could not be moved aside: %w", path, err, rerr)
	}
	discarded := fmt.Errorf("checkpoint %s is unreadable (%v): moved to %s", path, err, aside)
	if db, err = openBolt(path); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return &Checkpoint{db: db, kick: make(chan struct{}, 1), discarded: discarded}, nil
}

// openBolt opens path with bbolt, which panics on some corrupt files
// rather than returning an error.
func openBolt(path string) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("%v", p)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
}

// Close closes the file.
func (c *Checkpoint) Close() error { return c.db.Close() }

func (c *Checkpoint) load() (st checkpointState, found bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			st, found, err = checkpointState{}, false, fmt.Errorf("checkpoint %s is unreadable: %v", c.db.Path(), p)
		}
	}()
	err = c.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(checkpointBucket)
		if b == nil {
			return nil
		}
		v := b.Get([]byte("state"))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &st)
	})
	if err != nil {
		return st, false, fmt.Errorf("checkpoint %s is unreadable: %w", c.db.Path(), err)
	}
	if found {
		if err := policy.NewStore().Load(st.Objects); err != nil {
			return st, false, fmt.Errorf("checkpoint %s has policy this host refuses: %w", c.db.Path(), err)
		}
	}
	return st, found, nil
}

func (c *Checkpoint) save(st checkpointState) error {
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return c.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(checkpointBucket)
		if err != nil {
			return err
		}
		return b.Put([]byte("state"), v)
	})
}

// Restore loads the checkpoint into the host: the policy (provider
// addresses, routes, lookup records, virtual subnets, global), then the
// ports, which re-attach to their VMs' interfaces. It contacts no one,
// so a host whose policy server is away forwards on its last policy at once.
// It returns how many records and ports it restored; a port that cannot be
// attached (its VM is gone) is logged and skipped. A checkpoint that cannot
// be read or holds policy the store refuses is logged, counted
// (CheckpointsDiscarded) and ignored: the host starts empty.
func (h *Host) Restore(c *Checkpoint) (records, ports int, err error) {
	if c.discarded != nil {
		h.discardCheckpoint(c.discarded)
		return 0, 0, nil
	}
	st, found, err := c.load()
	if err != nil {
		h.discardCheckpoint(err)
		return 0, 0, nil
	}
	if !found {
		return 0, 0, nil
	}
	// A stopped wnvd left its PAs on the underlays. Those the kernel still
	// decapsulates for are adopted as they are; any other the host
	// configures again after DAD, which fails on an address already there.
	for _, pa := range st.Objects.ProviderAddresses {
		p := netip.PrefixFrom(pa.ProviderAddress, int(pa.PrefixLength))
		u, err := h.underlays.of(pa.InterfaceIndex)
		if h.k.adopted[pa.ProviderAddress] || err != nil {
			continue
		}
		if dataplane.RemoveAddress(u.name, p) == nil {
			h.log.Info("checkpoint: removed a provider address left by a previous wnvd", "pa", p)
		}
	}
	h.restored = true
	if err := h.store.Load(st.Objects); err != nil {
		return 0, 0, fmt.Errorf("checkpoint %s: policy: %w", c.db.Path(), err)
	}
	for _, v := range st.VirtualSubnets {
		if _, err := h.store.AddVirtualSubnet(v); err != nil {
			h.log.Warn("checkpoint: virtual subnet not restored", "vsid", v.VirtualSubnetID, "err", err)
		}
	}
	for _, spec := range st.Ports {
		if _, err := h.AttachPort(spec); err != nil {
			h.log.Warn("checkpoint: port not restored", "name", spec.Name, "err", err)
			continue
		}
		ports++
	}
	h.log.Info("checkpoint restored", "path", c.db.Path(), "savedAt", st.SavedAt, "records", len(st.Objects.LookupRecords), "ports", ports)
	return len(st.Objects.LookupRecords), ports, nil
}

func (h *Host) discardCheckpoint(err error) {
	h.ckptDiscarded.Add(1)
	h.log.Error("starting without the checkpoint", "err", err)
}

// CheckpointsDiscarded is how many unreadable checkpoints the host started
// without.
func (h *Host) CheckpointsDiscarded() uint64 { return h.ckptDiscarded.Load() }

// KeepCheckpoint saves the host's desired state to c after every change of
// policy, at most once per debounce interval, until ctx ends; a change of
// ports is saved at once, before the API call that made it returns, so a
// port acknowledged is a port restored after a crash. It does not save the
// teardown that follows the end of ctx: the checkpoint keeps the last
// running state.
func (h *Host) KeepCheckpoint(ctx context.Context, c *Checkpoint, debounce time.Duration) {
	h.ckpt.Store(c)
	h.store.Subscribe(func(*policy.Table) { c.changed() })
	h.saveCheckpoint()
	for {
		select {
		case <-ctx.Done():
			h.ckpt.Store(nil)
			return
		case <-c.kick:
		}
		select {
		case <-ctx.Done():
			h.ckpt.Store(nil)
			return
		case <-time.After(debounce):
		}
		h.saveCheckpoint()
	}
}

func (c *Checkpoint) changed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// saveCheckpoint saves the desired state now, if there is a checkpoint and
// the state differs from the last one saved.
func (h *Host) saveCheckpoint() {
	c := h.ckpt.Load()
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Read before the state: a change racing this save leaves the file
	// marked not current, and its kick saves it again.
	t := h.store.Table()
	st := h.checkpointState()
	key := st.key()
	if string(key) == string(c.last) {
		c.saved = t
		return
	}
	st.SavedAt = time.Now()
	if err := c.save(st); err != nil {
		h.log.Error("saving checkpoint", "path", c.db.Path(), "err", err)
		return
	}
	c.last, c.saved = key, t
	c.saves++
}

// key identifies the state without the time it was saved.
func (st checkpointState) key() []byte {
	key, _ := json.Marshal(struct {
		O policy.Objects
		V []policy.VirtualSubnet
		P []provider.PortSpec
	}{st.Objects, st.VirtualSubnets, st.Ports})
	return key
}

// checkpointCounters says how often the checkpoint was saved and whether it
// holds the current desired state; nil without a checkpoint.
func (h *Host) checkpointCounters() *provider.CheckpointCounters {
	c := h.ckpt.Load()
	if c == nil {
		return nil
	}
	t := h.store.Table()
	c.mu.Lock()
	defer c.mu.Unlock()
	return &provider.CheckpointCounters{Saves: c.saves, Current: c.saved == t}
}

// checkpointState is the desired state now. Provider addresses are saved
// without their DAD state, which the host measures again.
func (h *Host) checkpointState() checkpointState {
	o := h.store.Objects()
	for i := range o.ProviderAddresses {
		o.ProviderAddresses[i].AddressState = policy.AddressInvalid
	}
	h.mu.Lock()
	ports := make([]provider.PortSpec, 0, len(h.ports))
	for _, p := range h.ports {
		ports = append(ports, p.spec)
	}
	h.mu.Unlock()
	slices.SortFunc(ports, func(a, b provider.PortSpec) int { return strings.Compare(a.Name, b.Name) })
	return checkpointState{Objects: o, VirtualSubnets: h.store.VirtualSubnets(policy.VirtualSubnetFilter{}), Ports: ports}
}
