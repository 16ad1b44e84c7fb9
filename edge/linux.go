package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/wnv/wnv/dataplane"
)

// netnsDir is where iproute2 (and netns.NewNamed) keep named namespaces.
const netnsDir = "/run/netns"

// Linux builds gateways as network namespaces named Prefix + gateway name,
// from the namespace it runs in (wnvd's). It owns every namespace with
// Prefix: those no spec wants are removed.
//
// A named namespace is a mount (iproute2's, under /run/netns) that keeps it
// alive. MountNamespace, when set, is the mount namespace to add and remove
// those mounts in, through nsenter: a wnvd started by `ip netns exec` (as the
// lab does) runs in a private mount namespace whose mounts would die with
// it, and with them its gateways; "/proc/1/ns/mnt" is the machine's.
type Linux struct {
	Prefix         string
	MountNamespace string
}

// Reconcile makes the host's gateways those of want: it removes the
// namespaces of gateways no longer wanted (their ports' veths go with
// them) and builds or completes each wanted one. Building is idempotent and
// leaves what exists in place, so a restarted wnvd adopts its gateways
// without a blip: their links, addresses, routes and connection tracking
// stay.
func (l *Linux) Reconcile(ctx context.Context, want []Spec) error {
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s.Namespace] = true
	}
	var errs []error
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, l.Prefix) && !wanted[n] {
			if err := l.ipNetns("del", n); err != nil {
				errs = append(errs, fmt.Errorf("remove gateway namespace %s: %w", n, err))
			}
		}
	}
	for _, s := range want {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := l.build(s); err != nil {
			errs = append(errs, fmt.Errorf("gateway %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (l *Linux) build(s Spec) error {
	ns, err := netns.GetFromName(s.Namespace)
	if err != nil {
		if err := l.ipNetns("add", s.Namespace); err != nil {
			return fmt.Errorf("create network namespace %s: %w", s.Namespace, err)
		}
		if ns, err = netns.GetFromName(s.Namespace); err != nil {
			return fmt.Errorf("open network namespace %s: %w", s.Namespace, err)
		}
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in namespace %s: %w", s.Namespace, err)
	}
	defer nh.Close()
	if lo, err := nh.LinkByName("lo"); err != nil || nh.LinkSetUp(lo) != nil {
		return fmt.Errorf("bring up lo in %s", s.Namespace)
	}
	tenant, err := tenantLink(nh, ns, s)
	if err != nil {
		return err
	}
	external, err := externalLink(nh, ns, s)
	if err != nil {
		return err
	}
	if err := sysctls(ns, s); err != nil {
		return err
	}
	for _, a := range s.Addresses {
		if err := dataplane.AddAddrNoDAD(nh, tenant, a); err != nil {
			return err
		}
	}
	for _, a := range s.ExternalAddresses {
		if err := dataplane.AddAddrNoDAD(nh, external, a); err != nil {
			return err
		}
	}
	for _, l := range []netlink.Link{tenant, external} {
		if err := nh.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring up %s in %s: %w", l.Attrs().Name, s.Namespace, err)
		}
	}
	for _, r := range s.Routes {
		rt := &netlink.Route{LinkIndex: tenant.Attrs().Index, Dst: dataplane.IPNet(r.Prefix), Gw: r.Via.AsSlice()}
		if err := nh.RouteReplace(rt); err != nil {
			return fmt.Errorf("route %s via %s on %s in %s: %w", r.Prefix, r.Via, TenantLink, s.Namespace, err)
		}
	}
	for _, gw := range s.ExternalGateways {
		rt := &netlink.Route{LinkIndex: external.Attrs().Index, Dst: dataplane.IPNet(netip.PrefixFrom(unspecified(gw), 0)), Gw: gw.AsSlice()}
		if err := nh.RouteReplace(rt); err != nil {
			return fmt.Errorf("default route via %s on %s in %s: %w", gw, ExternalLink, s.Namespace, err)
		}
	}
	return nft(s)
}

// ipNetns runs `ip netns add|del name`, in MountNamespace if set.
func (l *Linux) ipNetns(op, name string) error {
	argv := []string{"ip", "netns", op, name}
	if l.MountNamespace != "" {
		argv = append([]string{"nsenter", "--mount=" + l.MountNamespace, "--"}, argv...)
	}
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// tenantLink returns the namespace's tenant interface, creating its veth
// (the port end in wnvd's namespace) if it is missing, and gives it the
// gateway's MAC and MTU.
func tenantLink(nh *netlink.Handle, ns netns.NsHandle, s Spec) (netlink.Link, error) {
	l, err := nh.LinkByName(TenantLink)
	if err != nil {
		if old, err := netlink.LinkByName(s.Port); err == nil {
			// A port end left without its namespace end: start over.
			netlink.LinkDel(old)
		}
		v := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: s.Port, MTU: s.MTU}, PeerName: TenantLink, PeerMTU: uint32(s.MTU),
			PeerHardwareAddr: net.HardwareAddr(s.MAC[:]), PeerNamespace: netlink.NsFd(int(ns)),
		}
		if err := netlink.LinkAdd(v); err != nil {
			return nil, fmt.Errorf("create veth %s <-> %s/%s: %w", s.Port, s.Namespace, TenantLink, err)
		}
		if l, err = nh.LinkByName(TenantLink); err != nil {
			return nil, fmt.Errorf("find %s in %s: %w", TenantLink, s.Namespace, err)
		}
	}
	if string(l.Attrs().HardwareAddr) != string(s.MAC[:]) {
		if err := nh.LinkSetHardwareAddr(l, net.HardwareAddr(s.MAC[:])); err != nil {
			return nil, fmt.Errorf("set MAC %s on %s in %s: %w", s.MAC, TenantLink, s.Namespace, err)
		}
	}
	if l.Attrs().MTU != s.MTU {
		if err := nh.LinkSetMTU(l, s.MTU); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s in %s: %w", s.MTU, TenantLink, s.Namespace, err)
		}
	}
	port, err := netlink.LinkByName(s.Port)
	if err != nil {
		return nil, fmt.Errorf("find the port end %s: %w", s.Port, err)
	}
	// The port carries tenant traffic only: the host itself speaks no IPv6
	// (router or neighbour solicitations) into the virtual subnet.
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", s.Port, "disable_ipv6"), []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("disable IPv6 on %s: %w", s.Port, err)
	}
	if port.Attrs().MTU != s.MTU {
		if err := netlink.LinkSetMTU(port, s.MTU); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", s.MTU, s.Port, err)
		}
	}
	if err := netlink.LinkSetUp(port); err != nil {
		return nil, fmt.Errorf("bring up %s: %w", s.Port, err)
	}
	return l, nil
}

