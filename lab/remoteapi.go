package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/pki"
)

// With Topology.RemoteAPI every host serves its provider API on TCP with
// mutual TLS as well (wnvd host --api-listen), at a management address on
// its underlay link, and every host namespace resolves the other hosts by
// name (/etc/netns/<namespace>/hosts, which ip netns exec mounts over
// /etc/hosts): what the original cmdlets' -CimSession reaches. The
// management addresses are outside the PA prefix, so a host is reachable
// before it has a PA.

// remoteAPIPort is the port of every host's remote provider API.
const remoteAPIPort = 8450

// serverMgmtAddr is the policy server's management address, on the
// underlay bridge.
var serverMgmtAddr = netip.MustParsePrefix("192.0.2.254/24")

// MgmtAddr is host's management address: 192.0.2.<n>/24, n its position in
// the topology from 1.
func (t Topology) MgmtAddr(host string) netip.Prefix {
	for i, h := range t.Hosts {
		if h.Name == host {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 24)
		}
	}
	return netip.Prefix{}
}

// addMgmtAddress puts the host's management address on its underlay link.
func (t Topology) addMgmtAddress(hh *netlink.Handle, h Host) error {
	ul, err := hh.LinkByName("ul0")
	if err != nil {
		return err
	}
	p := t.MgmtAddr(h.Name)
	if err := hh.AddrAdd(ul, &netlink.Addr{IPNet: dataplane.IPNet(p)}); err != nil {
		return fmt.Errorf("host %s: add management address %v: %w", h.Name, p, err)
	}
	return nil
}

// netnsEtc is the directory ip netns exec mounts over /etc for ns.
func netnsEtc(ns string) string { return filepath.Join("/etc/netns", ns) }

// writeHostsFiles lets every host namespace resolve the hosts by name.
func (l *Lab) writeHostsFiles() error {
	t := l.Topology
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n::1 localhost\n")
	for _, h := range t.Hosts {
		fmt.Fprintf(&b, "%s %s\n", t.MgmtAddr(h.Name).Addr(), h.Name)
	}
	for _, h := range t.Hosts {
		dir := netnsEtc(t.Namespace(h.Name))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// issueLocalCredentials gives a Static lab a CA of its own and issues the
// admin credential and each host's credential (naming its PA) from it; a
// lab with a policy server has its CA there.
func (l *Lab) issueLocalCredentials() error {
	ca, _, err := pki.NewCA("wnv lab CA", time.Now())
	if err != nil {
		return err
	}
	issue := func(r pki.Request, dir string) error {
		_, cert, key, err := ca.IssueKey(r, time.Now())
		if err != nil {
			return err
		}
		return pki.WriteCredentials(dir, ca.PEM, cert, key)
	}
	if err := issue(pki.Request{Role: pki.Admin, Name: "lab-admin"}, l.AdminCredentials()); err != nil {
		return err
	}
	for _, h := range l.Topology.Hosts {
		if err := issue(pki.Request{Role: pki.Host, Name: h.Name, ProviderAddresses: []netip.Addr{h.PA.Addr()}}, l.HostCredentials(h.Name)); err != nil {
			return err
		}
	}
	return nil
}

// apiArgs are wnvd's flags for the remote provider API of host.
func (l *Lab) apiArgs(host string) []string {
	if !l.Topology.RemoteAPI {
		return nil
	}
	return []string{"--api-listen", netip.AddrPortFrom(l.Topology.MgmtAddr(host).Addr(), remoteAPIPort).String(),
		"--api-credentials", l.HostCredentials(host)}
}

// RemoteWnvctl runs wnvctl in the namespace of host from with the lab's
// admin credential against the remote provider API of host to, as an
// administrator's script on one machine manages the others, and returns
// its output; a failure's error carries the output.
func (l *Lab) RemoteWnvctl(ctx context.Context, from, to string, args ...string) (string, error) {
	if !l.Topology.RemoteAPI {
		return "", fmt.Errorf("the lab's hosts serve no remote provider API: set Topology.RemoteAPI")
	}
	argv := append([]string{"netns", "exec", l.Topology.Namespace(from), l.Wnvctl,
		"--host", fmt.Sprintf("%s:%d", to, remoteAPIPort), "--credentials", l.AdminCredentials()}, args...)
	out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("wnvctl --host %s %s: %v: %s", to, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
