// Package lab builds a multi-host wnv test network out of Linux network
// namespaces on one machine: an underlay bridge with the policy server on it,
// one namespace per host running `wnvd host` with its agent, and per VM either
// a namespace whose eth0 is a veth to its host's switch or a real QEMU guest
// whose TAP is the port. VMs are created at the policy server (or, in the
// Static mode, policy is provisioned through each host's provider API); the
// probe tool checks reachability and measures live migrations.
package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// Topology is a whole lab as data: the namespace prefix, the underlay and the
// tenants, hosts and VMs on it.
type Topology struct {
	// Prefix is prepended to every namespace name ("wnv-" gives wnv-host1);
	// tests use a unique prefix so they never collide with a running lab.
	Prefix string
	// UnderlayMTU is the MTU of every host's underlay link.
	UnderlayMTU int
	// Static provisions policy on every host through its provider API, as
	// an admin script would, and runs no policy server or host agents. Tests
	// that edit a host's records directly need it: an agent would reconcile
	// their edits away.
	Static bool
	// RemoteAPI has every host serve its provider API on TCP with mutual
	// TLS too, reachable by the host's name from the other hosts'
	// namespaces and, at its management address, from the policy server's,
	// which traces through it (see lab/remoteapi.go).
	RemoteAPI bool
	// Unprovisioned leaves a Static lab's policy and ports to the caller:
	// Up starts the hosts and the VMs' namespaces and provisions nothing.
	Unprovisioned bool
	// PolicyServer is the policy server's address on the underlay bridge
	// (with the underlay's prefix length) unless Static.
	PolicyServer netip.Prefix
	Tenants      []Tenant
	Hosts        []Host
	VMs          []VM
	// Edge, if set, adds the outside network and edge gateways (WithEdge).
	Edge *Edge `json:",omitempty"`
}

// Tenant is one customer network: a routing domain and its virtual subnets.
type Tenant struct {
	Name            string
	CustomerID      string // GUID
	RoutingDomainID string // GUID
	Subnets         []Subnet
}

// Subnet is a virtual subnet with one IPv4 and one IPv6 prefix. With
// RewriteV4 and RewriteV6 set it uses IP Rewrite (Rule Nat): they are its
// pools of provider addresses, one per CA of its VMs (see RewritePAs).
type Subnet struct {
	VSID      policy.VSID
	V4        netip.Prefix
	V6        netip.Prefix
	RewriteV4 netip.Prefix `json:",omitzero"`
	RewriteV6 netip.Prefix `json:",omitzero"`
}

// Nat reports whether the subnet uses IP Rewrite.
func (s Subnet) Nat() bool { return s.RewriteV4.IsValid() }

// Host is one hypervisor: a namespace running wnvd with one provider address
// on its underlay link.
type Host struct {
	Name string
	PA   netip.Prefix // address and underlay prefix length
}

// VM is a namespace whose eth0 is a port on its host's switch or, with QEMU,
// a real guest whose virtio NIC's TAP is that port.
type VM struct {
	Name   string
	Tenant string
	Host   string
	VSID   policy.VSID
	MAC    packet.MAC
	V4, V6 netip.Addr
	QEMU   bool `json:",omitempty"`
}

// CAs returns the VM's customer addresses, IPv4 first.
func (v VM) CAs() []netip.Addr { return []netip.Addr{v.V4, v.V6} }

