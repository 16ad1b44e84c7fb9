package dataplane

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
)

// TAPConfig describes a VM port.
type TAPConfig struct {
	Name   string     // name in the caller's namespace; empty lets the kernel pick tapN
	Netns  string     // named namespace (/var/run/netns/<Netns>) to move the port into; empty keeps it here
	IfName string     // name to give the port where it ends up; empty keeps Name
	MAC    packet.MAC // zero keeps the kernel's random MAC
	MTU    int        // 0 keeps the kernel default
	// Offload turns on IFF_VNET_HDR with checksum and TSO offload: every
	// frame read or written carries a virtio-net header in front (see
	// WriteOffload), and the VM may hand over 64 KiB TCP super-frames.
	Offload bool
}

// TAP is a VM port: frames written to it are received by the interface, and
// frames the interface transmits are read from it. ReadBatch and WriteBatch
// are safe for concurrent use.
type TAP struct {
	f       *os.File
	rc      syscall.RawConn
	name    string
	netns   string
	batches sync.Pool // *tapBatch
	dropped atomic.Uint64
	closed  atomic.Bool

	reattached bool
	offload    bool
}

// tapCall is the progress of one TAP call through RawConn, whose callback
// may run several times before the call is done.
type tapCall struct {
	t    *TAP
	i, n int // next buffer, buffers done
	err  error
}

// result is the call's outcome once RawConn returned rcErr.
func (c *tapCall) result(op string, rcErr error) (int, error) {
	if rcErr == nil {
		rcErr = c.err
	}
	if rcErr != nil {
		return c.n, fmt.Errorf("%s TAP %s: %w", op, c.t.name, closedErr(&c.t.closed, rcErr))
	}
	return c.n, nil
}

// wrote accounts for the write of buffer i that failed with err (nil if it
// went through): frames the kernel refuses are dropped and counted. stop
// says the write callback must return ret now.
func (c *tapCall) wrote(err error) (ret, stop bool) {
	switch err {
	case nil:
		c.n++
		c.i++
	case unix.EINTR:
	case unix.EAGAIN:
		return false, true
	case unix.EBADF, unix.EBADFD:
		c.err = err
		return true, true
	default:
		c.t.dropped.Add(1)
		c.i++
	}
	return false, false
}

// tapBatch carries one ReadBatch or WriteBatch call.
type tapBatch struct {
	tapCall
	bufs    [][]byte
	sizes   []int
	readFn  func(uintptr) bool // bound once so batches do not allocate closures
	writeFn func(uintptr) bool
}

func (t *TAP) batch(bufs [][]byte, sizes []int) *tapBatch {
	b := t.batches.Get().(*tapBatch)
	b.bufs, b.sizes, b.i, b.n, b.err = bufs, sizes, 0, 0, nil
	return b
}

// release returns b to the pool without pinning the caller's buffers.
func (t *TAP) release(b *tapBatch) {
	b.bufs, b.sizes = nil, nil
	t.batches.Put(b)
}

// Stats counts what the I/O edge dropped on its own.
type Stats struct {
	Dropped   uint64 // writes the kernel refused (interface down, no buffers, no route, too big)
	Truncated uint64 // received GRE packets larger than the caller's buffer (a TAP read cuts a frame short instead)
}

// tapFlags are the TUNSETIFF flags of every VM port: a multi-queue TAP
// without packet information, so that another host (the destination of a
// live migration) or a restarted wnvd can attach a queue of its own.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE

