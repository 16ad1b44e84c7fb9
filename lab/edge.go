package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// ExternalName names the lab's outside network namespace: a corporate
// network stand-in with a server (a probe responder named "external").
const ExternalName = "external"

// Edge is the lab's outside network and the tenants' edge gateways to it:
// the external namespace, linked by a veth (ext0 on the gateway host, eth0
// in external) to Host, whose wnvd builds Gateways.
type Edge struct {
	Host      string
	Addresses []netip.Prefix // the external namespace's (router and server)
	Gateways  []EdgeGateway
}

// EdgeGateway is one tenant's edge gateway on the gateway host.
type EdgeGateway struct {
	Name     string
	Tenant   string
	VSID     policy.VSID
	MAC      packet.MAC
	V4, V6   netip.Addr
	Mode     policyapi.GatewayMode
	External []netip.Prefix // its addresses on the outside network
}

// WithEdge returns the topology with a gateway host (gwhost) and the
// external namespace behind it: Blue reaches it through a forwarding
// gateway (and the outside reaches Blue's VMs), Red and Green (the same
// CAs; Green on IP Rewrite) each through a NAT gateway of its own.
func (t Topology) WithEdge() Topology {
	t.Hosts = append(append([]Host(nil), t.Hosts...), Host{Name: "gwhost", PA: pfx("198.18.0.4/15")})
	mac := func(s string) packet.MAC { m, _ := packet.ParseMAC(s); return m }
	t.Edge = &Edge{
		Host:      "gwhost",
		Addresses: []netip.Prefix{pfx("203.0.113.1/24"), pfx("2001:db8:e::1/64")},
		Gateways: []EdgeGateway{
			{Name: "blue-gw", Tenant: "Blue", VSID: 5001, MAC: mac("02:00:00:00:50:fe"), V4: netip.MustParseAddr("10.0.0.254"), V6: netip.MustParseAddr("fd00:0:0:1::fe"),
				Mode: policyapi.GatewayForward, External: []netip.Prefix{pfx("203.0.113.2/24"), pfx("2001:db8:e::2/64")}},
			{Name: "red-gw", Tenant: "Red", VSID: 6001, MAC: mac("02:00:00:00:60:fe"), V4: netip.MustParseAddr("10.0.0.254"), V6: netip.MustParseAddr("fd00:0:0:1::fe"),
				Mode: policyapi.GatewayNAT, External: []netip.Prefix{pfx("203.0.113.3/24"), pfx("2001:db8:e::3/64")}},
			{Name: "green-gw", Tenant: "Green", VSID: 7001, MAC: mac("02:00:00:00:70:fe"), V4: netip.MustParseAddr("10.0.0.254"), V6: netip.MustParseAddr("fd00:0:0:1::fe"),
				Mode: policyapi.GatewayNAT, External: []netip.Prefix{pfx("203.0.113.4/24"), pfx("2001:db8:e::4/64")}},
		},
	}
	return t
}

// edgeArgs are the wnvd flags of the gateway host.
func (l *Lab) edgeArgs(host string) []string {
	t := l.Topology
	if t.Edge == nil || t.Edge.Host != host {
		return nil
	}
	return []string{"--edge-gateways", "--edge-namespace-prefix", t.Prefix + "gw-"}
}

// buildExternal creates the external namespace, its link to the gateway
// host and its routes to the prefixes of the tenants with a forwarding
// gateway.
func (l *Lab) buildExternal() error {
	t := l.Topology
	e := t.Edge
	h, err := createNamespace(t.Namespace(ExternalName))
	if err != nil {
		return err
	}
	defer h.Close()
	gh, err := handleAt(t.Namespace(e.Host))
	if err != nil {
		return err
	}
	defer gh.Close()
	nsh, err := netns.GetFromName(t.Namespace(ExternalName))
	if err != nil {
		return err
	}
	defer nsh.Close()
	if err := gh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ext0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(nsh))}); err != nil {
		return fmt.Errorf("create veth %s/ext0 <-> external/eth0: %w", e.Host, err)
	}
	setSysctl(t.Namespace(e.Host), "net.ipv6.conf.ext0.disable_ipv6", "1")
	ext0, err := gh.LinkByName("ext0")
	if err == nil {
		err = gh.LinkSetUp(ext0)
	}
	if err != nil {
		return fmt.Errorf("bring up ext0 on %s: %w", e.Host, err)
	}
	eth, err := h.LinkByName("eth0")
	if err == nil {
		err = h.LinkSetUp(eth)
	}
	if err != nil {
		return fmt.Errorf("bring up eth0 in external: %w", err)
	}
	for _, a := range e.Addresses {
		if err := dataplane.AddAddrNoDAD(h, eth, a); err != nil {
			return err
		}
	}
	for _, g := range e.Gateways {
		if g.Mode != policyapi.GatewayForward {
			continue
		}
		tn, _ := t.tenant(g.Tenant)
		for _, sn := range tn.Subnets {
			for _, p := range []netip.Prefix{sn.V4, sn.V6} {
				for _, via := range g.External {
					if via.Addr().Is4() == p.Addr().Is4() {
						if err := h.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: dataplane.IPNet(p.Masked()), Gw: via.Addr().AsSlice()}); err != nil {
							return fmt.Errorf("external: route %v via %v: %w", p, via.Addr(), err)
						}
					}
				}
			}
		}
	}
	return nil
}