// externalLink returns the namespace's external interface, creating it as
// a macvlan (bridge mode: gateways of one host reach each other) of the
// host's external interface if it is missing.
func externalLink(nh *netlink.Handle, ns netns.NsHandle, s Spec) (netlink.Link, error) {
	if l, err := nh.LinkByName(ExternalLink); err == nil {
		return l, nil
	}
	parent, err := netlink.LinkByName(s.ExternalInterface)
	if err != nil {
		return nil, fmt.Errorf("ExternalInterface %s is not an interface of this host: %w", s.ExternalInterface, err)
	}
	if err := netlink.LinkSetUp(parent); err != nil {
		return nil, fmt.Errorf("bring up %s: %w", s.ExternalInterface, err)
	}
	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: ExternalLink, ParentIndex: parent.Attrs().Index, Namespace: netlink.NsFd(int(ns))},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}
	if err := netlink.LinkAdd(mv); err != nil {
		return nil, fmt.Errorf("create macvlan %s/%s of %s: %w", s.Namespace, ExternalLink, s.ExternalInterface, err)
	}
	l, err := nh.LinkByName(ExternalLink)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", ExternalLink, s.Namespace, err)
	}
	return l, nil
}

// sysctls make the namespace a router whose addresses are usable at once.
func sysctls(ns netns.NsHandle, s Spec) error {
	keys := [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv6/conf/all/forwarding", "1"},
		{"net/ipv6/conf/" + TenantLink + "/accept_dad", "0"},
		{"net/ipv6/conf/" + ExternalLink + "/accept_dad", "0"},
	}
	return inNamespace(ns, func() error {
		for _, kv := range keys {
			if err := os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0o644); err != nil {
				return fmt.Errorf("set %s=%s in %s: %w", strings.ReplaceAll(kv[0], "/", "."), kv[1], s.Namespace, err)
			}
		}
		return nil
	})
}

// inNamespace runs fn on an OS thread switched into ns (/proc/sys/net
// shows the namespace of the thread that opens it).
func inNamespace(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter a gateway namespace: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the goroutine's exit retires it.
		return fmt.Errorf("return from a gateway namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// nft replaces the namespace's nftables table with s.Script.
func nft(s Spec) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("the nft command is not installed: edge gateways need nftables (run 'make deps' or apt-get install nftables)")
	}
	cmd := exec.Command("ip", "netns", "exec", s.Namespace, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(s.Script())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", s.Namespace, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}
