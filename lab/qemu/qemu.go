// Package qemu runs the lab's real VMs: QEMU guests booted from the tiny
// image lab/guest/build.sh makes (Debian's cloud kernel, busybox and the lab's
// probe responder in an initramfs). A VM's QEMU runs inside a network
// namespace where it creates its own TAP, the port a host's switch attaches
// to, exactly as a hypervisor's TAP on a real host.
//
// The package boots a guest, waits until its network and probe responder are
// up, runs shell commands on its serial console, live-migrates it to a second
// QEMU (which may run in another namespace: the migration stream is a
// filesystem unix socket) and stops it. A Detached QEMU outlives the process
// that started it, and Attach reaches it again from its run directory. Without
// /dev/kvm QEMU emulates the CPU (TCG); the guest is small enough to boot in a
// few seconds anyway.
package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
)

// DefaultImageDir is where `make guest` puts the guest image unless
// WNV_GUEST_DIR says otherwise.
const DefaultImageDir = "/var/cache/wnv/guest"

// Binary is the QEMU system emulator the package runs.
const Binary = "qemu-system-x86_64"

// Kernel and Initramfs are the image's file names in the image directory.
const (
	Kernel    = "vmlinuz"
	Initramfs = "initramfs.cpio.gz"
)

// ReadyLine is what the guest's init prints on the console once eth0 is
// configured and the probe responder listens.
const ReadyLine = "WNV-GUEST-READY"

// failedLine is what init prints when it cannot configure the guest.
const failedLine = "WNV-GUEST-FAILED"

// ImageDir is the guest image directory: $WNV_GUEST_DIR or DefaultImageDir.
func ImageDir() string {
	if d := os.Getenv("WNV_GUEST_DIR"); d != "" {
		return d
	}
	return DefaultImageDir
}

// Available reports whether QEMU and the guest image are there: nil if so,
// else why not, in a sentence fit for a test skip.
func Available() error {
	if _, err := exec.LookPath(Binary); err != nil {
		return fmt.Errorf("%s is not installed (run make deps)", Binary)
	}
	return checkImage(ImageDir())
}

func checkImage(dir string) error {
	for _, f := range []string{Kernel, Initramfs} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("guest image %s is missing (run make guest)", filepath.Join(dir, f))
		}
	}
	return nil
}

// Config describes one guest.
type Config struct {
	// Name is the guest's hostname and the name its probe responder answers with.
	Name string
	// Netns is the network namespace QEMU runs in and creates its TAP in;
	// empty means the caller's.
	Netns string
	// TAP is the name of the TAP QEMU creates and owns; Start sets it up.
	TAP string
	// MAC is the guest NIC's address; zero derives a locally administered one
	// from Name. A migration's source and destination must use the same.
	MAC packet.MAC
	// Addrs, Gateways and MTU configure the guest's eth0 (MTU 0: 1500).
	Addrs    []netip.Prefix
	Gateways []netip.Addr
	MTU      int
	// Dir holds the QEMU sockets, pid file and logs; empty means a new
	// temporary directory. Stop removes what Start put there.
	Dir string
	// Image is the directory with the guest image (default ImageDir()).
	Image string
	// Incoming starts QEMU as a live migration destination: it stays paused
	// until a Migrate to it completes.
	Incoming bool
	// Memory is the guest's RAM in MiB (default 128).
	Memory int
	// Detached lets QEMU outlive the calling process, as the lab's VMs
	// outlive `wnvctl lab up`; otherwise QEMU is killed when the caller
	// exits. Either way Stop ends it, and Attach reaches it from another
	// process.
	Detached bool
}

