package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ovsSchema is where Debian's openvswitch-common puts the database schema.
const ovsSchema = "/usr/share/openvswitch/vswitch.ovsschema"

// ovs builds (d): Open vSwitch's userspace datapath (datapath_type=netdev,
// the kernel needs no openvswitch module) with userspace TSO enabled, and a
// VXLAN tunnel between the hosts, the way OVS documents userspace
// tunnelling: on each host a bridge brp holds the underlay veth (an
// AF_PACKET port) and carries the provider address on its internal port,
// and a bridge bri holds the VXLAN port and the host end of the VM's veth
// (AF_PACKET too). Both bridges forward with OVS's default NORMAL flow.
//
// Each host runs its own ovsdb-server and ovs-vswitchd in its namespace,
// with database, sockets, pid files and logs in the bed's directory, so
// nothing touches a system-wide Open vSwitch; they are the bed's processes
// and stop with it. A failure here skips the setup instead of failing the
// run.
//
// OVS 3.1 (Debian 12) drops every packet that carries offload flags (a
// TSO super-frame or a partial checksum) when it must tunnel it ("Tunneling
// packets with HW offload flags is not supported"), and a veth hands it
// exactly those; so the VMs' eth0 send with transmit checksum offload off
// (which turns TSO off too) and their kernel segments and checksums in
// software. The VMs' receive side is unchanged.
func (b *bed) ovs() error {
	b.skippable = true
	for _, c := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s is not installed (bench/dataplane.sh installs Debian's openvswitch-switch)", c)
		}
	}
	if _, err := os.Stat(ovsSchema); err != nil {
		return fmt.Errorf("the Open vSwitch database schema is missing: %w", err)
	}
	version := "Open vSwitch"
	if out, err := exec.Command("ovs-vswitchd", "--version").Output(); err == nil {
		version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	vmMTU := strconv.Itoa(b.o.mtu - 50)
	for i := range 2 {
		h, peer := b.host(i), 1-i
		o, err := b.startOVS(i)
		if err != nil {
			return err
		}
		if err := ip("-n", h, "link", "add", "vm", "type", "veth", "peer", "name", "eth0", "netns", b.vm(i)); err != nil {
			return err
		}
		if err := ip("-n", h, "link", "set", "vm", "mtu", vmMTU, "up"); err != nil {
			return err
		}
		if err := o.vsctl(
			"add-br", "brp", "--", "set", "bridge", "brp", "datapath_type=netdev",
			"--", "set", "interface", "brp", "mtu_request="+strconv.Itoa(b.o.mtu),
			"--", "add-port", "brp", b.underlay(i),
			"--", "add-br", "bri", "--", "set", "bridge", "bri", "datapath_type=netdev",
			"--", "add-port", "bri", "vx", "--", "set", "interface", "vx", "type=vxlan",
			"options:local_ip="+pa[i].String(), "options:remote_ip="+pa[peer].String(),
			"options:key="+strconv.Itoa(vsid), "options:dst_port=4789",
			"--", "add-port", "bri", "vm",
		); err != nil {
			return err
		}
		if err := each([][]string{
			{"-n", h, "addr", "add", pa[i].String() + "/24", "dev", "brp"},
			{"-n", h, "link", "set", "brp", "up"},
			{"-n", b.vm(i), "link", "set", "eth0", "address", mac[i].String(), "mtu", vmMTU, "up"},
			{"-n", b.vm(i), "addr", "add", ca[i].String() + "/24", "dev", "eth0"},
		}); err != nil {
			return err
		}
		if err := inNetns(b.vm(i), func() error { return txChecksumOff("eth0") }); err != nil {
			return fmt.Errorf("turning transmit checksum offload off on eth0 in %s: %w", b.vm(i), err)
		}
		if err := o.tsoEnabled(); err != nil {
			return err
		}
	}
	b.note = version + ", datapath_type=netdev, other_config:userspace-tso-enable=true; VM and underlay ports are veths " +
		"(AF_PACKET); the VMs send without checksum offload and TSO, which OVS 3.1 cannot tunnel"
	return nil
}

// ovsd is one host's Open vSwitch: its directory, database socket and the
// control socket of its ovs-vswitchd.
type ovsd struct {
	ns, dir string
	env     []string
}

func (o *ovsd) db() string              { return "unix:" + filepath.Join(o.dir, "db.sock") }
func (o *ovsd) ctl() string             { return filepath.Join(o.dir, "ovs-vswitchd.ctl") }
func (o *ovsd) log() string             { return filepath.Join(o.dir, "ovs-vswitchd.log") }
func (o *ovsd) path(name string) string { return filepath.Join(o.dir, name) }