// OpenTAP opens a queue of a VM port. If the interface does not exist yet it
// creates a persistent multi-queue TAP in the caller's namespace, moves it
// into cfg.Netns, renames it to cfg.IfName, sets cfg.MAC and cfg.MTU and
// brings it up. If it already exists where it would end up (after a crash of
// wnvd, or on the destination host of a migration), it attaches a queue to it
// and leaves its state alone: its MAC must equal cfg.MAC (when set), and
// Reattached reports true. The interface outlives the queue unless Close
// deletes it.
func OpenTAP(cfg TAPConfig) (*TAP, error) {
	for _, n := range []struct{ field, v string }{{"Name", cfg.Name}, {"IfName", cfg.IfName}} {
		if len(n.v) >= unix.IFNAMSIZ {
			return nil, fmt.Errorf("TAP %s %q is %d bytes long: use at most %d", n.field, n.v, len(n.v), unix.IFNAMSIZ-1)
		}
	}
	if cfg.MTU != 0 && (cfg.MTU < 68 || cfg.MTU > 65535) {
		return nil, fmt.Errorf("TAP MTU %d is out of range: use 68..65535, or 0 for the default", cfg.MTU)
	}
	final := cfg.Name
	if cfg.IfName != "" {
		final = cfg.IfName
	}
	if final != "" {
		mac, found, err := existingLink(cfg.Netns, final)
		if err != nil {
			return nil, err
		}
		if found {
			return reopenTAP(cfg, final, mac)
		}
	}
	fd, name, err := tunSetIff(cfg.Name, cfg.Offload)
	if err != nil {
		return nil, fmt.Errorf("create TAP %q: %w", cfg.Name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make TAP %s persistent: %w", name, err)
	}
	t, err := newTAP(fd, name, cfg.Netns)
	if err != nil {
		return nil, err
	}
	t.offload = cfg.Offload
	if err := configureTAP(name, cfg); err != nil {
		t.Close()
		return nil, err
	}
	if final != "" {
		t.name = final
	}
	return t, nil
}

// reopenTAP attaches a queue to the existing interface name in cfg.Netns.
// The kernel binds a TAP file to the namespace it was opened in, so the open
// and TUNSETIFF happen on an OS thread switched into cfg.Netns; the queue
// then works from any namespace.
func reopenTAP(cfg TAPConfig, name string, mac packet.MAC) (*TAP, error) {
	if !cfg.MAC.IsZero() && mac != cfg.MAC {
		return nil, fmt.Errorf("interface %s in netns %q already exists with MAC %s: the port's MAC is %s; remove the interface or use its MAC", name, cfg.Netns, mac, cfg.MAC)
	}
	var fd int
	err := inNetns(cfg.Netns, func() error {
		var err error
		fd, _, err = tunSetIff(name, cfg.Offload)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach a queue to the existing TAP %s in netns %q (it must be a multi-queue TAP): %w", name, cfg.Netns, err)
	}
	t, err := newTAP(fd, name, cfg.Netns)
	if err != nil {
		return nil, err
	}
	t.reattached = true
	t.offload = cfg.Offload
	return t, nil
}

// tunSetIff opens /dev/net/tun and attaches it to the TAP name (creating it
// if there is none, letting the kernel pick tapN for an empty name).
func tunSetIff(name string, offload bool) (int, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("TAP name %q: %w", name, err)
	}
	flags := uint16(tapFlags)
	if offload {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", err
	}
	if offload {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads); err != nil {
			unix.Close(fd)
			return -1, "", fmt.Errorf("TUNSETOFFLOAD: %w", err)
		}
	}
	return fd, ifr.Name(), nil
}

func newTAP(fd int, name, ns string) (*TAP, error) {
	// A non-blocking fd makes os.NewFile register it with the runtime poller.
	t := &TAP{f: os.NewFile(uintptr(fd), "tap:"+name), name: name, netns: ns}
	t.batches.New = func() any {
		b := &tapBatch{tapCall: tapCall{t: t}}
		b.readFn, b.writeFn = b.readReady, b.writeReady
		return b
	}
	var err error
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.f.Close()
		return nil, err
	}
	return t, nil
}

// existingLink reports whether interface name exists in the named namespace
// (the caller's when ns is empty), and its MAC.
func existingLink(ns, name string) (packet.MAC, bool, error) {
	var mac packet.MAC
	h := &netlink.Handle{}
	if ns != "" {
		nsh, err := netns.GetFromName(ns)
		if err != nil {
			return mac, false, fmt.Errorf("TAP Netns %q: %w", ns, err)
		}
		defer nsh.Close()
		if h, err = netlink.NewHandleAt(nsh); err != nil {
			return mac, false, fmt.Errorf("TAP Netns %q: %w", ns, err)
		}
		defer h.Close()
	}
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return mac, false, nil
		}
		return mac, false, fmt.Errorf("look for interface %s in netns %q: %w", name, ns, err)
	}
	copy(mac[:], l.Attrs().HardwareAddr)
	return mac, true, nil
}

// inNetns runs fn on a locked OS thread switched into the named namespace
// (in place when ns is empty). If the thread cannot be switched back it stays
// locked, so the runtime retires it instead of reusing it elsewhere.
func inNetns(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("TAP Netns %q: %w", ns, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %q: %w", ns, err)
	}
	err = fn()
	if netns.Set(orig) == nil {
		runtime.UnlockOSThread()
	}
	return err
}

