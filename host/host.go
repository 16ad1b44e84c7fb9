// Package host is the runtime of `wnvd host`: it owns one host's policy store,
// switch, VM ports and underlay sockets, runs the forwarding workers, keeps
// the provider addresses configured on their underlay interfaces (with
// their VLANs), and implements the provider API backend.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/fastpath"
	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
	"golang.org/x/sys/unix"
)

// Config is what `wnvd host` is started with.
type Config struct {
	Name string
	// Underlays are the interfaces the PAs live on (ParseUnderlays), the
	// first the default: a PA or provider route with InterfaceIndex 0 is
	// on it.
	Underlays []string
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
	// AllowUnauthenticatedRedirects accepts redirects without a MAC while
	// no redirect key is installed (--redirects-unauthenticated=accept);
	// otherwise they are dropped as redirect-unauthenticated.
	AllowUnauthenticatedRedirects bool
	// LearnedPerPort and LearnedAge bound learning in L2Only subnets
	// (vswitch.Limits; zero: the defaults).
	LearnedPerPort int
	LearnedAge     time.Duration
	Log            *slog.Logger
}

// DefaultPinDir is where a host pins its fast path unless told otherwise:
// per host name and network namespace, so hosts of a lab on one machine
// keep theirs apart, and a restarted wnvd finds its own.
func DefaultPinDir(name string) string {
	var ino uint64
	if st, err := os.Stat("/proc/thread-self/ns/net"); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
	}
	return fmt.Sprintf("/sys/fs/bpf/wnv/%s-%d", name, ino)
}

// privateSys reports whether dir is under /sys while this process has a
// mount namespace of its own, as under `ip netns exec`, which mounts a fresh
// /sys: a bpf filesystem there goes when the process does.
func privateSys(dir string) bool {
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	pid1, err2 := os.Readlink("/proc/1/ns/mnt")
	return err1 == nil && err2 == nil && self != pid1 && strings.HasPrefix(filepath.Clean(dir)+"/", "/sys/")
}

// Host is one running host. Create it with New, then Run it.
type Host struct {
	cfg   Config
	store *policy.Store
	sw    *vswitch.Switch
	hub   *notify.Hub
	log   *slog.Logger

	underlays underlays
	gso       *dataplane.TunnelGSO // nil: super-frames are segmented here
	k         *kernel
	mon       *monitor.Hub

	mu    sync.Mutex // serialises port attach/detach
	ports map[string]*port
	socks atomic.Pointer[[]*dataplane.Port] // by port index, for the workers
	// readers are the attached ports, for settlePorts (which may run with
	// mu held).
	readers atomic.Pointer[[]*port]

	pas      paSet
	reconcil chan struct{}
	routes   routeSet
	// restored says Restore loaded a checkpoint.
	restored bool
	held     atomic.Pointer[holder]     // set by HoldMisses
	ckpt     atomic.Pointer[Checkpoint] // set by KeepCheckpoint
	// ckptDiscarded counts checkpoints Restore could not use.
	ckptDiscarded atomic.Uint64
	mig           migrations
	// redirectSeq numbers the redirects this host sends; it starts from the
	// clock so a restarted host's numbers stay above those it sent before.
	redirectSeq atomic.Uint64
	// learns carries the CAs the switch learned to the learner.
	learns chan vswitch.Learned
	ctx    context.Context
	wg     sync.WaitGroup
}