// startOVS creates host i's database with userspace TSO enabled (it is read
// when ovs-vswitchd starts) and runs ovsdb-server and ovs-vswitchd in the
// host's namespace. OVS_RUNDIR and friends point at the bed's directory, so
// that neither daemon nor the bridges' management sockets use
// /var/run/openvswitch.
func (b *bed) startOVS(i int) (*ovsd, error) {
	o := &ovsd{ns: b.host(i), dir: filepath.Join(b.dir, fmt.Sprintf("ovs%d", i))}
	if err := os.Mkdir(o.dir, 0o700); err != nil {
		return nil, err
	}
	for _, v := range []string{"OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"} {
		o.env = append(o.env, v+"="+o.dir)
	}
	if out, err := exec.Command("ovsdb-tool", "create", o.path("conf.db"), ovsSchema).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ovsdb-tool create: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := b.ovsDaemon(o, "ovsdb-server", o.path("conf.db"), "--remote=punix:"+o.path("db.sock"),
		"--unixctl="+o.path("ovsdb-server.ctl"), "--pidfile="+o.path("ovsdb-server.pid")); err != nil {
		return nil, err
	}
	if err := waitFor(context.Background(), 10*time.Second, func() error { return o.vsctl("--no-wait", "show") }); err != nil {
		return nil, fmt.Errorf("ovsdb-server in %s did not start: %w%s", o.ns, err, logTail(o.path("ovsdb-server.log")))
	}
	if err := o.vsctl("--no-wait", "init", "--", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true"); err != nil {
		return nil, err
	}
	if err := b.ovsDaemon(o, "ovs-vswitchd", o.db(), "--unixctl="+o.ctl(), "--pidfile="+o.path("ovs-vswitchd.pid")); err != nil {
		return nil, err
	}
	if err := waitFor(context.Background(), 10*time.Second, func() error {
		return exec.Command("ovs-appctl", "-t", o.ctl(), "version").Run()
	}); err != nil {
		return nil, fmt.Errorf("ovs-vswitchd in %s did not start: %w%s", o.ns, err, logTail(o.log()))
	}
	return o, nil
}

// ovsDaemon starts an OVS daemon in the foreground in o's namespace, logging
// to a file in o's directory and not to syslog, as one of the bed's
// processes.
func (b *bed) ovsDaemon(o *ovsd, name string, args ...string) error {
	logf := o.path(name + ".log")
	args = append([]string{"netns", "exec", o.ns, name}, append(args, "--log-file="+logf, "-vconsole:off", "-vsyslog:off")...)
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), o.env...)
	if err := cmd.Start(); err != nil {
		return err
	}
	b.procs = append(b.procs, cmd)
	return nil
}

func (o *ovsd) vsctl(args ...string) error {
	cmd := exec.Command("ovs-vsctl", append([]string{"--db=" + o.db(), "--timeout=10"}, args...)...)
	cmd.Env = append(os.Environ(), o.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ovs-vsctl %s: %v: %s%s", strings.Join(args, " "), err, strings.TrimSpace(string(out)), logTail(o.log()))
	}
	return nil
}

// tsoEnabled checks that ovs-vswitchd took userspace TSO on.
func (o *ovsd) tsoEnabled() error {
	data, err := os.ReadFile(o.log())
	if err != nil {
		return err
	}
	if !strings.Contains(string(data), "Userspace TCP Segmentation Offloading support enabled") {
		return errors.New("ovs-vswitchd did not enable userspace TSO" + logTail(o.log()))
	}
	return nil
}

// logTail is the last line of a daemon's log, to end an error with.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if last := lines[len(lines)-1]; last != "" {
		return " (" + filepath.Base(path) + ": " + last + ")"
	}
	return ""
}

// inNetns runs f on a thread in the named network namespace. The thread is
// never unlocked, so it ends with its goroutine instead of going back to the
// scheduler in the wrong namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// txChecksumOff does `ethtool -K ifname tx off` (ETHTOOL_STXCSUM) in the
// current namespace; the kernel then drops TSO and the other offloads that
// need it.
func txChecksumOff(ifname string) error {
	const ethtoolSTXCSUM = 0x17
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	value := struct{ cmd, data uint32 }{cmd: ethtoolSTXCSUM}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&value)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return errno
	}
	runtime.KeepAlive(&value)
	return nil
}