// VM is one running QEMU.
type VM struct {
	cfg    Config
	dir    string
	ownDir bool
	pid    int
	cmd    *exec.Cmd     // nil for a QEMU found by Attach
	exited chan struct{} // closed when QEMU has exited
	qmp    *qmp
	con    *console
	files  []string // what Start created in dir, removed by Stop

	runMu sync.Mutex // one console command at a time

	// A QEMU found by Attach is signalled and watched through a pidfd, so a
	// pid reused after QEMU exited is never signalled by mistake.
	pidMu   sync.Mutex
	pidfd   int           // -1 when there is none (any more)
	closing chan struct{} // closed by Close: the pidfd watcher stops

	stopOnce sync.Once
	stopErr  error
}

// Name is the guest's name.
func (v *VM) Name() string { return v.cfg.Name }

// Config is the configuration the VM was started with (defaults applied).
func (v *VM) Config() Config { return v.cfg }

// Dir is the VM's run directory.
func (v *VM) Dir() string { return v.dir }

// Pid is QEMU's process id.
func (v *VM) Pid() int { return v.pid }

// MAC is the guest NIC's address.
func (v *VM) MAC() packet.MAC { return v.cfg.MAC }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func (c *Config) check() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("VM name %q is invalid: use up to 63 letters, digits, '-', '_' or '.'", c.Name)
	}
	if c.TAP == "" || len(c.TAP) > 15 || strings.ContainsAny(c.TAP, " /:,=") {
		return fmt.Errorf("TAP name %q of VM %s is invalid: use 1 to 15 characters without spaces, '/', ':', ',' or '='", c.TAP, c.Name)
	}
	if strings.ContainsAny(c.Netns, " /") {
		return fmt.Errorf("network namespace %q of VM %s is invalid", c.Netns, c.Name)
	}
	for _, p := range c.Addrs {
		if !p.IsValid() {
			return fmt.Errorf("VM %s has an invalid address %v", c.Name, p)
		}
	}
	for _, g := range c.Gateways {
		if !g.IsValid() {
			return fmt.Errorf("VM %s has an invalid gateway %v", c.Name, g)
		}
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fmt.Errorf("MTU %d of VM %s is out of range: use 68 to 65535", c.MTU, c.Name)
	}
	if c.Memory == 0 {
		c.Memory = 128
	}
	if c.Memory < 64 {
		return fmt.Errorf("memory %d MiB of VM %s is too small: use at least 64", c.Memory, c.Name)
	}
	if c.MAC.IsZero() {
		h := sha256.Sum256([]byte(c.Name))
		c.MAC = packet.MAC{0x52, 0x54, 0x00, h[0], h[1], h[2]}
	}
	if c.MAC.IsMulticast() {
		return fmt.Errorf("MAC %v of VM %s is a multicast address", c.MAC, c.Name)
	}
	if c.Image == "" {
		c.Image = ImageDir()
	}
	return nil
}

// cmdline is the guest kernel's command line; lab/guest/init reads the wnv.*
// parameters.
func (c *Config) cmdline() string {
	args := []string{
		"console=ttyS0", "quiet", "loglevel=3", "panic=-1",
		// Under TCG spectre mitigations only cost time; the lab guest runs
		// nothing untrusted.
		"mitigations=off",
		"wnv.name=" + c.Name, "wnv.mac=" + c.MAC.String(),
	}
	if len(c.Addrs) > 0 {
		s := make([]string, len(c.Addrs))
		for i, p := range c.Addrs {
			s[i] = p.String()
		}
		args = append(args, "wnv.ip="+strings.Join(s, ","))
	}
	if len(c.Gateways) > 0 {
		s := make([]string, len(c.Gateways))
		for i, g := range c.Gateways {
			s[i] = g.String()
		}
		args = append(args, "wnv.gw="+strings.Join(s, ","))
	}
	if c.MTU != 0 {
		args = append(args, fmt.Sprintf("wnv.mtu=%d", c.MTU))
	}
	return strings.Join(args, " ")
}

// Files in a VM's run directory.
const (
	qmpSock     = "qmp.sock"
	consoleSock = "console.sock"
	migrateSock = "migrate.sock"
	pidFile     = "qemu.pid"
	logFile     = "qemu.log"
	consoleLog  = "console.log"
	configFile  = "config.json"
)