// New prepares a host on the underlay interface; nothing runs until Run.
func New(cfg Config, hub *notify.Hub) (*Host, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	us, err := openUnderlays(cfg.Underlays)
	if err != nil {
		return nil, err
	}
	if cfg.PinDir == "" {
		cfg.PinDir = DefaultPinDir(cfg.Name)
	}
	k, err := openKernel(cfg, us.indexes())
	if err != nil {
		return nil, fmt.Errorf("kernel fast path: %w", err)
	}
	if privateSys(cfg.PinDir) {
		cfg.Log.Warn("the fast path is pinned under a /sys private to this process (ip netns exec mounts one): forwarding stops when wnvd does; "+
			"give --pin-dir a bpf filesystem mounted outside /sys in the host's mount namespace for fail static", "pin-dir", cfg.PinDir)
	}
	h := &Host{
		k:         k,
		cfg:       cfg,
		store:     policy.NewStore(),
		hub:       hub,
		log:       cfg.Log,
		underlays: us,
		ports:     map[string]*port{},
		reconcil:  make(chan struct{}, 1),
		routes:    routeSet{kick: make(chan struct{}, 1)},
		learns:    make(chan vswitch.Learned, learnQueue),
	}
	if cfg.GSOTAP != "" {
		// Only PAs on the default underlay send through it (sendSegmented).
		if h.gso, err = dataplane.OpenTunnelGSO(cfg.GSOTAP, us[0].name); err != nil {
			h.log.Warn("TCP super-frames will be segmented in userspace", "err", err)
		}
	}
	h.mon = monitor.NewHub(h.monitorChanged, h.kernelMonitorCounts)
	h.pas.init()
	h.pas.changed = func(pas []netip.Addr) {
		h.kickRoutes(false) // a route's source or next hop may depend on them
		if h.stopping() {
			return // fail static: the kernel goes on decapsulating for them
		}
		if err := h.k.setLocalPAs(pas); err != nil {
			h.log.Error("fast path: local PAs", "err", err)
		}
	}
	h.socks.Store(&[]*dataplane.Port{})
	h.sw = vswitch.New(vswitch.Config{UnderlayMTU: us.mtu(), Events: hub, Limits: vswitch.Limits{LearnedPerPort: cfg.LearnedPerPort, LearnedAge: cfg.LearnedAge}})
	h.sw.SetUnauthenticatedRedirects(cfg.AllowUnauthenticatedRedirects)
	h.redirectSeq.Store(uint64(time.Now().UnixNano()))
	h.sw.SetPolicy(h.store.Table())
	h.store.Subscribe(func(t *policy.Table) {
		h.sw.SetPolicy(t)
		h.syncKernel()
		if !h.stopping() {
			if err := h.k.setRewritePAs(t); err != nil {
				h.log.Error("fast path: rewrite PAs", "err", err)
			}
		}
		h.settlePorts()
		h.kick()
		h.kickRoutes(false)
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

// stopping reports whether Run is ending, which leaves PAs and the kernel's
// state as they are.
func (h *Host) stopping() bool { return h.ctx != nil && h.ctx.Err() != nil }

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

// Run forwards traffic and keeps PAs configured until ctx ends. Then it
// stops reading ports and PAs but leaves the kernel forwarding what was
// decided, with every port program, PA and decision in place (fail static):
// a restarted wnvd adopts them, and Cleanup removes them.
func (h *Host) Run(ctx context.Context) error {
	h.ctx = ctx
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.reconcilePAs(ctx)
	}()
	h.awaitAdoptedPAs(ctx)
	// Routes follow the adopted PAs, so those an earlier wnvd installed
	// with them as source stay as they are.
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.reconcileRoutes(ctx)
	}()
	// Keep what the kernel forwards unless a checkpoint restored the policy
	// that supersedes it.
	if err := h.k.goLive(h.sw, h.k.dp.Adopted() && !h.restored); err != nil {
		h.log.Error("fast path: start taking frames", "err", err)
	}
	if h.restored {
		h.forgetStaleKernelPorts()
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.k.heartbeat(ctx)
	}()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.readKernelDrops(ctx)
	}()
	for _, u := range h.underlays {
		rw, err := dataplane.OpenRewriteTap(u.name, fastpath.SlowMark)
		if err != nil {
			h.log.Error("IP Rewrite packets cannot reach the slow path", "underlay", u.name, "err", err)
			continue
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.rewriteWorker(rw)
		}()
		context.AfterFunc(ctx, func() { rw.Close() })
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.learner(ctx)
	}()
	if links, err := dataplane.WatchLinks(ctx); err != nil {
		h.log.Warn("ports will not follow interfaces created again", "err", err)
	} else {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-links:
					h.relinkPorts()
					h.kickRoutes(true)
				}
			}
		}()
	}
	<-ctx.Done()
	h.mu.Lock()
	for _, p := range h.ports {
		if err := p.sock.Close(); err != nil {
			h.log.Warn("closing port", "port", p.spec.Name, "err", err)
		}
		<-p.done
	}
	h.mu.Unlock()
	h.wg.Wait()
	h.mig.closeRaw()
	h.Close()
	return nil
}