// provisionEdge creates the edge gateways at the policy server (the
// gateway host's agent builds them) and starts the external server.
func (l *Lab) provisionEdge(ctx context.Context) error {
	t := l.Topology
	for _, g := range t.Edge.Gateways {
		var gws []netip.Addr
		for _, a := range t.Edge.Addresses {
			gws = append(gws, a.Addr())
		}
		_, err := l.Server().CreateGateway(ctx, policyapi.Gateway{Name: g.Name, VirtualSubnetID: g.VSID, MACAddress: g.MAC,
			CustomerAddress: g.V4, CustomerAddress6: g.V6, Host: t.Edge.Host, Mode: g.Mode, ExternalInterface: "ext0",
			ExternalAddresses: g.External, ExternalGateways: gws})
		if err != nil {
			return fmt.Errorf("policy server: create gateway %s: %w", g.Name, err)
		}
	}
	return l.spawn("probe-"+ExternalName, t.Namespace(ExternalName), l.Wnvctl, "probe", "serve", "--name", ExternalName)
}

// printEdge probes through the edge gateways: each tenant's first VM to
// the external server (IPv4 and IPv6), and the server to the VMs of
// tenants with a forwarding gateway. It returns the number of failures.
func (l *Lab) printEdge(ctx context.Context, w io.Writer) int {
	t := l.Topology
	type check struct {
		from string
		to   netip.Addr
		want string
		via  string
		skip string // why it is not probed
	}
	var checks []check
	gwPA, _ := t.host(t.Edge.Host)
	for _, g := range t.Edge.Gateways {
		sn, _ := t.subnet(g.Tenant, g.VSID)
		for _, v := range t.VMs {
			if v.Tenant != g.Tenant || v.QEMU {
				continue
			}
			for _, a := range t.Edge.Addresses {
				if sn.Nat() && a.Addr().Is4() != gwPA.PA.Addr().Is4() {
					// An IP Rewrite CA's PA is of the CA's family: the
					// gateway host tunnels to it only from a PA of that
					// family, which gwhost lacks.
					checks = append(checks, check{from: v.Name, to: a.Addr(), via: fmt.Sprintf("%s (%s)", g.Name, g.Mode),
						skip: fmt.Sprintf("IP Rewrite PA of another family than %s's PA %v", t.Edge.Host, gwPA.PA.Addr())})
					continue
				}
				checks = append(checks, check{from: v.Name, to: a.Addr(), want: ExternalName, via: fmt.Sprintf("%s (%s)", g.Name, g.Mode)})
			}
			if g.Mode == policyapi.GatewayForward {
				checks = append(checks, check{from: ExternalName, to: v.V4, want: v.Name, via: g.Name}, check{from: ExternalName, to: v.V6, want: v.Name, via: g.Name})
			}
			break
		}
	}
	failed := 0
	for _, c := range checks {
		if c.skip != "" {
			fmt.Fprintf(w, "%-8s -> %-16v via %-18s skipped: %s\n", c.from, c.to, c.via, c.skip)
			continue
		}
		rep, ok, err := l.ProbeUDP(ctx, c.from, c.to, netip.Addr{}, 10, 500*time.Millisecond)
		verdict := "ok"
		if err != nil || !ok || rep.Responder != c.want {
			verdict, failed = "FAIL", failed+1
		}
		fmt.Fprintf(w, "%-8s -> %-16v via %-18s answered by %-8s %s\n", c.from, c.to, c.via, orNone(rep.Responder), verdict)
	}
	return failed
}