var runFiles = []string{qmpSock, consoleSock, migrateSock, pidFile, logFile, consoleLog, configFile}

// Start starts QEMU for cfg and returns once it runs (the guest is booting;
// see WaitReady) or, for an Incoming VM, waits for a migration.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, fmt.Errorf("start VM %s: %s is not installed (run make deps)", cfg.Name, Binary)
	}
	if err := checkImage(cfg.Image); err != nil {
		return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
	}
	if cfg.Netns != "" {
		if _, err := os.Stat(filepath.Join("/run/netns", cfg.Netns)); err != nil {
			return nil, fmt.Errorf("start VM %s: network namespace %s does not exist", cfg.Name, cfg.Netns)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}

	v := &VM{cfg: cfg, dir: cfg.Dir, exited: make(chan struct{}), pidfd: -1, closing: make(chan struct{})}
	if v.dir == "" {
		d, err := os.MkdirTemp("", "wnv-qemu-"+cfg.Name+"-")
		if err != nil {
			return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
		}
		v.dir, v.ownDir = d, true
	} else if err := os.MkdirAll(v.dir, 0o755); err != nil {
		return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
	}
	// sun_path holds 107 bytes: fail now, not with QEMU's cryptic error.
	if p := filepath.Join(v.dir, migrateSock); len(p) > 107 {
		v.removeFiles()
		return nil, fmt.Errorf("start VM %s: run directory %s is too long for unix sockets: use a shorter Dir", cfg.Name, v.dir)
	}
	for _, f := range runFiles {
		os.Remove(v.path(f)) // leftovers of an earlier run would confuse the waits below
		v.files = append(v.files, v.path(f))
	}
	// Attach reads the configuration back, to talk to the guest and to
	// start a migration's destination like it.
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(v.path(configFile), b, 0o644); err != nil {
		v.removeFiles()
		return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
	}

	args := []string{
		"-name", cfg.Name,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-m", fmt.Sprint(cfg.Memory), "-smp", "1",
		"-kernel", filepath.Join(cfg.Image, Kernel),
		"-initrd", filepath.Join(cfg.Image, Initramfs),
		"-append", cfg.cmdline(),
		"-netdev", fmt.Sprintf("tap,id=n0,ifname=%s,script=no,downscript=no,vhost=off", cfg.TAP),
		"-device", fmt.Sprintf("virtio-net-pci,netdev=n0,mac=%s,guest_announce=off", cfg.MAC),
		"-chardev", fmt.Sprintf("socket,id=con0,path=%s,server=on,wait=off", v.path(consoleSock)),
		"-serial", "chardev:con0",
		"-qmp", fmt.Sprintf("unix:%s,server=on,wait=off", v.path(qmpSock)),
		"-pidfile", v.path(pidFile),
	}
	args = append(args, accelArgs()...)
	if cfg.Incoming {
		args = append(args, "-incoming", "defer") // the URI comes with Migrate
	} else {
		args = append(args, "-S") // paused until the console is attached: no output is lost
	}
	if cfg.Netns != "" {
		// ip netns exec execs QEMU, so the child is QEMU itself.
		args = append([]string{"netns", "exec", cfg.Netns, bin}, args...)
		bin = "ip"
	}
	logf, err := os.OpenFile(v.path(logFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		v.removeFiles()
		return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
	}
	v.cmd = exec.Command(bin, args...)
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	// Its own session, so a terminal's ^C reaches only us; unless Detached,
	// killed with us, so a crashed test or tool leaves no QEMU behind (Stop
	// is the normal way).
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if !cfg.Detached {
		v.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	// The parent-death signal fires when the forking *thread* exits, and Go
	// retires a thread whenever a goroutine exits while locked to it (as
	// namespace helpers do on errors). So QEMU is forked from a goroutine
	// that holds its thread until QEMU exits.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := v.cmd.Start()
		started <- err
		if err == nil {
			v.cmd.Wait()
			close(v.exited)
		}
	}()
	err = <-started
	logf.Close()
	if err != nil {
		v.removeFiles()
		return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
	}
	v.pid = v.cmd.Process.Pid

	if err := v.attach(ctx); err != nil {
		v.Stop()
		return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
	}
	return v, nil
}

// Attach connects to a QEMU that Start started (usually Detached, from
// another process) with run directory dir: its QMP and its console. Stop
// ends it as if this process had started it.
func Attach(ctx context.Context, dir string) (*VM, error) {
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return nil, fmt.Errorf("no QEMU VM in %s: %w", dir, err)
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("QEMU VM in %s: %s is corrupt: %w", dir, configFile, err)
	}
	v := &VM{cfg: cfg, dir: dir, exited: make(chan struct{}), pidfd: -1, closing: make(chan struct{})}
	for _, f := range runFiles {
		v.files = append(v.files, v.path(f))
	}
	pb, err := os.ReadFile(v.path(pidFile))
	pid, perr := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil || perr != nil || pid <= 0 {
		return nil, fmt.Errorf("VM %s: QEMU is not running (no pid in %s)", cfg.Name, v.path(pidFile))
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("VM %s: QEMU (pid %d) is not running", cfg.Name, pid)
	}
	// Its command line names this directory's pid file: the pid is this QEMU.
	if cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !strings.Contains(string(cl), v.path(pidFile)) {
		unix.Close(fd)
		return nil, fmt.Errorf("VM %s: pid %d is not its QEMU any more", cfg.Name, pid)
	}
	v.pid, v.pidfd = pid, fd
	go v.watch(fd)
	if err := v.connect(ctx, true); err != nil {
		v.Close()
		return nil, fmt.Errorf("attach to VM %s: %w", cfg.Name, err)
	}
	return v, nil
}

