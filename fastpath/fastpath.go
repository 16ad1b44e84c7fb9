package fastpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// SlowMark is the skb->mark of a frame a port program hands to the slow
// path. wnvd reads each port with an AF_PACKET socket whose filter accepts
// only frames with this mark: the re-injected copy, not the original.
const SlowMark uint32 = 0x574e5653 // "WNVS"

// Limits of the maps.
const (
	MaxPorts = 4096 // port indexes (Port.Index < MaxPorts)
	MaxVSIDs = 4096 // VSIDs with counters (EnsureVSID)
)

// Config configures Open.
type Config struct {
	// PinDir is where maps and links are pinned, on a bpf filesystem,
	// e.g. /sys/fs/bpf/wnv/<hostname>. Open creates it.
	PinDir string
	// Underlays are the underlay interfaces, the first the default: Open
	// attaches the underlay programs (decapsulation in, and 802.1Q tags of
	// the PAs both ways) to each.
	Underlays []int
	// FastPath off sends every port frame to the slow path and lets the
	// underlay program pass everything: the pure Go switch.
	FastPath bool
}

// Datapath is the loaded fast path. Its methods are safe for concurrent
// use.
type Datapath struct {
	pinDir  string
	objs    datapathObjects
	adopted bool
	mu      sync.Mutex // serializes read-modify-writes of config and of the port tables
}

// config.flags and port.flags, as in datapath.h.
const (
	cfgFastPathOff = 1
	portL2Only     = 1
	portPeer       = 2
)

const bpffsRoot = "/sys/fs/bpf"