// Default returns the topology the docs and tests rely on: Blue (VSIDs 5001
// and 5002), Red (VSID 6001) and Green (VSID 7001, IP Rewrite, with Red's
// CAs) on three hosts.
func Default() Topology {
	blue := Tenant{
		Name:            "Blue",
		CustomerID:      "{b1b1b1b1-0000-4000-8000-000000000001}",
		RoutingDomainID: "{b1b1b1b1-0000-4000-8000-0000000000d1}",
		Subnets: []Subnet{
			{VSID: 5001, V4: pfx("10.0.0.0/24"), V6: pfx("fd00:0:0:1::/64")},
			{VSID: 5002, V4: pfx("10.0.1.0/24"), V6: pfx("fd00:0:0:2::/64")},
		},
	}
	red := Tenant{
		Name:            "Red",
		CustomerID:      "{4ed4ed4e-0000-4000-8000-000000000002}",
		RoutingDomainID: "{4ed4ed4e-0000-4000-8000-0000000000d2}",
		Subnets: []Subnet{
			{VSID: 6001, V4: pfx("10.0.0.0/24"), V6: pfx("fd00:0:0:1::/64")},
		},
	}
	// Green's VMs cross the underlay with their CAs rewritten to PAs of
	// their own, from pools on the underlay's link (198.18.0.0/15) that
	// hold no host's PA.
	green := Tenant{
		Name:            "Green",
		CustomerID:      "{9ee99ee9-0000-4000-8000-000000000003}",
		RoutingDomainID: "{9ee99ee9-0000-4000-8000-0000000000d3}",
		Subnets: []Subnet{
			{VSID: 7001, V4: pfx("10.0.0.0/24"), V6: pfx("fd00:0:0:1::/64"), RewriteV4: pfx("198.18.64.0/24"), RewriteV6: pfx("fd01:0:0:64::/64")},
		},
	}
	return Topology{
		Prefix:       "wnv-",
		UnderlayMTU:  1500,
		PolicyServer: pfx("198.18.0.254/15"),
		RemoteAPI:    true,
		Tenants:      []Tenant{blue, red, green},
		Hosts: []Host{
			{Name: "host1", PA: pfx("198.18.0.1/15")},
			{Name: "host2", PA: pfx("198.18.0.2/15")},
			{Name: "host3", PA: pfx("198.18.0.3/15")},
		},
		VMs: []VM{
			vm("blue1", "Blue", "host1", 5001, "02:00:00:00:50:01", "10.0.0.10", "fd00:0:0:1::10"),
			vm("red1", "Red", "host1", 6001, "02:00:00:00:60:01", "10.0.0.10", "fd00:0:0:1::10"),
			vm("blue2", "Blue", "host2", 5001, "02:00:00:00:50:02", "10.0.0.11", "fd00:0:0:1::11"),
			vm("blue3", "Blue", "host3", 5002, "02:00:00:00:50:03", "10.0.1.10", "fd00:0:0:2::10"),
			vm("red2", "Red", "host3", 6001, "02:00:00:00:60:02", "10.0.0.11", "fd00:0:0:1::11"),
			vm("green1", "Green", "host1", 7001, "02:00:00:00:70:01", "10.0.0.10", "fd00:0:0:1::10"),
			vm("green2", "Green", "host3", 7001, "02:00:00:00:70:02", "10.0.0.11", "fd00:0:0:1::11"),
		},
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func vm(name, tenant, host string, vsid policy.VSID, mac, v4, v6 string) VM {
	m, err := packet.ParseMAC(mac)
	if err != nil {
		panic(err)
	}
	return VM{Name: name, Tenant: tenant, Host: host, VSID: vsid, MAC: m,
		V4: netip.MustParseAddr(v4), V6: netip.MustParseAddr(v6)}
}

// Validate checks the cross references a lab needs before it touches the
// system: every VM names a known host, tenant and subnet, its CAs lie in that
// subnet, and names fit in the namespace and interface name limits.
func (t Topology) Validate() error {
	if t.Prefix == "" {
		return fmt.Errorf("topology Prefix is empty: namespaces need a prefix such as wnv-")
	}
	if t.UnderlayMTU < 1280+62 {
		return fmt.Errorf("topology UnderlayMTU %d is too small: use at least 1342 so VMs keep an IPv6 MTU of 1280", t.UnderlayMTU)
	}
	if !t.Static && (!t.PolicyServer.IsValid() || t.PolicyServer.Addr() == t.PolicyServer.Masked().Addr()) {
		return fmt.Errorf("topology PolicyServer %v is not a host address with a prefix length: use e.g. 198.18.0.254/15, or set Static", t.PolicyServer)
	}
	if t.Edge != nil && t.Static {
		return fmt.Errorf("topology Edge needs the policy server, which provisions the gateways: unset Static")
	}
	if t.Unprovisioned && !t.Static {
		return fmt.Errorf("topology Unprovisioned needs Static: with a policy server the agents provision the hosts")
	}
	if t.RemoteAPI && len(t.Hosts) > 253 {
		return fmt.Errorf("topology RemoteAPI gives hosts management addresses in 192.0.2.0/24 (the policy server .254): at most 253 hosts, not %d", len(t.Hosts))
	}
	for _, tn := range t.Tenants {
		for _, sn := range tn.Subnets {
			if err := t.checkRewrite(sn); err != nil {
				return err
			}
		}
	}
	names := map[string]bool{"underlay": true, ExternalName: true}
	for _, h := range t.Hosts {
		if names[h.Name] {
			return fmt.Errorf("host name %q is used twice: every host and VM needs its own namespace", h.Name)
		}
		names[h.Name] = true
		if !h.PA.IsValid() || h.PA.Addr() == h.PA.Masked().Addr() {
			return fmt.Errorf("host %s PA %v is not a host address with a prefix length: use e.g. 198.18.0.1/15", h.Name, h.PA)
		}
		if !t.Static && h.PA.Addr() == t.PolicyServer.Addr() {
			return fmt.Errorf("host %s PA %v is the policy server's address: give the server another one", h.Name, h.PA.Addr())
		}
		if len(h.Name) > 10 {
			return fmt.Errorf("host name %q is longer than 10 characters: it names the underlay veth", h.Name)
		}
	}
	for _, v := range t.VMs {
		if names[v.Name] {
			return fmt.Errorf("VM name %q is used twice: every host and VM needs its own namespace", v.Name)
		}
		names[v.Name] = true
		if len(v.Name) > 11 {
			return fmt.Errorf("VM name %q is longer than 11 characters: it names the TAP device tap-NAME", v.Name)
		}
		if _, ok := t.host(v.Host); !ok {
			return fmt.Errorf("VM %s host %q is not in the topology", v.Name, v.Host)
		}
		sn, ok := t.subnet(v.Tenant, v.VSID)
		if !ok {
			return fmt.Errorf("VM %s VirtualSubnetID %d is not a subnet of tenant %q", v.Name, v.VSID, v.Tenant)
		}
		if !sn.V4.Contains(v.V4) || !sn.V6.Contains(v.V6) {
			return fmt.Errorf("VM %s CAs %v and %v must lie in its subnet's prefixes %v and %v", v.Name, v.V4, v.V6, sn.V4, sn.V6)
		}
	}
	return nil
}

// WithQEMU returns the topology with the named VMs run as QEMU guests.
func (t Topology) WithQEMU(names ...string) (Topology, error) {
	vms := append([]VM(nil), t.VMs...)
	for _, n := range names {
		i := slices.IndexFunc(vms, func(v VM) bool { return v.Name == n })
		if i < 0 {
			all := make([]string, len(vms))
			for j, v := range vms {
				all[j] = v.Name
			}
			return t, fmt.Errorf("%q is not a VM of the lab: use one of %s", n, strings.Join(all, ", "))
		}
		vms[i].QEMU = true
	}
	t.VMs = vms
	return t, nil
}

// QEMUVMs are the VMs that run as QEMU guests.
func (t Topology) QEMUVMs() []VM {
	var vs []VM
	for _, v := range t.VMs {
		if v.QEMU {
			vs = append(vs, v)
		}
	}
	return vs
}

func (t Topology) host(name string) (Host, bool) {
	for _, h := range t.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

func (t Topology) tenant(name string) (Tenant, bool) {
	for _, tn := range t.Tenants {
		if tn.Name == name {
			return tn, true
		}
	}
	return Tenant{}, false
}

func (t Topology) subnet(tenant string, vsid policy.VSID) (Subnet, bool) {
	tn, ok := t.tenant(tenant)
	if !ok {
		return Subnet{}, false
	}
	for _, s := range tn.Subnets {
		if s.VSID == vsid {
			return s, true
		}
	}
	return Subnet{}, false
}

// VM returns the VM called name.
func (t Topology) VM(name string) (VM, bool) {
	for _, v := range t.VMs {
		if v.Name == name {
			return v, true
		}
	}
	return VM{}, false
}

// Namespace is the namespace name of a host, VM or "underlay".
func (t Topology) Namespace(name string) string { return t.Prefix + name }

// PortMTU is the MTU a VM gets: the underlay MTU minus the NVGRE overhead of
// the host's PA family (42 bytes over IPv4, 62 over IPv6).
func (t Topology) PortMTU(v VM) int {
	h, _ := t.host(v.Host)
	if h.PA.Addr().Is4() {
		return t.UnderlayMTU - 42
	}
	return t.UnderlayMTU - 62
}

// Gateway is the virtual gateway of the prefix: its first host address.
func Gateway(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// Expect says which VM should answer a probe from src to addr: the VM of src's
// routing domain that owns addr, "" when nothing may answer, and self=true
// when addr is src's own CA (the probe is skipped).
func (t Topology) Expect(src VM, addr netip.Addr) (responder string, self bool) {
	if src.V4 == addr || src.V6 == addr {
		return src.Name, true
	}
	for _, v := range t.VMs {
		if v.Tenant == src.Tenant && (v.V4 == addr || v.V6 == addr) {
			return v.Name, false
		}
	}
	return "", false
}
