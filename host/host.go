// Package host is the runtime of `wnvd host`: it owns one host's policy store,
// switch, VM ports and underlay sockets, runs the forwarding workers, keeps
// the provider addresses configured on the underlay interface, and
// implements the provider API backend.
package host

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// Config is what `wnvd host` is started with.
type Config struct {
	Name     string
	Underlay string // the underlay interface the PAs live on
	// GSOTAP names the TAP through which TCP super-frames go to the kernel
	// as one tunnel GSO packet (see dataplane.TunnelGSO); empty cuts them
	// into segments in userspace and sends those on the PA's sockets.
	GSOTAP string
	// PinDir is where the kernel fast path's programs and maps are pinned
	// (on a bpf filesystem); they outlive wnvd.
	PinDir string
	// SlowPathOnly switches every frame in wnvd (--fast-path=off): the
	// kernel programs then only hand frames to it.
	SlowPathOnly bool
	Log          *slog.Logger
}

// DefaultPinDir is where a host pins its fast path unless told otherwise:
// per host name and network namespace, so hosts of a lab on one machine
// keep theirs apart, and a restarted wnvd finds its own.
func DefaultPinDir(name string) string {
	var ino uint64
	if st, err := os.Stat("/proc/self/ns/net"); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
	}
	return fmt.Sprintf("/sys/fs/bpf/wnv/%s-%d", name, ino)
}

// Host is one running host. Create it with New, then Run it.
type Host struct {
	cfg   Config
	store *policy.Store
	sw    *vswitch.Switch
	hub   *notify.Hub
	log   *slog.Logger

	underlayIndex int
	underlayMTU   int
	gso           *dataplane.TunnelGSO // nil: super-frames are segmented here
	k             *kernel

	mu    sync.Mutex // serialises port attach/detach
	ports map[string]*port
	socks atomic.Pointer[[]*dataplane.Port] // by port index, for the workers

	pas      paSet
	reconcil chan struct{}
	held     atomic.Pointer[holder]     // set by HoldMisses
	ckpt     atomic.Pointer[Checkpoint] // set by KeepCheckpoint
	mig      migrations
	ctx      context.Context
	wg       sync.WaitGroup
}

// New prepares a host on the underlay interface; nothing runs until Run.
func New(cfg Config, hub *notify.Hub) (*Host, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	idx, err := dataplane.LinkIndex(cfg.Underlay)
	if err != nil {
		return nil, fmt.Errorf("underlay %w", err)
	}
	mtu, err := dataplane.LinkMTU(cfg.Underlay)
	if err != nil {
		return nil, fmt.Errorf("underlay %w", err)
	}
	if cfg.PinDir == "" {
		cfg.PinDir = DefaultPinDir(cfg.Name)
	}
	k, err := openKernel(cfg, idx)
	if err != nil {
		return nil, fmt.Errorf("kernel fast path: %w", err)
	}
	h := &Host{
		k:             k,
		cfg:           cfg,
		store:         policy.NewStore(),
		hub:           hub,
		log:           cfg.Log,
		underlayIndex: idx,
		underlayMTU:   mtu,
		ports:         map[string]*port{},
		reconcil:      make(chan struct{}, 1),
	}
	if cfg.GSOTAP != "" {
		if h.gso, err = dataplane.OpenTunnelGSO(cfg.GSOTAP, cfg.Underlay); err != nil {
			h.log.Warn("TCP super-frames will be segmented in userspace", "err", err)
		}
	}
	h.pas.init()
	h.pas.changed = func(pas []netip.Addr) {
		if err := h.k.setLocalPAs(pas); err != nil {
			h.log.Error("fast path: local PAs", "err", err)
		}
	}
	h.socks.Store(&[]*dataplane.Port{})
	h.sw = vswitch.New(vswitch.Config{UnderlayMTU: mtu, Events: hub})
	h.sw.SetPolicy(h.store.Table())
	h.store.Subscribe(func(t *policy.Table) {
		h.sw.SetPolicy(t)
		h.syncKernel()
		h.kick()
		if hub != nil {
			// A CA seen behind a new PA (Set, a fetched record, a redirect).
			for _, m := range t.Moves() {
				r := m.Record
				hub.CustomerAddressChange(r.MACAddress, r.CustomerAddress, uint32(r.VirtualSubnetID), r.ProviderAddress, uint32(notify.CustomerAddressMoved))
			}
		}
	})
	return h, nil
}

// syncKernel makes the switch's generation the kernel's, after every change
// of policy or ports: from then on no decision made before is executed.
func (h *Host) syncKernel() {
	if err := h.k.sync(h.sw); err != nil {
		h.log.Error("fast path: generation", "err", err)
	}
}

