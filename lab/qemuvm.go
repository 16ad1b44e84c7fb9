package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wnv/wnv/lab/probe"
	"github.com/wnv/wnv/lab/qemu"
)

// A QEMU VM is a real guest (lab/guest's image) instead of a namespace: its
// QEMU runs in its host's namespace and creates the VM's NIC there, a TAP
// named after the VM, which the host's agent attaches like the host end of a
// stand-in VM's veth. The guest configures its CAs and gateways from its
// kernel command line and runs the probe responder itself; the lab probes
// from it by running the guest's wnv-probe on its serial console.

// guestReadyTimeout bounds a guest's boot: seconds under TCG, more on a
// loaded machine.
const guestReadyTimeout = 2 * time.Minute

// qemuName names a QEMU VM's pid file and run directory on a host.
func qemuName(vm, host string) string { return "qemu-" + vm + "-" + host }

func (l *Lab) qemuDir(vm, host string) string { return filepath.Join(l.StateDir, qemuName(vm, host)) }

// startGuest starts the QEMU of VM v on host, Detached so that it outlives
// `wnvctl lab up`; Incoming starts a live migration's destination. The TAP
// gets the port's MTU and no IPv6 of the host's own, like a veth's host end.
func (l *Lab) startGuest(ctx context.Context, v VM, host string, incoming bool) (*qemu.VM, error) {
	t := l.Topology
	sn, _ := t.subnet(v.Tenant, v.VSID)
	cfg := qemu.Config{
		Name:     v.Name,
		Netns:    t.Namespace(host),
		TAP:      v.Name,
		MAC:      v.MAC,
		Addrs:    []netip.Prefix{netip.PrefixFrom(v.V4, sn.V4.Bits()), netip.PrefixFrom(v.V6, sn.V6.Bits())},
		Gateways: []netip.Addr{Gateway(sn.V4), Gateway(sn.V6)},
		MTU:      t.PortMTU(v),
		Dir:      l.qemuDir(v.Name, host),
		Incoming: incoming,
		Detached: true,
	}
	g, err := qemu.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", v.Name, err)
	}
	if err := l.prepareTAP(v, host); err != nil {
		g.Stop()
		return nil, err
	}
	if err := os.WriteFile(l.pidPath(qemuName(v.Name, host)), []byte(strconv.Itoa(g.Pid())+"\n"), 0o644); err != nil {
		g.Stop()
		return nil, err
	}
	l.mu.Lock()
	if l.guests == nil {
		l.guests = map[string]*qemu.VM{}
	}
	l.guests[qemuName(v.Name, host)] = g
	l.mu.Unlock()
	return g, nil
}

func (l *Lab) prepareTAP(v VM, host string) error {
	ns := l.Topology.Namespace(host)
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	tap, err := h.LinkByName(v.Name)
	if err == nil {
		err = h.LinkSetMTU(tap, l.Topology.PortMTU(v))
	}
	if err != nil {
		return fmt.Errorf("VM %s: MTU of its TAP on %s: %w", v.Name, host, err)
	}
	return setSysctl(ns, "net.ipv6.conf."+v.Name+".disable_ipv6", "1")
}

// stopGuest stops the QEMU of vm on host and removes its run directory.
func (l *Lab) stopGuest(vm, host string) error {
	name := qemuName(vm, host)
	l.mu.Lock()
	g := l.guests[name]
	delete(l.guests, name)
	l.mu.Unlock()
	var err error
	if g != nil {
		err = g.Stop()
	} else {
		stopProcess(l.pid(name), 3*time.Second)
	}
	os.Remove(l.pidPath(name))
	os.RemoveAll(l.qemuDir(vm, host))
	return err
}

// stopGuests stops every QEMU this process has a handle of; Down kills the
// others by their pid files.
func (l *Lab) stopGuests() {
	l.mu.Lock()
	gs := l.guests
	l.guests = nil
	l.mu.Unlock()
	for _, g := range gs {
		g.Stop()
	}
}

// Close lets go of this process's handles on the lab's QEMU guests without
// stopping them: like the daemons, they run on after `wnvctl lab up`.
func (l *Lab) Close() {
	l.mu.Lock()
	gs := l.guests
	l.guests = nil
	l.mu.Unlock()
	for _, g := range gs {
		g.Close()
	}
}

// guest returns the QEMU of a QEMU VM on its current host, attaching to it
// if another process (`wnvctl lab up`) started it.
func (l *Lab) guest(ctx context.Context, vm string) (*qemu.VM, error) {
	v, ok := l.Topology.VM(vm)
	if !ok || !v.QEMU {
		return nil, fmt.Errorf("%q is not a QEMU VM of the lab", vm)
	}
	name := qemuName(v.Name, v.Host)
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.guests[name]; g != nil {
		return g, nil
	}
	g, err := qemu.Attach(ctx, l.qemuDir(v.Name, v.Host))
	if err != nil {
		return nil, err
	}
	if l.guests == nil {
		l.guests = map[string]*qemu.VM{}
	}
	l.guests[name] = g
	return g, nil
}