// watch closes v.exited when the process behind the pidfd exits (a pidfd
// polls readable then), unless Close stops it first.
func (v *VM) watch(fd int) {
	defer func() {
		v.pidMu.Lock()
		unix.Close(fd)
		v.pidfd = -1
		v.pidMu.Unlock()
	}()
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(p, 100)
		if n > 0 {
			close(v.exited)
			return
		}
		if err != nil && err != unix.EINTR {
			return
		}
		select {
		case <-v.closing:
			return
		default:
		}
	}
}

// accelArgs picks KVM when the machine has it and TCG otherwise. Both ends of
// a migration run on this machine, so they always pick the same.
func accelArgs() []string {
	if kvm() {
		return []string{"-accel", "kvm", "-cpu", "host"}
	}
	return []string{"-accel", "tcg", "-cpu", "qemu64"}
}

// kvm reports whether guests run with KVM (else under TCG).
func kvm() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func (v *VM) path(f string) string { return filepath.Join(v.dir, f) }

// attach connects QMP and the console once QEMU has created their sockets,
// brings the TAP up and lets a non-incoming guest run.
func (v *VM) attach(ctx context.Context) error {
	if err := v.connect(ctx, false); err != nil {
		return err
	}
	if err := setLink(v.cfg.Netns, v.cfg.TAP, true); err != nil {
		return err
	}
	if !v.cfg.Incoming {
		if _, err := v.qmp.do(ctx, "cont", nil); err != nil {
			return err
		}
	}
	return nil
}

// connect connects QMP, retrying until QEMU has created its socket, and the
// console; QEMU creates every chardev before the QMP socket accepts. The
// console log is appended to when reattaching.
func (v *VM) connect(ctx context.Context, reattach bool) error {
	q, err := v.waitQMP(ctx)
	if err != nil {
		return err
	}
	v.qmp = q
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", v.path(consoleSock))
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	v.con = newConsole(c, v.path(consoleLog), reattach, v.exited)
	return nil
}