func (h *Host) kick() {
	select {
	case h.reconcil <- struct{}{}:
	default:
	}
}

// Run forwards traffic and keeps PAs configured until ctx ends, then removes
// every TAP, socket and address the host created.
func (h *Host) Run(ctx context.Context) error {
	h.ctx = ctx
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.k.heartbeat(ctx)
	}()
	go func() {
		defer h.wg.Done()
		h.reconcilePAs(ctx)
	}()
	<-ctx.Done()
	h.mu.Lock()
	for name := range h.ports {
		h.detachLocked(name)
	}
	h.mu.Unlock()
	h.wg.Wait()
	h.mig.closeRaw()
	h.Close()
	return nil
}

// Close removes what New created (the GSO TAP, the kernel fast path), for a
// host that is not going to Run; Run does it when it ends.
func (h *Host) Close() {
	if h.k != nil {
		if err := h.k.close(true, h.cfg.PinDir); err != nil {
			h.log.Warn("closing the kernel fast path", "err", err)
		}
		h.k = nil
	}
	if h.gso != nil {
		if err := h.gso.Close(); err != nil {
			h.log.Warn("closing the GSO TAP", "err", err)
		}
		h.gso = nil
	}
}

// Store is the host's policy (provider.Backend).
func (h *Host) Store() *policy.Store { return h.store }

// Switch is the host's switching pipeline.
func (h *Host) Switch() *vswitch.Switch { return h.sw }

// UnderlayMTU is the MTU of the underlay interface.
func (h *Host) UnderlayMTU() int { return h.underlayMTU }

// NextHop answers Select-NextHop from the current policy.
func (h *Host) NextHop(q provider.NextHopQuery) (provider.NextHop, error) {
	r, err := vswitch.NextHop(h.store.Table(), q.SourceVirtualSubnetID, q.SourceCustomerAddress, q.DestinationCustomerAddress)
	if err != nil {
		return provider.NextHop{}, &policy.Error{Kind: policy.ErrNotFound, Msg: err.Error()}
	}
	return provider.NextHop(r), nil
}

// namedPorts gives the counters of the attached ports their names; counters
// of a port index no longer attached are left out.
func (h *Host) namedPorts(ports []vswitch.PortSnapshot) []provider.NamedPortCounters {
	names := h.portNames()
	var out []provider.NamedPortCounters
	for _, p := range ports {
		if name, ok := names[p.Index]; ok {
			out = append(out, provider.NamedPortCounters{Name: name, PortCounters: provider.PortCounters{
				RxFrames: p.RxFrames, RxBytes: p.RxBytes, TxFrames: p.TxFrames, TxBytes: p.TxBytes, Drops: p.Drops}})
		}
	}
	return out
}

// portNames names the attached ports by index.
func (h *Host) portNames() map[int]string {
	names := map[int]string{}
	for _, p := range h.sw.Ports().Ports() {
		names[p.Index] = p.Name
	}
	return names
}

// Counters snapshots the counters of both paths with port names.
func (h *Host) Counters() provider.Counters {
	ports, vsids, reasons := h.sw.Counters.Snapshot()
	var c provider.Counters
	c.Ports = h.namedPorts(ports)
	for _, v := range vsids {
		c.VSIDs = append(c.VSIDs, provider.VSIDCounters{VirtualSubnetID: v.VSID, Encapsulated: v.Encapsulated,
			Decapsulated: v.Decapsulated, Flooded: v.Flooded, TxFrames: v.Decapsulated + v.Local + v.Replies, RxFrames: v.Encapsulated + v.Local, Drops: v.Drops})
	}
	for _, r := range vswitch.Reasons() {
		if n := reasons[r]; n > 0 {
			c.Drops = append(c.Drops, provider.DropCount{Reason: r.String(), Count: n})
		}
	}
	sort.Slice(c.Ports, func(i, j int) bool { return c.Ports[i].Name < c.Ports[j].Name })
	if h.hub != nil {
		st := h.hub.Stats()
		for t := notify.NotificationType(0); t < notify.NotificationTypeMax; t++ {
			ts := st.Types[t]
			c.Notifications = append(c.Notifications, provider.NotificationCounters{Type: t.String(), Raised: ts.Raised,
				RateLimited: ts.RateLimited, Merged: ts.Merged, Delivered: ts.Delivered, Dropped: ts.Dropped})
		}
		c.NotificationHandles = st.OpenHandles
	}
	c.Migration = h.mig.counters()
	if h.gso != nil {
		st := provider.GSOCounters(h.gso.Stats())
		c.GSO = &st
	}
	if err := h.k.counters(&c, h.portNames()); err != nil {
		h.log.Warn("fast path counters", "err", err)
	}
	return c
}
