// Package edge builds edge gateways on a gateway host: for each gateway a
// network namespace whose "tenant" interface joins the gateway's virtual
// subnet (the other end of its veth, gw-NAME in wnvd's namespace, is the
// gateway's port) and whose "external" interface (a macvlan of the host's
// interface on the outside network) reaches the non-virtualized network.
// The namespace routes between the two: in forwarding mode both ways, in
// NAT mode outbound only, masqueraded behind its external addresses by
// nftables. A namespace per gateway keeps tenants with overlapping customer
// addresses apart on one host (this kernel has no VRF).
//
// Spec and Script are pure; Linux (linux.go) is the shell that builds and
// removes the namespaces, adopting what exists after a restart.
package edge

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/wnv/wnv/packet"
)

// Names of the gateway namespace's interfaces.
const (
	TenantLink   = "tenant"
	ExternalLink = "external"
)

// PortPrefix starts the name of a gateway's port: gw-NAME.
const PortPrefix = "gw-"

// Spec is one gateway as the host builds it.
type Spec struct {
	// Name is the gateway's name at the policy server.
	Name string
	// Namespace is its network namespace.
	Namespace string
	// Port is the host end of the tenant veth, in wnvd's namespace: the
	// gateway's port (PortPrefix + Name).
	Port string
	// MAC is the gateway's MAC, on the tenant interface; MTU that
	// interface's (and its port's) MTU.
	MAC packet.MAC
	MTU int
	// NAT masquerades outbound connections and refuses inbound ones;
	// otherwise the namespace forwards both ways.
	NAT bool
	// Addresses are the gateway's customer addresses with the prefix
	// length of their subnet.
	Addresses []netip.Prefix
	// Routes reach the routing domain's other subnets through the
	// gateway's own subnet's virtual gateway.
	Routes []Route
	// ExternalInterface is the host's interface on the outside network;
	// ExternalAddresses (one per family) and default routes via
	// ExternalGateways (optional, one per family) go on the namespace's
	// macvlan of it.
	ExternalInterface string
	ExternalAddresses []netip.Prefix
	ExternalGateways  []netip.Addr
}

// Route is a route of the gateway namespace towards the virtual network.
type Route struct {
	Prefix netip.Prefix
	Via    netip.Addr
}

// Equal reports whether two specs build the same gateway.
func (s Spec) Equal(o Spec) bool {
	return s.Name == o.Name && s.Namespace == o.Namespace && s.Port == o.Port && s.MAC == o.MAC && s.MTU == o.MTU &&
		s.NAT == o.NAT && slices.Equal(s.Addresses, o.Addresses) && slices.Equal(s.Routes, o.Routes) &&
		s.ExternalInterface == o.ExternalInterface && slices.Equal(s.ExternalAddresses, o.ExternalAddresses) &&
		slices.Equal(s.ExternalGateways, o.ExternalGateways)
}

// Table is the nftables table of a gateway namespace.
const Table = "wnv-gateway"

// Script is the nft script that replaces the namespace's table atomically:
// a forward filter that passes only tenant <-> external traffic (NAT: only
// connections the tenant side opened come back in) and, for NAT, the
// masquerade of everything leaving on the external interface.
func (s Spec) Script() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", Table, Table, Table)
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n")
	fmt.Fprintf(&b, "\t\tiifname %q oifname %q accept\n", TenantLink, ExternalLink)
	if s.NAT {
		fmt.Fprintf(&b, "\t\tiifname %q oifname %q ct state established,related accept\n", ExternalLink, TenantLink)
	} else {
		fmt.Fprintf(&b, "\t\tiifname %q oifname %q accept\n", ExternalLink, TenantLink)
	}
	b.WriteString("\t}\n")
	if s.NAT {
		fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		fmt.Fprintf(&b, "\t\toifname %q masquerade\n\t}\n", ExternalLink)
	}
	b.WriteString("}\n")
	return b.String()
}