// Open loads the programs and their maps, adopting maps pinned in
// cfg.PinDir by an earlier wnvd (decisions, ports and counters survive),
// and writes the configuration. Pinned maps whose layout this version does
// not share are replaced: programs still attached keep forwarding with the
// old ones until AttachPort and AttachUnderlay replace them.
func Open(cfg Config) (*Datapath, error) {
	if !filepath.IsAbs(cfg.PinDir) {
		return nil, fmt.Errorf("fast path: pin directory %q is not an absolute path", cfg.PinDir)
	}
	if err := ensureBPFFS(cfg.PinDir); err != nil {
		return nil, err
	}
	spec, err := loadDatapath()
	if err != nil {
		return nil, fmt.Errorf("fast path: %w", err)
	}
	_, statErr := os.Stat(filepath.Join(cfg.PinDir, datapathMapWnvConfig))
	d := &Datapath{pinDir: cfg.PinDir, adopted: statErr == nil}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: cfg.PinDir}}
	err = spec.LoadAndAssign(&d.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// Pinned by a wnvd with other map layouts: start afresh.
		removeMapPins(cfg.PinDir)
		d.adopted = false
		err = spec.LoadAndAssign(&d.objs, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("fast path: load the programs: %w", err)
	}
	c, err := d.config()
	if err == nil {
		if !d.adopted {
			// Generation 0 is never current, so a zero decision is a miss.
			c = datapathConfig{Gen: 1}
		}
		c.Flags = 0
		if !cfg.FastPath {
			c.Flags = cfgFastPathOff
		}
		c.UnderlayIfindex = 0
		if len(cfg.Underlays) > 0 {
			c.UnderlayIfindex = uint32(cfg.Underlays[0])
		}
		err = d.setConfig(c)
	}
	for _, ifindex := range cfg.Underlays {
		if err == nil {
			err = d.AttachUnderlay(ifindex)
		}
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// ensureBPFFS mounts the bpf filesystem at /sys/fs/bpf if nothing is
// mounted there, and creates dir, which must be on a bpf filesystem.
func ensureBPFFS(dir string) error {
	if !isBPFFS(bpffsRoot) {
		if err := os.MkdirAll(bpffsRoot, 0o755); err != nil {
			return fmt.Errorf("fast path: create %s: %w", bpffsRoot, err)
		}
		if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("fast path: mount the bpf filesystem at %s: %w", bpffsRoot, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, linksDir), 0o700); err != nil {
		return fmt.Errorf("fast path: create the pin directory: %w", err)
	}
	if !isBPFFS(dir) {
		return fmt.Errorf("fast path: pin directory %s is not on a bpf filesystem", dir)
	}
	return nil
}

func isBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == unix.BPF_FS_MAGIC
}

// mapNames are the pinned maps' names.
var mapNames = []string{
	datapathMapWnvConfig, datapathMapWnvEgress, datapathMapWnvFwdSrcs, datapathMapWnvIngress, datapathMapWnvLocalPas,
	datapathMapWnvPathStats, datapathMapWnvPortCas, datapathMapWnvPortStats, datapathMapWnvPorts,
	datapathMapWnvReasons, datapathMapWnvRewritePas, datapathMapWnvRewriteIn, datapathMapWnvVmMacs, datapathMapWnvVsidStats, datapathMapWnvPaVlans, datapathMapWnvUnderlayStats,
}

func removeMapPins(dir string) {
	for _, n := range mapNames {
		_ = os.Remove(filepath.Join(dir, n))
	}
}

// Adopted reports whether Open found the maps of an earlier wnvd pinned,
// with their decisions, ports and counters.
func (d *Datapath) Adopted() bool { return d.adopted }

// Close releases the file descriptors. Programs, links and maps stay
// pinned and forwarding goes on.
func (d *Datapath) Close() error { return d.objs.Close() }

// Cleanup detaches the programs pinned under pinDir and removes the pins
// and the directory: the fast path is gone.
func Cleanup(pinDir string) error {
	var errs []error
	entries, err := os.ReadDir(filepath.Join(pinDir, linksDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if err := unpinLink(filepath.Join(pinDir, linksDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	removeMapPins(pinDir)
	_ = os.Remove(filepath.Join(pinDir, linksDir))
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("fast path: remove %s: %w", pinDir, err))
	}
	return errors.Join(errs...)
}

// Links are pinned in linksDir as <kind>-<ifindex>.
const (
	linksDir     = "links"
	kindPort     = "port"
	kindUnderlay = "underlay"
	// kindUnderlayOut is the underlay's egress program (802.1Q tags).
	kindUnderlayOut = "egress"
)

func (d *Datapath) linkPath(kind string, ifindex int) string {
	return filepath.Join(d.pinDir, linksDir, kind+"-"+strconv.Itoa(ifindex))
}

// attach attaches prog at the tcx ingress of ifindex (egress for
// kindUnderlayOut) and pins the link. If a pinned link is there already,
// its program is replaced in place, so no packet passes the interface
// without a program.
func (d *Datapath) attach(prog *ebpf.Program, kind string, ifindex int) error {
	path := d.linkPath(kind, ifindex)
	l, err := link.LoadPinnedLink(path, nil)
	if err == nil {
		err = l.Update(prog)
		if err == nil {
			return l.Close()
		}
		// The interface went away (and its ifindex came back): attach anew.
		_ = l.Unpin()
		_ = l.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(path)
	}
	at := ebpf.AttachTCXIngress
	if kind == kindUnderlayOut {
		at = ebpf.AttachTCXEgress
	}
	l, err = link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: at})
	if err != nil {
		return fmt.Errorf("fast path: attach the %s program to interface %d: %w", kind, ifindex, err)
	}
	if err := l.Pin(path); err != nil {
		_ = l.Close()
		return fmt.Errorf("fast path: pin the %s link of interface %d: %w", kind, ifindex, err)
	}
	return l.Close()
}

// unpinLink detaches the pinned link at path and removes the pin.
func unpinLink(path string) error {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		// Not a link we can load: the pin at least goes.
		return os.Remove(path)
	}
	defer l.Close()
	// Detach now, even if another process holds the link open. It fails
	// for a link whose interface is gone, which is detached already.
	_ = l.Detach()
	return l.Unpin()
}