// waitGuest waits until a QEMU VM's guest has its network and responder up.
func (l *Lab) waitGuest(ctx context.Context, vm string) error {
	g, err := l.guest(ctx, vm)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, guestReadyTimeout)
	defer cancel()
	return g.WaitReady(ctx)
}

// guestAlive reports whether a QEMU VM's QEMU runs on its current host.
func (l *Lab) guestAlive(v VM) bool { return l.alive(qemuName(v.Name, v.Host)) }

// runOnGuest runs a command on a QEMU VM's console with a timeout.
func (l *Lab) runOnGuest(ctx context.Context, vm, cmd string, timeout time.Duration) (string, error) {
	g, err := l.guest(ctx, vm)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return g.Run(ctx, cmd)
}

// guestProbeUDP probes addrs from a QEMU VM's guest, all at once, each with
// up to attempts probes until one is answered.
func (l *Lab) guestProbeUDP(ctx context.Context, vm string, addrs []netip.Addr, source netip.Addr, attempts int, timeout time.Duration) ([]probe.Answer, error) {
	cmd := fmt.Sprintf("wnv-probe udp -count %d -timeout %v", attempts, timeout)
	if source.IsValid() {
		cmd += " -source " + source.String()
	}
	for _, a := range addrs {
		cmd += " " + a.String()
	}
	// The guest's Go runtime starts slowly under TCG: allow for it.
	out, err := l.runOnGuest(ctx, vm, cmd, time.Duration(attempts)*timeout+time.Minute)
	if err != nil {
		return nil, err
	}
	answers := make([]probe.Answer, 0, len(addrs))
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var a probe.Answer
		if err := dec.Decode(&a); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("VM %s: wnv-probe udp printed %q: %w", vm, out, err)
		}
		answers = append(answers, a)
	}
	for i, a := range answers {
		if i >= len(addrs) || a.Addr != addrs[i] {
			return nil, fmt.Errorf("VM %s: wnv-probe udp answered for %v, want %v", vm, a.Addr, addrs)
		}
	}
	if len(answers) != len(addrs) {
		return nil, fmt.Errorf("VM %s: wnv-probe udp answered for %d of %d addresses: %q", vm, len(answers), len(addrs), out)
	}
	return answers, nil
}

// guestProbeTCP streams n checked bytes from a QEMU VM's guest to addr.
func (l *Lab) guestProbeTCP(ctx context.Context, vm string, addr netip.Addr, n int64) (probe.Transfer, error) {
	out, err := l.runOnGuest(ctx, vm, fmt.Sprintf("wnv-probe tcp -bytes %d -timeout 60s %v", n, addr), 2*time.Minute)
	if err != nil {
		return probe.Transfer{}, err
	}
	var tr probe.Transfer
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		return tr, fmt.Errorf("VM %s: wnv-probe tcp printed %q: %w", vm, out, err)
	}
	return tr, nil
}

// execOnGuest runs argv on a QEMU VM's console and returns its exit status.
// The guest's command has no stdin; stdout and stderr arrive together.
func (l *Lab) execOnGuest(vm string, argv []string, stdout io.Writer) (int, error) {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	out, err := l.runOnGuest(context.Background(), vm, strings.Join(q, " "), 10*time.Minute)
	io.WriteString(stdout, out)
	var ee *qemu.ExitError
	if errors.As(err, &ee) {
		return ee.Status, nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// migrateGuest live-migrates a QEMU VM with QEMU's own migration: a
// destination QEMU waits on host to (its TAP, under the VM's name, appears
// there), the guest's RAM is copied while it runs, and when QEMU pauses it
// for the last pass the VM is moved at the policy server, so the destination
// host attaches the TAP while the guest's device state is still on its way.
// The guest then resumes on to, and the source QEMU quits.
func (l *Lab) migrateGuest(ctx context.Context, v VM, to string) (*qemu.Stats, error) {
	src, err := l.guest(ctx, v.Name)
	if err != nil {
		return nil, err
	}
	dst, err := l.startGuest(ctx, v, to, true)
	if err != nil {
		return nil, err
	}
	moved := false
	st, err := src.Migrate(ctx, dst, func(ctx context.Context) error {
		if _, err := l.Server().MigrateVM(ctx, v.Name, to); err != nil {
			return fmt.Errorf("policy server: migrate %s to %s: %w", v.Name, to, err)
		}
		moved = true
		return nil
	})
	if err != nil {
		l.stopGuest(v.Name, to)
		if moved {
			// The guest resumed on the source: so must its network.
			if _, berr := l.Server().MigrateVM(context.Background(), v.Name, v.Host); berr != nil {
				err = fmt.Errorf("%w; moving it back to %s at the policy server failed too: %v", err, v.Host, berr)
			}
		}
		return nil, err
	}
	// Migrate stopped the source QEMU.
	l.stopGuest(v.Name, v.Host)
	return &st, nil
}
