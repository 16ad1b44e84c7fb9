package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/lab/qemu"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/provider"
	"golang.org/x/sys/unix"
)

// DefaultStateDir holds the default lab's pid files, logs, sockets and state.
const DefaultStateDir = "/run/wnv/lab"

// ErrAlreadyUp is returned by Up when the lab is complete and its daemons run.
var ErrAlreadyUp = errors.New("the lab is already up")

// Lab drives one topology on this machine.
type Lab struct {
	Topology Topology
	// StateDir holds <host>.pid/.log, probe-<vm>.pid/.log, <host>/wnvd.sock
	// and state.json.
	StateDir string
	// Wnvd runs `wnvd host` in each host namespace; Wnvctl runs
	// `wnvctl probe serve` in each VM namespace.
	Wnvd, Wnvctl string
	// Out receives one progress line per step; nil discards them.
	Out io.Writer

	mu     sync.Mutex
	server *policyclient.Client
	guests map[string]*qemu.VM // by qemuName: the QEMUs this process has handles of
}

// state is what a completed Up leaves in StateDir/state.json, so that status,
// exec and down work from another process with the same topology.
type state struct {
	Topology Topology
}

func (l *Lab) printf(format string, a ...any) {
	if l.Out != nil {
		fmt.Fprintf(l.Out, format+"\n", a...)
	}
}

func (l *Lab) statePath() string            { return filepath.Join(l.StateDir, "state.json") }
func (l *Lab) pidPath(name string) string   { return filepath.Join(l.StateDir, name+".pid") }
func (l *Lab) logPath(name string) string   { return filepath.Join(l.StateDir, name+".log") }
func (l *Lab) socket(host string) string    { return filepath.Join(l.StateDir, host, "wnvd.sock") }
func (l *Lab) notifySocket(h string) string { return filepath.Join(l.StateDir, h, "notify.sock") }

// Client returns a provider API client for a host's daemon.
func (l *Lab) Client(host string) *provider.Client { return provider.NewClient(l.socket(host)) }

// Load replaces l.Topology with the one saved by a completed Up in StateDir,
// if there is one; it reports whether it found it.
func (l *Lab) Load() bool {
	b, err := os.ReadFile(l.statePath())
	if err != nil {
		return false
	}
	var s state
	if json.Unmarshal(b, &s) != nil || s.Topology.Validate() != nil {
		return false
	}
	l.Topology = s.Topology
	return true
}