// AttachUnderlay attaches the underlay programs to an interface carrying
// host PAs, or replaces those already attached by an earlier wnvd, and
// creates its counters (kept if they exist).
func (d *Datapath) AttachUnderlay(ifindex int) error {
	if ifindex <= 0 {
		return fmt.Errorf("fast path: underlay ifindex %d is not positive", ifindex)
	}
	zero := make([]datapathUnderlayStats, ebpf.MustPossibleCPU())
	err := d.objs.WnvUnderlayStats.Update(uint32(ifindex), zero, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("fast path: create the counters of underlay %d: %w", ifindex, err)
	}
	if err := d.attach(d.objs.WnvUnderlay, kindUnderlay, ifindex); err != nil {
		return err
	}
	return d.attach(d.objs.WnvUnderlayOut, kindUnderlayOut, ifindex)
}

// DetachUnderlay detaches the underlay programs from ifindex.
func (d *Datapath) DetachUnderlay(ifindex int) error {
	return errors.Join(unpinLink(d.linkPath(kindUnderlay, ifindex)), unpinLink(d.linkPath(kindUnderlayOut, ifindex)))
}

// Attachment is an interface with a program of this fast path attached.
type Attachment struct {
	Ifindex  int
	Underlay bool // the underlay program; else the port program
}

// Attached lists the interfaces with a pinned program, as an earlier wnvd
// left them: wnvd reconciles them with its ports on start.
func (d *Datapath) Attached() ([]Attachment, error) {
	entries, err := os.ReadDir(filepath.Join(d.pinDir, linksDir))
	if err != nil {
		return nil, fmt.Errorf("fast path: list the attached interfaces: %w", err)
	}
	var as []Attachment
	for _, e := range entries {
		kind, idx, ok := strings.Cut(e.Name(), "-")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || kind != kindPort && kind != kindUnderlay {
			continue
		}
		as = append(as, Attachment{Ifindex: n, Underlay: kind == kindUnderlay})
	}
	return as, nil
}

// config reads the configuration.
func (d *Datapath) config() (datapathConfig, error) {
	var c datapathConfig
	if err := d.objs.WnvConfig.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("fast path: read the configuration: %w", err)
	}
	return c, nil
}

func (d *Datapath) setConfig(c datapathConfig) error {
	if err := d.objs.WnvConfig.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("fast path: write the configuration: %w", err)
	}
	return nil
}

// updateConfig applies f to the configuration in one write.
func (d *Datapath) updateConfig(f func(*datapathConfig)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.config()
	if err != nil {
		return err
	}
	f(&c)
	return d.setConfig(c)
}

// SetFastPath turns the fast path on or off (every frame to the slow path).
func (d *Datapath) SetFastPath(on bool) error {
	return d.updateConfig(func(c *datapathConfig) {
		c.Flags &^= cfgFastPathOff
		if !on {
			c.Flags |= cfgFastPathOff
		}
	})
}

// SetGeneration makes gen the current generation: decisions installed
// with any other are misses from now on.
func (d *Datapath) SetGeneration(gen uint64) error {
	return d.updateConfig(func(c *datapathConfig) { c.Gen = gen })
}

// BumpGeneration invalidates every installed decision and returns the new
// generation, which decisions installed from now on must carry.
func (d *Datapath) BumpGeneration() (uint64, error) {
	var gen uint64
	err := d.updateConfig(func(c *datapathConfig) {
		c.Gen++
		gen = c.Gen
	})
	return gen, err
}

// Generation returns the current generation (0 if it cannot be read).
func (d *Datapath) Generation() uint64 {
	c, _ := d.config()
	return c.Gen
}

// SlowPathAlive tells the programs that the slow path takes frames until
// until; after it, they drop what they would hand it (slow-path-down). wnvd
// calls it periodically. A zero until says the slow path is down now.
func (d *Datapath) SlowPathAlive(until time.Time) error {
	var deadline uint64
	if !until.IsZero() {
		// bpf_ktime_get_ns is CLOCK_MONOTONIC.
		var now unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
			return fmt.Errorf("fast path: read the monotonic clock: %w", err)
		}
		if left := time.Until(until); left > 0 {
			deadline = uint64(now.Nano()) + uint64(left)
		}
	}
	return d.updateConfig(func(c *datapathConfig) { c.SlowDeadlineNs = deadline })
}