// waitQMP connects to QMP once QEMU has created its socket, retrying until
// it answers, QEMU exits or ctx ends.
func (v *VM) waitQMP(ctx context.Context) (*qmp, error) {
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		if _, err := os.Stat(v.path(qmpSock)); err == nil {
			if q, err := dialQMP(ctx, v.path(qmpSock)); err == nil {
				return q, nil
			}
		}
		select {
		case <-v.exited:
			return nil, v.exitError()
		case <-ctx.Done():
			return nil, fmt.Errorf("QEMU did not open its QMP socket: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}

// exitError describes QEMU's exit with the end of its log.
func (v *VM) exitError() error {
	msg := strings.TrimSpace(tail(v.path(logFile), 5))
	if msg == "" && v.cmd != nil {
		msg = v.cmd.ProcessState.String()
	}
	if msg == "" {
		msg = "its log is empty"
	}
	return fmt.Errorf("QEMU exited: %s", msg)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// setLink brings the TAP QEMU created, inside ns, up or down.
func setLink(ns, name string, up bool) error {
	h := &netlink.Handle{}
	if ns != "" {
		nsh, err := netns.GetFromName(ns)
		if err != nil {
			return fmt.Errorf("open network namespace %s: %w", ns, err)
		}
		defer nsh.Close()
		if h, err = netlink.NewHandleAt(nsh); err != nil {
			return fmt.Errorf("netlink in %s: %w", ns, err)
		}
		defer h.Close()
	}
	l, err := h.LinkByName(name)
	if err == nil && up {
		err = h.LinkSetUp(l)
	} else if err == nil {
		err = h.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set TAP %s up=%v: %w", name, up, err)
	}
	return nil
}

// Console is what the guest printed on its serial console since Start (the
// most recent part if it is long); for diagnostics.
func (v *VM) Console() string { return v.con.String() }

// Log is QEMU's own output (warnings and errors); for diagnostics.
func (v *VM) Log() string { return tail(v.path(logFile), 50) }

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// Stop quits QEMU (QMP quit, then SIGKILL if it lingers) and removes the
// files Start created. It is idempotent.
func (v *VM) Stop() error {
	v.stopOnce.Do(func() { v.stopErr = v.stop() })
	return v.stopErr
}

func (v *VM) stop() error {
	if v.qmp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v.qmp.do(ctx, "quit", nil)
		cancel()
		select {
		case <-v.exited:
		case <-time.After(3 * time.Second):
		}
	}
	var err error
	select {
	case <-v.exited:
	default:
		if kerr := v.kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) && !errors.Is(kerr, unix.ESRCH) {
			err = fmt.Errorf("stop VM %s: kill QEMU (pid %d): %w", v.cfg.Name, v.pid, kerr)
		}
		select {
		case <-v.exited:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("stop VM %s: QEMU (pid %d) did not exit after SIGKILL", v.cfg.Name, v.pid)
		}
	}
	v.closeConns()
	v.removeFiles()
	return err
}

func (v *VM) kill() error {
	if v.cmd != nil {
		return v.cmd.Process.Kill()
	}
	v.pidMu.Lock()
	defer v.pidMu.Unlock()
	if v.pidfd < 0 {
		return os.ErrProcessDone
	}
	return unix.PidfdSendSignal(v.pidfd, unix.SIGKILL, nil, 0)
}

// Close disconnects from QEMU and leaves it running, as a Detached VM goes on
// without the process that started it; Attach reaches it again.
func (v *VM) Close() {
	v.closeConns()
	select {
	case <-v.closing:
	default:
		close(v.closing)
	}
}

func (v *VM) closeConns() {
	if v.qmp != nil {
		v.qmp.Close()
	}
	if v.con != nil {
		v.con.Close()
	}
}

func (v *VM) removeFiles() {
	for _, f := range v.files {
		os.Remove(f)
	}
	if v.ownDir {
		os.RemoveAll(v.dir)
	}
}