// saveState records the topology for status, exec and down in other
// processes.
func (l *Lab) saveState() error {
	b, _ := json.MarshalIndent(state{Topology: l.Topology}, "", "  ")
	if err := os.WriteFile(l.statePath(), b, 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// IsUp reports whether a completed lab exists and all its daemons and QEMU
// guests run (the policy server is not required: the lab keeps working
// without it).
func (l *Lab) IsUp() bool {
	if _, err := os.Stat(l.statePath()); err != nil {
		return false
	}
	for _, h := range l.Topology.Hosts {
		if !l.alive(h.Name) {
			return false
		}
	}
	for _, v := range l.Topology.QEMUVMs() {
		if !l.guestAlive(v) {
			return false
		}
	}
	return true
}

// alive reports whether the process in the named pid file runs.
func (l *Lab) alive(name string) bool { return processAlive(l.pid(name)) }

func (l *Lab) pid(name string) int {
	b, err := os.ReadFile(l.pidPath(name))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// PartialError is an Up failure after building started: what was built stays
// for inspection, and Down removes it.
type PartialError struct{ Err error }

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Up builds the lab: namespaces and links, the QEMU guests, the policy
// server, one wnvd per host (with its agent), the tenants, subnets and VMs at
// the policy server (Static: policy through each provider API instead), VM
// addresses and routes, and a probe responder per namespace VM.
// Leftovers of a crashed or partial lab are removed first. Failures once
// building has started are *PartialError.
func (l *Lab) Up(ctx context.Context) error {
	if err := l.up(ctx); err != nil {
		if errors.Is(err, ErrAlreadyUp) || !namespaceExists(l.Topology.Namespace("underlay")) {
			return err
		}
		return &PartialError{Err: err}
	}
	return nil
}

func (l *Lab) up(ctx context.Context) (err error) {
	t := l.Topology
	if err := t.Validate(); err != nil {
		return err
	}
	if l.IsUp() {
		return ErrAlreadyUp
	}
	if err := l.checkBinaries(); err != nil {
		return err
	}
	if err := l.Down(); err != nil {
		return fmt.Errorf("remove the previous lab: %w", err)
	}
	if err := os.MkdirAll(l.StateDir, 0o755); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := l.mountBPF(); err != nil {
		return err
	}
	if err := l.buildNetwork(); err != nil {
		return err
	}
	// The guests boot while the daemons start; their TAPs wait for the
	// agents.
	for _, v := range t.QEMUVMs() {
		if _, err := l.startGuest(ctx, v, v.Host, false); err != nil {
			return err
		}
	}
	if t.RemoteAPI {
		if err := l.writeHostsFiles(); err != nil {
			return err
		}
		if t.Static {
			if err := l.issueLocalCredentials(); err != nil {
				return err
			}
		}
	}
	if !t.Static {
		if err := l.startServer(); err != nil {
			return err
		}
		if err := l.waitServer(ctx); err != nil {
			return err
		}
		l.printf("policy server up at %s (embedded etcd in %s, CA and admin credential in %s)", t.ServerURL(), l.etcdDir(), l.pkiDir())
		if err := l.issueHostCredentials(ctx); err != nil {
			return err
		}
	}
	for _, h := range t.Hosts {
		if err := l.startDaemon(h); err != nil {
			return err
		}
	}
	for _, h := range t.Hosts {
		if err := l.waitDaemon(ctx, h.Name); err != nil {
			return err
		}
	}
	l.printf("daemons up: %d hosts", len(t.Hosts))
	switch {
	case t.Unprovisioned:
	case t.Static:
		err = l.provision(ctx)
	default:
		err = l.provisionServer(ctx)
		if err == nil && t.Edge != nil {
			err = l.provisionEdge(ctx)
		}
	}
	if err != nil {
		return err
	}
	for _, v := range t.VMs {
		if err := l.startVM(ctx, v); err != nil {
			return err
		}
	}
	if err := l.saveState(); err != nil {
		return err
	}
	l.printf("lab is up: %d hosts, %d VMs (state in %s)", len(t.Hosts), len(t.VMs), l.StateDir)
	return nil
}

// startVM brings up a VM placed at the policy server: a namespace VM's
// addresses, routes and responder; a QEMU VM's guest, whose init does all
// that itself, once it is ready.
func (l *Lab) startVM(ctx context.Context, v VM) error {
	if v.QEMU {
		if err := l.waitGuest(ctx, v.Name); err != nil {
			return err
		}
		l.printf("QEMU guest %s ready on %s", v.Name, v.Host)
		return nil
	}
	if err := l.configureVM(v); err != nil {
		return err
	}
	return l.startResponder(v)
}

func (l *Lab) checkBinaries() error {
	for _, p := range []struct{ flag, path string }{{"wnvd", l.Wnvd}, {"wnvctl", l.Wnvctl}} {
		if st, err := os.Stat(p.path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s binary %q is not an executable file: build it with 'make build' or pass --%s", p.flag, p.path, p.flag)
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("the ip command (iproute2) is not installed: run 'make deps' or apt-get install iproute2")
	}
	if q := l.Topology.QEMUVMs(); len(q) > 0 {
		if err := qemu.Available(); err != nil {
			return fmt.Errorf("VM %s is to run in QEMU, but %w", q[0].Name, err)
		}
	}
	return nil
}

// buildNetwork creates the underlay bridge, the host and VM namespaces, and a
// veth per host from its ul0 into the bridge.
func (l *Lab) buildNetwork() error {
	t := l.Topology
	uns := t.Namespace("underlay")
	uh, err := createNamespace(uns)
	if err != nil {
		return err
	}
	defer uh.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", MTU: t.UnderlayMTU}, MulticastSnooping: new(bool)}
	if err := uh.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge br0 in %s: %w", uns, err)
	}
	if err := uh.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up br0 in %s: %w", uns, err)
	}
	// The bridge only switches frames between hosts; it needs no IPv6 of its own.
	setSysctl(uns, "net.ipv6.conf.br0.disable_ipv6", "1")
	if !t.Static {
		if err := l.addServerAddress(uh, br); err != nil {
			return err
		}
	}
	for _, h := range t.Hosts {
		ns := t.Namespace(h.Name)
		hh, err := createNamespace(ns)
		if err != nil {
			return err
		}
		err = l.plugHost(uh, hh, br, h, ns)
		hh.Close()
		if err != nil {
			return err
		}
	}
	if t.Edge != nil {
		if err := l.buildExternal(); err != nil {
			return err
		}
	}
	n := 0
	for _, v := range t.VMs {
		if v.QEMU {
			continue
		}
		if err := l.createVMNamespace(v); err != nil {
			return err
		}
		n++
	}
	l.printf("network built: %sunderlay (br0), %d host and %d VM namespaces", t.Prefix, len(t.Hosts), n)
	return nil
}

// createVMNamespace creates a VM's namespace and its NIC the way a
// hypervisor or container runtime would: a veth pair whose VM end is eth0 in
// the VM's namespace (with the VM's MAC and MTU) and whose host end, named
// after the VM, sits in its host's namespace for wnvd to attach as the port.
func (l *Lab) createVMNamespace(v VM) error {
	t := l.Topology
	ns := t.Namespace(v.Name)
	h, err := createNamespace(ns)
	if err != nil {
		return err
	}
	h.Close()
	// eth0 inherits these defaults: addresses usable at once, no router
	// solicitations, and neighbours kept while the carrier is off. A live
	// migration never takes a real guest's link down, so its neighbour
	// cache survives; moving the veth's host end does, and without these
	// the stand-in would resolve every neighbour again after each move.
	for _, kv := range [][2]string{
		{"net.ipv6.conf.default.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_ra", "0"},
		{"net.ipv6.conf.default.router_solicitations", "0"},
		{"net.ipv4.conf.default.arp_evict_nocarrier", "0"},
		{"net.ipv6.conf.default.ndisc_evict_nocarrier", "0"},
	} {
		if err := setSysctl(ns, kv[0], kv[1]); err != nil {
			return err
		}
	}
	return l.plugVM(v, v.Host)
}

// plugVM creates the VM's veth pair with its host end in host's namespace.
func (l *Lab) plugVM(v VM, host string) error {
	t := l.Topology
	vmNS, hostNS := t.Namespace(v.Name), t.Namespace(host)
	hh, err := handleAt(hostNS)
	if err != nil {
		return err
	}
	defer hh.Close()
	vns, err := netns.GetFromName(vmNS)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", vmNS, err)
	}
	defer vns.Close()
	mtu := t.PortMTU(v)
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: v.Name, MTU: mtu},
		PeerName:         "eth0",
		PeerMTU:          uint32(mtu),
		PeerHardwareAddr: v.MAC[:],
		PeerNamespace:    netlink.NsFd(int(vns)),
	}
	if err := hh.LinkAdd(veth); err != nil {
		return fmt.Errorf("VM %s: create veth %s/%s <-> %s/eth0: %w", v.Name, hostNS, v.Name, vmNS, err)
	}
	// The host end belongs to wnvd's port: the host's own IPv6 stack stays
	// off it.
	return setSysctl(hostNS, "net.ipv6.conf."+v.Name+".disable_ipv6", "1")
}

