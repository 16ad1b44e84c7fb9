package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/lab/qemu"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/provider"
)

// ServerPort is the policy server's HTTP port on the underlay.
const ServerPort = 8440

// serverName names the policy server's pid and log files.
const serverName = "policy"

// ServerURL is the policy server's base URL, reachable from the underlay
// namespace and the host namespaces. It serves HTTPS with mutual TLS: every
// client presents a credential issued by the server's CA (security.go).
func (t Topology) ServerURL() string {
	return "https://" + netip.AddrPortFrom(t.PolicyServer.Addr(), ServerPort).String()
}

func (l *Lab) etcdDir() string               { return filepath.Join(l.StateDir, "etcd") }
func (l *Lab) checkpoint(host string) string { return filepath.Join(l.StateDir, host+".db") }

// Server returns a client of the lab's policy server, with the lab
// operator's admin credential, whose connections are opened in the underlay
// namespace, so it works from the root namespace. Before the server has
// written its admin credential the client has none, and is not kept.
func (l *Lab) Server() *policyclient.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.server != nil {
		return l.server
	}
	cfg, err := pki.CredentialsTLS(l.AdminCredentials())
	c := policyclient.NewDialer(l.Topology.ServerURL(), cfg, NamespaceDialer(l.Topology.Namespace("underlay")))
	if err == nil {
		l.server = c
	}
	return c
}

// addServerAddress puts the policy server's address on the underlay bridge,
// and with RemoteAPI its management address, from which it reaches the
// hosts' provider APIs.
func (l *Lab) addServerAddress(uh *netlink.Handle, br netlink.Link) error {
	if err := dataplane.AddAddrNoDAD(uh, br, l.Topology.PolicyServer); err != nil {
		return fmt.Errorf("policy server address on br0: %w", err)
	}
	if l.Topology.RemoteAPI {
		if err := dataplane.AddAddrNoDAD(uh, br, serverMgmtAddr); err != nil {
			return fmt.Errorf("policy server management address on br0: %w", err)
		}
	}
	return nil
}

// startServer runs `wnvd policy` with an embedded etcd in the underlay
// namespace. etcd serves only a Unix socket in its data dir, so labs never
// collide.
func (l *Lab) startServer() error {
	return l.spawn(serverName, l.Topology.Namespace("underlay"), l.Wnvd, "policy",
		"--data-dir", l.etcdDir(),
		"--pki-dir", l.pkiDir(),
		"--listen", netip.AddrPortFrom(l.Topology.PolicyServer.Addr(), ServerPort).String())
}