// awaitAdoptedPAs waits, briefly, until the PAs adopted from an earlier wnvd
// have their sockets, so the slow path can take the kernel's frames as soon
// as it goes live.
func (h *Host) awaitAdoptedPAs(ctx context.Context) {
	var want []netip.Addr
	for _, pa := range h.store.ProviderAddresses(policy.ProviderAddressFilter{}) {
		if h.k.adopted[pa.ProviderAddress] {
			want = append(want, pa.ProviderAddress)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		socks := *h.pas.socks.Load()
		missing := false
		for _, a := range want {
			if socks[a] == nil {
				missing = true
			}
		}
		if !missing {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forgetStaleKernelPorts detaches the port programs an earlier wnvd left on
// interfaces that are no port of the restored state.
func (h *Host) forgetStaleKernelPorts() {
	kports, err := h.k.dp.Ports()
	if err != nil {
		h.log.Warn("fast path: reconcile ports", "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ours := map[int]bool{}
	for _, p := range h.ports {
		ours[p.sock.Ifindex()] = true
	}
	for ifindex := range kports {
		if !ours[ifindex] {
			if err := h.k.dp.DetachPort(ifindex); err != nil {
				h.log.Warn("fast path: detach a port left by an earlier wnvd", "ifindex", ifindex, "err", err)
				continue
			}
			h.log.Info("fast path: detached a port left by an earlier wnvd that the checkpoint does not have", "ifindex", ifindex)
		}
	}
}

// Close releases what New opened (the GSO TAP, the kernel fast path's file
// descriptors), for a host that is not going to Run; Run does it when it
// ends. The kernel's state stays: Cleanup removes it.
func (h *Host) Close() {
	if h.k != nil {
		if err := h.k.close(); err != nil {
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

// Cleanup removes what wnvd host left on the machine after it stopped (a
// SIGTERM or a kill -9 leaves forwarding in place): the kernel fast path
// pinned under cfg.PinDir (default DefaultPinDir(cfg.Name)) with its port
// and underlay programs, the provider addresses it decapsulated for and the
// kernel routes it installed for provider routes, from the underlays cfg
// names (none: they stay), and the GSO TAP
// cfg.GSOTAP a kill -9 leaves. It must not run while a wnvd uses the same
// pins. It returns what it removed, for people.
func Cleanup(cfg Config) ([]string, error) {
	if cfg.PinDir == "" {
		cfg.PinDir = DefaultPinDir(cfg.Name)
	}
	var removed []string
	var errs []error
	if cfg.GSOTAP != "" {
		ok, err := dataplane.RemoveTAP(cfg.GSOTAP)
		if err != nil {
			errs = append(errs, err)
		} else if ok {
			removed = append(removed, "GSO TAP "+cfg.GSOTAP)
		}
	}
	for _, u := range cfg.Underlays {
		rs, err := cleanupRoutes(u)
		removed = append(removed, rs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(cfg.PinDir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return removed, errors.Join(errs...)
		}
		return removed, errors.Join(append(errs, fmt.Errorf("fast path pins %s: %w", cfg.PinDir, err))...)
	}
	dp, err := fastpath.Open(fastpath.Config{PinDir: cfg.PinDir})
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	pas, err := dp.LocalPAs()
	dp.Close()
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for _, u := range cfg.Underlays {
		if len(pas) == 0 {
			break
		}
		if _, err := dataplane.LinkIndex(u); err != nil {
			continue // gone, with its addresses
		}
		have, err := dataplane.Addresses(u)
		if err != nil {
			errs = append(errs, err)
		}
		for _, p := range have {
			if slices.Contains(pas, p.Addr()) {
				// The kernel removes a subnet's secondary addresses with its
				// primary one: one already gone is removed.
				if err := dataplane.RemoveAddress(u, p); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
					errs = append(errs, err)
					continue
				}
				removed = append(removed, fmt.Sprintf("provider address %s on %s", p, u))
			}
		}
	}
	if err := fastpath.Cleanup(cfg.PinDir); err != nil {
		errs = append(errs, err)
	} else {
		removed = append(removed, "fast path pinned at "+cfg.PinDir)
	}
	return removed, errors.Join(errs...)
}

// Store is the host's policy (provider.Backend).
func (h *Host) Store() *policy.Store { return h.store }

// Switch is the host's switching pipeline.
func (h *Host) Switch() *vswitch.Switch { return h.sw }

// UnderlayMTU is the MTU tunnel packets are sized for: the smallest of the
// underlay interfaces'.
func (h *Host) UnderlayMTU() int { return h.underlays.mtu() }

// NextHop answers Select-NextHop from the current policy.
func (h *Host) NextHop(q provider.NextHopQuery) (provider.NextHop, error) {
	r, err := vswitch.NextHop(h.store.Table(), q.SourceVirtualSubnetID, q.SourceCustomerAddress, q.DestinationCustomerAddress)
	if err != nil {
		return provider.NextHop{}, &policy.Error{Kind: policy.ErrNotFound, Msg: err.Error()}
	}
	return provider.NextHop{NextHopAddress: r.NextHopAddress, SourceMACAddress: r.SourceMACAddress, NextHopMACAddress: r.NextHopMACAddress,
		ProviderAddress: r.ProviderAddress, VirtualSubnetID: r.VirtualSubnetID}, nil
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
			Decapsulated: v.Decapsulated, Local: v.Local, Replies: v.Replies, Flooded: v.Flooded, TxFrames: v.Decapsulated + v.Local + v.Replies, RxFrames: v.Encapsulated + v.Local, Drops: v.Drops})
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
	c.Checkpoint = h.checkpointCounters()
	rc := h.routeCounters()
	c.ProviderRoutes = &rc
	if err := h.k.counters(&c, h.portNames()); err != nil {
		h.log.Warn("fast path counters", "err", err)
	}
	if us, err := h.k.underlayCounters(h.underlays); err != nil {
		h.log.Warn("underlay counters", "err", err)
	} else {
		c.Underlays = us
	}
	return c
}