// moveVMInterface moves the host end of vm's veth from host from to host
// to, as the destination hypervisor of a live migration creates the VM's
// interface under the same name; wnvd there attaches it when it appears.
func (l *Lab) moveVMInterface(v VM, from, to string) error {
	t := l.Topology
	fh, err := handleAt(t.Namespace(from))
	if err != nil {
		return err
	}
	defer fh.Close()
	link, err := fh.LinkByName(v.Name)
	if err != nil {
		return fmt.Errorf("VM %s: its interface on %s: %w", v.Name, from, err)
	}
	dst, err := netns.GetFromName(t.Namespace(to))
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", t.Namespace(to), err)
	}
	defer dst.Close()
	if err := fh.LinkSetNsFd(link, int(dst)); err != nil {
		return fmt.Errorf("VM %s: move its interface from %s to %s: %w", v.Name, from, to, err)
	}
	return setSysctl(t.Namespace(to), "net.ipv6.conf."+v.Name+".disable_ipv6", "1")
}

func (l *Lab) plugHost(uh, hh *netlink.Handle, br *netlink.Bridge, h Host, ns string) error {
	t := l.Topology
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", ns, err)
	}
	defer nsh.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: h.Name, MTU: t.UnderlayMTU, MasterIndex: br.Attrs().Index},
		PeerName:      "ul0",
		PeerMTU:       uint32(t.UnderlayMTU),
		PeerNamespace: netlink.NsFd(int(nsh)),
	}
	if err := uh.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s <-> %s/ul0: %w", h.Name, ns, err)
	}
	if err := uh.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring up %s in the underlay: %w", h.Name, err)
	}
	// The daemon adds the PA itself; without DAD an IPv6 PA is usable at once.
	if err := setSysctl(ns, "net.ipv6.conf.ul0.accept_dad", "0"); err != nil {
		return err
	}
	ul, err := hh.LinkByName("ul0")
	if err == nil {
		err = hh.LinkSetUp(ul)
	}
	if err != nil {
		return fmt.Errorf("bring up ul0 in %s: %w", ns, err)
	}
	if t.RemoteAPI {
		return t.addMgmtAddress(hh, h)
	}
	return nil
}