// waitServer waits until the policy server answers.
func (l *Lab) waitServer(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := l.Server() // with the admin credential once the server wrote it
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Tenants(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if !l.alive(serverName) {
			return fmt.Errorf("wnvd policy exited during start-up; its log %s ends:\n%s", l.logPath(serverName), tail(l.logPath(serverName), 15))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the policy server did not answer at %s within 30s: %v; see %s", l.Topology.ServerURL(), err, l.logPath(serverName))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StopServer stops the policy server and its embedded etcd (SIGTERM, then
// SIGKILL); hosts keep forwarding on their last policy.
func (l *Lab) StopServer() {
	stopProcess(l.pid(serverName), 5*time.Second)
	os.Remove(l.pidPath(serverName))
}

// StartServer starts the policy server again on its etcd data and waits
// until it answers.
func (l *Lab) StartServer(ctx context.Context) error {
	if l.alive(serverName) {
		return nil
	}
	if err := l.startServer(); err != nil {
		return err
	}
	return l.waitServer(ctx)
}

// KillHost stops a host's wnvd with sig: SIGKILL is a crash (its VMs' TAPs
// and its checkpoint stay), SIGTERM a clean stop.
func (l *Lab) KillHost(host string, sig syscall.Signal) error {
	pid := l.pid(host)
	if pid == 0 {
		return fmt.Errorf("host %s has no wnvd pid file in %s", host, l.StateDir)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal wnvd of %s (pid %d): %w", host, pid, err)
	}
	for range 200 {
		if !processAlive(pid) {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("wnvd of %s (pid %d) still runs 5 s after %v", host, pid, sig)
}

// StartHost starts a host's wnvd again (after KillHost) and waits for its
// provider API. With an agent, it restores its checkpoint first.
func (l *Lab) StartHost(ctx context.Context, host string) error {
	h, ok := l.Topology.host(host)
	if !ok {
		return fmt.Errorf("host %q is not in the topology", host)
	}
	if l.alive(host) {
		return fmt.Errorf("wnvd of %s still runs: stop it first", host)
	}
	if err := l.startDaemon(h); err != nil {
		return err
	}
	return l.waitDaemon(ctx, host)
}

// provisionServer creates the tenants, routing domains and subnets at the
// policy server, waits for every host's agent to register, and creates the
// VMs there; each host's agent then attaches its VMs' ports.
func (l *Lab) provisionServer(ctx context.Context) error {
	t := l.Topology
	c := l.Server()
	for _, tn := range t.Tenants {
		cid, rd := policy.MustParseGUID(tn.CustomerID), policy.MustParseGUID(tn.RoutingDomainID)
		if _, err := c.CreateTenant(ctx, policyapi.Tenant{CustomerID: cid, Name: tn.Name}); err != nil {
			return fmt.Errorf("policy server: create tenant %s: %w", tn.Name, err)
		}
		if _, err := c.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rd, CustomerID: cid, Name: tn.Name}); err != nil {
			return fmt.Errorf("policy server: create routing domain of %s: %w", tn.Name, err)
		}
		for _, sn := range tn.Subnets {
			s := policyapi.Subnet{VirtualSubnetID: sn.VSID, RoutingDomainID: rd, Prefixes: []netip.Prefix{sn.V4, sn.V6}}
			if sn.Nat() {
				s.Rule, s.ProviderPrefixes = policyapi.RuleNat, []netip.Prefix{sn.RewriteV4, sn.RewriteV6}
			}
			if _, err := c.CreateSubnet(ctx, s); err != nil {
				return fmt.Errorf("policy server: create subnet %d: %w", sn.VSID, err)
			}
		}
	}
	if err := l.waitRegistered(ctx); err != nil {
		return err
	}
	for _, v := range t.VMs {
		if err := l.createVM(ctx, v); err != nil {
			return err
		}
	}
	l.printf("policy server provisioned: %d tenants, %d VMs placed on %d hosts", len(t.Tenants), len(t.VMs), len(t.Hosts))
	return l.waitPAs(ctx)
}

func (l *Lab) createVM(ctx context.Context, v VM) error {
	_, err := l.Server().CreateVM(ctx, policyapi.VM{Name: v.Name, Interface: v.Name, MACAddress: v.MAC, CustomerAddresses: v.CAs(),
		VirtualSubnetID: v.VSID, Host: v.Host})
	if err != nil {
		return fmt.Errorf("policy server: create VM %s on %s: %w", v.Name, v.Host, err)
	}
	return nil
}

// waitRegistered waits until every host's agent has registered its host.
func (l *Lab) waitRegistered(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for _, h := range l.Topology.Hosts {
		for {
			sh, err := l.Server().Host(ctx, h.Name)
			if err == nil && sh.Alive {
				break
			}
			if err != nil && !errors.Is(err, policy.ErrNotFound) {
				return fmt.Errorf("policy server: host %s: %w", h.Name, err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the agent of %s did not register at the policy server within 20s; see %s", h.Name, l.logPath(h.Name))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// AddVM creates a VM after the lab is up: its namespace (or its QEMU guest),
// the VM at the policy server (the host's agent attaches the port), its
// addresses and routes, and its probe responder. The lab's saved topology
// includes it afterwards.
func (l *Lab) AddVM(ctx context.Context, v VM) error {
	if l.Topology.Static {
		return errors.New("AddVM needs the policy server: this lab is Static")
	}
	t := l.Topology
	t.VMs = append(append([]VM(nil), t.VMs...), v)
	if err := t.Validate(); err != nil {
		return err
	}
	if v.QEMU {
		if err := l.checkBinaries(); err != nil {
			return err
		}
		if _, err := l.startGuest(ctx, v, v.Host, false); err != nil {
			return err
		}
	} else if err := l.createVMNamespace(v); err != nil {
		return err
	}
	if err := l.createVM(ctx, v); err != nil {
		return err
	}
	l.Topology = t
	if err := l.startVM(ctx, v); err != nil {
		return err
	}
	return l.saveState()
}

// Migrate live-migrates a VM to another host through the policy server and
// waits until the destination host has its port; the lab's saved topology
// follows the VM. A QEMU VM migrates with QEMU's own live migration.
func (l *Lab) Migrate(ctx context.Context, vm, to string) error {
	_, err := l.migrate(ctx, vm, to)
	return err
}

// migrate is Migrate; for a QEMU VM it also returns QEMU's figures.
func (l *Lab) migrate(ctx context.Context, vm, to string) (*qemu.Stats, error) {
	if l.Topology.Static {
		return nil, errors.New("migration needs the policy server: this lab is Static")
	}
	if _, ok := l.Topology.host(to); !ok {
		return nil, fmt.Errorf("host %q is not in the topology", to)
	}
	i := l.vmIndex(vm)
	if i < 0 {
		return nil, fmt.Errorf("VM %q is not in the topology", vm)
	}
	v := l.Topology.VMs[i]
	if v.Host == to {
		return nil, fmt.Errorf("VM %s is on %s already", vm, to)
	}
	w, err := l.watchPort(to, v)
	if err != nil {
		return nil, err
	}
	defer w.close()
	var st *qemu.Stats
	if v.QEMU {
		var err error
		if st, err = l.migrateGuest(ctx, v, to); err != nil {
			return nil, err
		}
	} else {
		if _, err := l.Server().MigrateVM(ctx, vm, to); err != nil {
			return nil, fmt.Errorf("migrate %s to %s: %w", vm, to, err)
		}
		if err := l.moveVMInterface(v, v.Host, to); err != nil {
			return nil, err
		}
	}
	vms := append([]VM(nil), l.Topology.VMs...)
	vms[i].Host = to
	l.Topology.VMs = vms
	if err := w.wait(ctx, l, 10*time.Second); err != nil {
		return st, err
	}
	if !v.QEMU {
		if err := l.forgetUnresolved(v); err != nil {
			return st, err
		}
	}
	return st, l.saveState()
}

// forgetUnresolved deletes the address resolutions a VM began while its link
// was down. A hypervisor keeps a migrating guest's link up; moving a veth's
// host end drops its carrier, and Linux would retry what it asked then only
// after a whole retransmit interval (1 s), which is the lab's artefact, not the
// migration's. With them gone the guest's next packet resolves at once through
// its new port.
func (l *Lab) forgetUnresolved(v VM) error {
	h, err := handleAt(l.Topology.Namespace(v.Name))
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("VM %s: eth0: %w", v.Name, err)
	}
	neighs, err := h.NeighList(link.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("VM %s: list neighbours: %w", v.Name, err)
	}
	for _, n := range neighs {
		if n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
			continue
		}
		if err := h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("VM %s: delete unresolved neighbour %v: %w", v.Name, n.IP, err)
		}
	}
	return nil
}

func (l *Lab) vmIndex(name string) int {
	for i, v := range l.Topology.VMs {
		if v.Name == name {
			return i
		}
	}
	return -1
}

// portWatch learns when a host attaches a VM's port: the host raises
// customer-address-added for the VM's CAs on its notification API as it
// does. Opened before the VM moves, it misses nothing, and it does not poll
// the provider API, whose port listing reads every fast-path counter: at the
// pace a blackout needs, that load alone made migrations slower.
type portWatch struct {
	host string
	vm   VM
	h    *notify.Handle
}

func (l *Lab) watchPort(host string, v VM) (*portWatch, error) {
	h, err := notify.Open(l.notifySocket(host))
	if err != nil {
		return nil, fmt.Errorf("open the notification API of %s: %w", host, err)
	}
	return &portWatch{host: host, vm: v, h: h}, nil
}

// wait waits until the host has attached the port, or timeout passes.
func (w *portWatch) wait(ctx context.Context, l *Lab, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for ev, err := range w.h.Events(ctx, notify.ObjectChangeType) {
		var over *notify.OverflowError
		if errors.As(err, &over) {
			// Events were dropped: the attachment may be among them.
			if ports, err := l.Client(w.host).Ports(ctx); err == nil && slices.ContainsFunc(ports, func(p provider.Port) bool { return p.Name == w.vm.Name }) {
				return nil
			}
			continue
		}
		if err != nil {
			break
		}
		if ev.ObjectChange == nil {
			continue
		}
		ca := ev.ObjectChange.CustomerAddress
		if ca != nil && ca.NotificationReason == notify.CustomerAddressAdded && ca.MACAddress == w.vm.MAC && slices.Contains(w.vm.CAs(), ca.CA) {
			return nil
		}
	}
	return fmt.Errorf("%s did not attach the port of %s within %v after the migration; see %s", w.host, w.vm.Name, timeout, l.logPath(w.host))
}

func (w *portWatch) close() { w.h.Close() }