// configureTAP moves, renames, addresses and raises the interface in one
// RTM_SETLINK: the kernel applies the namespace move first, so the new name
// cannot clash with anything left behind here.
func configureTAP(name string, cfg TAPConfig) error {
	idx, err := LinkIndex(name)
	if err != nil {
		return err
	}
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	if cfg.Netns != "" {
		ns, err := netns.GetFromName(cfg.Netns)
		if err != nil {
			return fmt.Errorf("TAP Netns %q: %w", cfg.Netns, err)
		}
		defer ns.Close()
		req.AddData(nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(ns))))
	}
	if cfg.IfName != "" {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(cfg.IfName)))
	}
	if !cfg.MAC.IsZero() {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, cfg.MAC[:]))
	}
	if cfg.MTU != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(cfg.MTU))))
	}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("configure TAP %s (netns %q, name %q, MAC %s, MTU %d): %w", name, cfg.Netns, cfg.IfName, cfg.MAC, cfg.MTU, err)
	}
	return nil
}

// Name is the interface's name where it lives now (IfName if one was given).
func (t *TAP) Name() string { return t.name }

// Netns is the named namespace the interface lives in; empty for the caller's.
func (t *TAP) Netns() string { return t.netns }

// Stats returns the port's drop counters.
func (t *TAP) Stats() Stats { return Stats{Dropped: t.dropped.Load()} }

// ReadBatch blocks until at least one frame is ready, then reads frames
// without blocking until none is ready or bufs is full. Frame i is
// bufs[i][:sizes[i]] (sizes must be as long as bufs); a buffer shorter than the frame gets the frame cut
// short, so size buffers for the MTU plus the Ethernet header. It returns
// the frames read, and any error after them.
func (t *TAP) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	b := t.batch(bufs, sizes[:len(bufs)])
	defer t.release(b)
	return b.result("read", t.rc.Read(b.readFn))
}

func (b *tapBatch) readReady(fd uintptr) bool {
	for b.n < len(b.bufs) {
		n, err := rawRead(fd, b.bufs[b.n])
		switch err {
		case nil:
			b.sizes[b.n] = n
			b.n++
		case unix.EINTR:
		case unix.EAGAIN:
			return b.n > 0
		default:
			b.err = err
			return true
		}
	}
	return true
}

// WriteBatch hands each frame to the interface as if received on it. Frames
// the kernel refuses (EIO while the interface is down, ENOBUFS, a malformed
// frame) are counted in Stats().Dropped and skipped. It returns the frames
// written; the error is nil unless the TAP itself failed.
func (t *TAP) WriteBatch(bufs [][]byte) (int, error) {
	b := t.batch(bufs, nil)
	defer t.release(b)
	return b.result("write", t.rc.Write(b.writeFn))
}

func (b *tapBatch) writeReady(fd uintptr) bool {
	for b.i < len(b.bufs) {
		_, err := rawWrite(fd, b.bufs[b.i])
		if ret, stop := b.wrote(err); stop {
			return ret
		}
	}
	return true
}

// Reattached reports whether OpenTAP attached to an interface that already
// existed instead of creating it.
func (t *TAP) Reattached() bool { return t.reattached }

// Close deletes the interface wherever it lives (once no other queue, e.g.
// another host's, holds it) and closes this queue, waking a ReadBatch
// blocked on it.
func (t *TAP) Close() error {
	t.closed.Store(true)
	var err error
	if cerr := t.rc.Control(func(fd uintptr) {
		err = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, 0)
	}); cerr != nil {
		err = cerr
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close TAP %s: %w", t.name, err)
	}
	return nil
}

// CloseQueue closes only this queue and leaves the interface, with its
// addresses and state, for another queue to attach to (the destination host
// of a migration, or wnvd after a restart). It wakes a ReadBatch blocked on
// it.
func (t *TAP) CloseQueue() error {
	t.closed.Store(true)
	return t.f.Close()
}

// closedErr turns RawConn's internal "file closing" error into os.ErrClosed,
// which callers can test for.
func closedErr(closed *atomic.Bool, err error) error {
	if closed.Load() {
		return os.ErrClosed
	}
	return err
}