// startDaemon runs `wnvd host` in the host's namespace, detached into its own
// session, logging to <host>.log. Unless Static, its agent registers the PA
// at the policy server and attaches the VMs placed on the host, and a
// checkpoint in the state directory keeps its policy across a crash.
func (l *Lab) startDaemon(h Host) error {
	if err := os.MkdirAll(filepath.Dir(l.socket(h.Name)), 0o755); err != nil {
		return err
	}
	args := []string{"host",
		"--name", h.Name,
		"--underlay", "ul0",
		"--socket", l.socket(h.Name),
		"--notify-socket", l.notifySocket(h.Name),
		"--metrics-addr", "127.0.0.1:9100",
		"--pin-dir", l.pinDir(h.Name)}
	args = append(args, l.apiArgs(h.Name)...)
	args = append(args, l.edgeArgs(h.Name)...)
	if !l.Topology.Static {
		args = append(args,
			"--policy-server", l.Topology.ServerURL(),
			"--policy-credentials", l.HostCredentials(h.Name),
			"--pa", h.PA.String(),
			"--checkpoint", l.checkpoint(h.Name))
	}
	return l.spawn(h.Name, l.Topology.Namespace(h.Name), l.Wnvd, args...)
}

func (l *Lab) startResponder(v VM) error {
	return l.spawn("probe-"+v.Name, l.Topology.Namespace(v.Name), l.Wnvctl, "probe", "serve", "--name", v.Name)
}

// spawn starts a long-running process inside a namespace with `ip netns exec`
// (which execs, so the pid file holds the program's own pid).
func (l *Lab) spawn(name, ns, bin string, args ...string) error {
	logf, err := os.OpenFile(l.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	if l.Topology.Edge != nil && ns == l.Topology.Namespace(l.Topology.Edge.Host) && name == l.Topology.Edge.Host {
		// The gateway host's wnvd creates network namespaces, which are
		// mounts: it runs in the lab's mount namespace, where they outlive
		// it, rather than in a private one of `ip netns exec`.
		cmd = exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netnsDir, ns), "--", bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s in %s: %w", filepath.Base(bin), ns, err)
	}
	if err := os.WriteFile(l.pidPath(name), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	go cmd.Wait() // reap it if it exits while we run
	return nil
}

// waitDaemon waits until the host's provider API answers.
func (l *Lab) waitDaemon(ctx context.Context, host string) error {
	c := l.Client(host)
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Global(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if !l.alive(host) {
			return fmt.Errorf("wnvd on %s exited during start-up; its log %s ends:\n%s", host, l.logPath(host), tail(l.logPath(host), 15))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("wnvd on %s did not answer on %s within 15s: %v; see %s", host, l.socket(host), err, l.logPath(host))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// configureVM brings up the VM's eth0 with its CAs and default routes via
// the subnet gateways.
func (l *Lab) configureVM(v VM) error {
	t := l.Topology
	ns := t.Namespace(v.Name)
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("VM %s: eth0: %w", v.Name, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("VM %s: bring up eth0: %w", v.Name, err)
	}
	sn, _ := t.subnet(v.Tenant, v.VSID)
	for _, pair := range [][2]netip.Prefix{
		{netip.PrefixFrom(v.V4, sn.V4.Bits()), sn.V4},
		{netip.PrefixFrom(v.V6, sn.V6.Bits()), sn.V6},
	} {
		if err := dataplane.AddAddrNoDAD(h, eth, pair[0]); err != nil {
			return fmt.Errorf("VM %s: %w", v.Name, err)
		}
		gw := Gateway(pair[1])
		r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}
		if gw.Is6() {
			r.Family = netlink.FAMILY_V6
		} else {
			r.Family = netlink.FAMILY_V4
		}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("VM %s: default route via %v: %w", v.Name, gw, err)
		}
	}
	return nil
}

// pinDir is where a host's wnvd pins its kernel fast path.
func (l *Lab) pinDir(host string) string { return filepath.Join(l.StateDir, "bpf", host) }

// mountBPF mounts the lab's own bpf filesystem in the state directory.
// `ip netns exec` gives each daemon a private /sys, so pins under
// /sys/fs/bpf would die with the daemon; a mount made here, in the lab's
// mount namespace, is seen by every daemon and outlives them, as fail
// static needs.
func (l *Lab) mountBPF() error {
	dir := filepath.Join(l.StateDir, "bpf")
	if isBPFFS(dir) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount a bpf filesystem at %s for the daemons' fast paths: %w", dir, err)
	}
	return nil
}

func isBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == unix.BPF_FS_MAGIC
}

// Down removes everything a lab with this prefix and state directory may have
// left: QEMU guests, processes from pid files, processes still inside the
// namespaces, the namespaces and the state directory. It works after a crash
// or partial Up.
func (l *Lab) Down() error {
	l.stopGuests()
	pids, _ := filepath.Glob(filepath.Join(l.StateDir, "*.pid"))
	for _, p := range pids {
		stopProcess(l.pid(strings.TrimSuffix(filepath.Base(p), ".pid")), 3*time.Second)
	}
	var errs []error
	// A stopped wnvd leaves its forwarding in place (fail static): remove it.
	for _, h := range l.Topology.Hosts {
		ns := l.Topology.Namespace(h.Name)
		if !namespaceExists(ns) || l.Wnvd == "" {
			continue
		}
		out, err := exec.Command("ip", "netns", "exec", ns, l.Wnvd, "host", "cleanup", "--name", h.Name, "--underlay", "ul0", "--pin-dir", l.pinDir(h.Name)).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("wnvd host cleanup on %s: %v: %s", h.Name, err, strings.TrimSpace(string(out))))
		}
	}
	if bpf := filepath.Join(l.StateDir, "bpf"); isBPFFS(bpf) {
		if err := unix.Unmount(bpf, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount the lab's bpf filesystem %s: %w", bpf, err))
		}
	}
	for _, ns := range namespacesWithPrefix(l.Topology.Prefix) {
		if err := deleteNamespace(ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, h := range l.Topology.Hosts {
		if err := os.RemoveAll(netnsEtc(l.Topology.Namespace(h.Name))); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(l.StateDir); err != nil {
		errs = append(errs, fmt.Errorf("remove state directory: %w", err))
	}
	return errors.Join(errs...)
}

// Exec runs argv inside the namespace of a host, VM or "underlay" with the
// given stdio and returns its exit code; for a QEMU VM it runs in the guest,
// on its console, without stdin and with stderr on stdout.
func (l *Lab) Exec(name string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return 2, fmt.Errorf("no command given: use lab exec NAME -- CMD [ARGS...]")
	}
	if v, ok := l.Topology.VM(name); ok && v.QEMU {
		return l.execOnGuest(name, argv, stdout)
	}
	ns := l.Topology.Namespace(name)
	if !namespaceExists(ns) {
		return 2, fmt.Errorf("namespace %s does not exist: is the lab up, and is %q a host, VM or underlay?", ns, name)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if !l.Topology.Static {
		// wnvctl vm|subnet|... in the underlay or a host find the lab's server.
		cmd.Env = append(os.Environ(), "WNV_SERVER="+l.Topology.ServerURL(), "WNV_CREDENTIALS="+l.AdminCredentials())
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	text := strings.TrimRight(string(b), "\n")
	if text == "" {
		return "(the log is empty)"
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
