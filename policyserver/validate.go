package policyserver

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/vswitch"
)

// Stateless rules of each object, which also normalize it (defaults,
// unmapped addresses, sorted lists). Rules that depend on other objects are
// checked in the etcd transactions of store.go.

func invalidf(format string, a ...any) error {
	return &policy.Error{Kind: policy.ErrInvalid, Msg: fmt.Sprintf(format, a...)}
}

func notFoundf(format string, a ...any) error {
	return &policy.Error{Kind: policy.ErrNotFound, Msg: fmt.Sprintf(format, a...)}
}

func existsf(format string, a ...any) error {
	return &policy.Error{Kind: policy.ErrExists, Msg: fmt.Sprintf(format, a...)}
}

// conflictf is a 409 for the state of another object, like existsf.
func conflictf(format string, a ...any) error {
	return &policy.Error{Kind: policy.ErrExists, Msg: fmt.Sprintf(format, a...)}
}

var guidUse = policy.GUID{}.Syntax()

// checkName accepts names that are safe in etcd keys and URL paths.
func checkName(field, s string) error {
	ok := len(s) >= 1 && len(s) <= 63
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		ok = alnum || i > 0 && (c == '.' || c == '_' || c == '-')
	}
	if !ok {
		if s == "" {
			return invalidf("%s is missing: use 1..63 letters, digits, '.', '_' or '-', starting with a letter or digit", field)
		}
		return invalidf("%s %q is malformed: use 1..63 letters, digits, '.', '_' or '-', starting with a letter or digit", field, s)
	}
	return nil
}

func checkLabel(field, s string) error {
	if len(s) > 256 || strings.ContainsAny(s, "\n\r\x00") {
		return invalidf("%s %q is malformed: use at most 256 characters on one line", field, s)
	}
	return nil
}

func checkGUID(field string, g policy.GUID) error {
	if g.IsZero() {
		return invalidf("%s is missing: %s", field, guidUse)
	}
	return nil
}

func checkVSID(v policy.VSID) error {
	if v == 0 {
		return invalidf("VirtualSubnetID is missing: use %d..%d", policy.MinVSID, policy.MaxVSID)
	}
	if v > 0xFFFFFF {
		return invalidf("VirtualSubnetID %d is out of range: use %d..%d", v, policy.MinVSID, policy.MaxVSID)
	}
	if v < policy.MinVSID || v > policy.MaxVSID {
		return invalidf("VirtualSubnetID %d is reserved: use %d..%d", v, policy.MinVSID, policy.MaxVSID)
	}
	return nil
}

func checkMAC(m packet.MAC) error {
	if m.IsZero() {
		return invalidf("MACAddress is missing: use the VM's unicast MAC such as 00:15:5d:01:02:03")
	}
	if m.IsMulticast() {
		return invalidf("MACAddress %s is multicast: use a unicast MAC", m)
	}
	if m == vswitch.GatewayMAC {
		return invalidf("MACAddress %s is the virtual gateway's, which hosts answer and route with for a subnet gateway without a lookup record of its own: use another unicast MAC", m)
	}
	return nil
}

// checkUnicast unmaps a and requires a unicast address without a zone.
func checkUnicast(field string, a netip.Addr) (netip.Addr, error) {
	if !a.IsValid() {
		return a, invalidf("%s is missing: use an IPv4 or IPv6 unicast address", field)
	}
	if a.Zone() != "" {
		return a, invalidf("%s %s has a zone: use an address without %%zone", field, a)
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return a, invalidf("%s %s is not unicast: use a unicast address", field, a)
	}
	return a, nil
}

// checkPA requires an address other hosts can send encapsulated packets to:
// unicast, and neither loopback nor link-local, which name no host.
func checkPA(a netip.Addr) (netip.Addr, error) {
	a, err := checkUnicast("ProviderAddresses", a)
	switch {
	case err != nil:
		return a, err
	case a.IsLoopback():
		return a, invalidf("ProviderAddresses %s is a loopback address: use an address of the host on the underlay", a)
	case a.IsLinkLocalUnicast():
		return a, invalidf("ProviderAddresses %s is link-local: use a routable address of the host on the underlay", a)
	}
	return a, nil
}

func checkTenant(t *policyapi.Tenant) error {
	if err := checkGUID("CustomerID", t.CustomerID); err != nil {
		return err
	}
	return checkLabel("Name", t.Name)
}

func checkRoutingDomain(rd *policyapi.RoutingDomain) error {
	if err := checkGUID("RoutingDomainID", rd.RoutingDomainID); err != nil {
		return err
	}
	if err := checkGUID("CustomerID", rd.CustomerID); err != nil {
		return err
	}
	return checkLabel("Name", rd.Name)
}

// firstHost is the first host address of p (the conventional .1).
func firstHost(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// lastAddr is the last address of p (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	l := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		l = l.Unmap()
	}
	return l
}

func checkSubnet(s *policyapi.Subnet) error {
	if err := checkVSID(s.VirtualSubnetID); err != nil {
		return err
	}
	if err := checkGUID("RoutingDomainID", s.RoutingDomainID); err != nil {
		return err
	}
	if len(s.Prefixes) == 0 {
		return invalidf("Prefixes is empty: give at least one IPv4 or IPv6 prefix such as 10.0.0.0/24")
	}
	for i, p := range s.Prefixes {
		if !p.IsValid() {
			return invalidf("Prefixes %s is malformed: use a prefix such as 10.0.0.0/24 or fd00::/64", p)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-(p.Addr().BitLen()-p.Addr().Unmap().BitLen()))
		if p.Addr().Zone() != "" {
			return invalidf("Prefixes %s has a zone: use a prefix without %%zone", p)
		}
		if m := p.Masked(); m != p {
			return invalidf("Prefixes %s has host bits set: use %s", p, m)
		}
		if p.Addr().BitLen()-p.Bits() < 2 {
			return invalidf("Prefixes %s is too small: leave room for a gateway and VMs (IPv4 /30 or shorter, IPv6 /126 or shorter)", p)
		}
		for _, q := range s.Prefixes[:i] {
			if q.Overlaps(p) {
				return invalidf("Prefixes %s overlaps %s: give disjoint prefixes", p, q)
			}
		}
		s.Prefixes[i] = p
	}
	if len(s.Gateways) == 0 {
		for _, p := range s.Prefixes {
			s.Gateways = append(s.Gateways, firstHost(p))
		}
	}
	for i, g := range s.Gateways {
		g, err := checkUnicast("Gateways", g)
		if err != nil {
			return err
		}
		p, ok := prefixOf(s.Prefixes, g)
		if !ok {
			return invalidf("Gateways %s is outside the subnet's prefixes %s: use an address inside them", g, prefixList(s.Prefixes))
		}
		if g == p.Addr() || g.Is4() && g == lastAddr(p) {
			return invalidf("Gateways %s is the network or broadcast address of %s: use a host address", g, p)
		}
		s.Gateways[i] = g
	}
	switch strings.ToUpper(string(s.Encapsulation)) {
	case "", string(policyapi.NVGRE):
		s.Encapsulation = policyapi.NVGRE
	case string(policyapi.VXLAN):
		s.Encapsulation = policyapi.VXLAN
	default:
		return invalidf("Encapsulation %q is not supported: use NVGRE or VXLAN", s.Encapsulation)
	}
	return checkRule(s)
}

func prefixOf(ps []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// checkCA is the rule of a CA against its subnet: inside a prefix, not the
// network, broadcast or a gateway address.
func checkCA(ca netip.Addr, s *policyapi.Subnet) error {
	p, ok := prefixOf(s.Prefixes, ca)
	if !ok {
		return invalidf("CustomerAddresses %s is outside the prefixes of VirtualSubnetID %d (%s): use an address inside them",
			ca, s.VirtualSubnetID, prefixList(s.Prefixes))
	}
	if ca == p.Addr() || ca.Is4() && ca == lastAddr(p) {
		return invalidf("CustomerAddresses %s is the network or broadcast address of %s: use a host address", ca, p)
	}
	if slices.Contains(s.Gateways, ca) {
		return invalidf("CustomerAddresses %s is the gateway address of VirtualSubnetID %d: use another host address", ca, s.VirtualSubnetID)
	}
	return nil
}

func checkHost(h *policyapi.Host) error {
	if err := checkName("Name", h.Name); err != nil {
		return err
	}
	if len(h.ProviderAddresses) == 0 {
		return invalidf("ProviderAddresses is empty: give the host's PAs such as 198.18.0.2")
	}
	for i, a := range h.ProviderAddresses {
		a, err := checkPA(a)
		if err != nil {
			return err
		}
		if slices.Contains(h.ProviderAddresses[:i], a) {
			return invalidf("ProviderAddresses %s is listed twice: give each PA once", a)
		}
		h.ProviderAddresses[i] = a
	}
	if h.TTLSeconds == 0 {
		h.TTLSeconds = policyapi.DefaultTTL
	}
	if h.TTLSeconds < 1 || h.TTLSeconds > 3600 {
		return invalidf("TTLSeconds %d is out of range: use 1..3600", h.TTLSeconds)
	}
	return nil
}

func checkCAs(cas []netip.Addr) error {
	if len(cas) == 0 {
		return invalidf("CustomerAddresses is empty: give at least one IPv4 or IPv6 address")
	}
	for i, a := range cas {
		a, err := checkUnicast("CustomerAddresses", a)
		if err != nil {
			return err
		}
		if slices.Contains(cas[:i], a) {
			return invalidf("CustomerAddresses %s is listed twice: give each CA once", a)
		}
		cas[i] = a
	}
	return nil
}

func checkVM(vm *policyapi.VM) error {
	if err := checkName("Name", vm.Name); err != nil {
		return err
	}
	if err := checkInterface(vm); err != nil {
		return err
	}
	if err := checkMAC(vm.MACAddress); err != nil {
		return err
	}
	if len(vm.CustomerAddresses) > 0 || !vm.L2Only {
		if err := checkCAs(vm.CustomerAddresses); err != nil {
			return err
		}
	}
	if err := checkVSID(vm.VirtualSubnetID); err != nil {
		return err
	}
	return checkName("Host", vm.Host)
}

// checkInterface applies the kernel's interface name rules to the VM's
// interface, or to its name where that stands for the interface (the host
// agent attaches the interface named like the VM by default), and keeps it
// off the names the host itself uses.
func checkInterface(vm *policyapi.VM) error {
	field, name := "Interface", vm.Interface
	if name == "" {
		field, name = "Name", vm.Name
		if len(name) > maxIfName {
			return invalidf("Interface is missing and Name %q is longer than an interface name (%d bytes): name the VM's interface", name, maxIfName)
		}
	}
	if len(name) > maxIfName || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return invalidf("Interface %q is not an interface name: use 1..%d bytes without '/', ':' or spaces", name, maxIfName)
	}
	if slices.Contains(reservedIfNames, name) || strings.HasPrefix(name, reservedIfPrefix) {
		return invalidf("%s %q is an interface name the host uses itself (%s, or starting with %q): name the VM's interface otherwise", field, name, strings.Join(reservedIfNames, ", "), reservedIfPrefix)
	}
	return nil
}

// maxIfName is the longest interface name Linux takes (IFNAMSIZ - 1).
const maxIfName = 15

// reservedIfNames are interface names of the host a VM's port must never
// take: loopback, the names /proc/sys/net/*/conf keeps for itself, and the
// underlay links of hosts and of the lab (eth0, ul0).
var reservedIfNames = []string{"lo", "all", "default", "eth0", "ul0"}

// reservedIfPrefix starts the names of wnvd's own devices.
const reservedIfPrefix = "wnv"

func checkGateway(g *policyapi.Gateway) error {
	if err := checkName("Name", g.Name); err != nil {
		return err
	}
	if err := checkVSID(g.VirtualSubnetID); err != nil {
		return err
	}
	if err := checkMAC(g.MACAddress); err != nil {
		return err
	}
	ca, err := checkUnicast("CustomerAddress", g.CustomerAddress)
	if err != nil {
		return err
	}
	g.CustomerAddress = ca
	if g.CustomerAddress6.IsValid() {
		ca6, err := checkUnicast("CustomerAddress6", g.CustomerAddress6)
		if err != nil {
			return err
		}
		if !ca.Is4() || !ca6.Is6() {
			return invalidf("CustomerAddress6 %s with CustomerAddress %s is not a dual-stack pair: give an IPv4 CustomerAddress and an IPv6 CustomerAddress6", ca6, ca)
		}
		g.CustomerAddress6 = ca6
	}
	if err := checkName("Host", g.Host); err != nil {
		return err
	}
	return checkEdge(g)
}

// maxGatewayName keeps "gw-" + Name, the host end of an edge gateway's
// tenant link and its port, an interface name.
const maxGatewayName = maxIfName - len("gw-")

// checkEdge checks what the gateway host's agent builds an edge gateway
// from: a Mode it knows, a usable external interface, and an external
// address (and at most one default route) for each family it forwards.
func checkEdge(g *policyapi.Gateway) error {
	switch g.Mode {
	case "":
		if g.ExternalInterface != "" || len(g.ExternalAddresses) > 0 || len(g.ExternalGateways) > 0 {
			return invalidf("Mode is empty but the External fields are set: give Mode %s or %s for the host to build the gateway, or drop them for a gateway VM of your own", policyapi.GatewayForward, policyapi.GatewayNAT)
		}
		return nil
	case policyapi.GatewayForward, policyapi.GatewayNAT:
	default:
		return invalidf("Mode %q is unknown: use %s, %s, or none for a gateway VM of your own", g.Mode, policyapi.GatewayForward, policyapi.GatewayNAT)
	}
	if len(g.Name) > maxGatewayName {
		return invalidf("Name %q is longer than %d bytes: an edge gateway's port is the interface gw-NAME", g.Name, maxGatewayName)
	}
	x := g.ExternalInterface
	switch {
	case x == "":
		return invalidf("ExternalInterface is missing: name the gateway host's interface on the outside network")
	case len(x) > maxIfName || x == "." || x == ".." || strings.ContainsAny(x, "/: \t\n"):
		return invalidf("ExternalInterface %q is not an interface name: use 1..%d bytes without '/', ':' or spaces", x, maxIfName)
	case slices.Contains(reservedIfNames, x) || strings.HasPrefix(x, reservedIfPrefix):
		return invalidf("ExternalInterface %q is an interface the host keeps for itself (%s, or starting with %q): tenants never join the underlay, use the outside network's interface", x, strings.Join(reservedIfNames, ", "), reservedIfPrefix)
	}
	byFamily := map[bool]netip.Prefix{}
	for i, p := range g.ExternalAddresses {
		a, err := checkUnicast("ExternalAddresses", p.Addr())
		if err != nil {
			return err
		}
		p = netip.PrefixFrom(a, p.Bits())
		if !p.IsValid() || p.Bits() == a.BitLen() || a == p.Masked().Addr() {
			return invalidf("ExternalAddresses %s is not a host address with the outside network's prefix length: use e.g. 203.0.113.2/24", g.ExternalAddresses[i])
		}
		if _, dup := byFamily[a.Is6()]; dup {
			return invalidf("ExternalAddresses %s is a second address of its family: give one IPv4 and at most one IPv6 address", p)
		}
		byFamily[a.Is6()] = p
		g.ExternalAddresses[i] = p
	}
	for _, ca := range g.CustomerAddresses() {
		if _, ok := byFamily[ca.Is6()]; !ok {
			return invalidf("ExternalAddresses has no %s address for CustomerAddress %s: the gateway would forward that family to nowhere", family(ca), ca)
		}
	}
	routed := map[bool]bool{}
	for i, gw := range g.ExternalGateways {
		gw, err := checkUnicast("ExternalGateways", gw)
		if err != nil {
			return err
		}
		p, ok := byFamily[gw.Is6()]
		switch {
		case !ok || !p.Contains(gw) || gw == p.Addr():
			return invalidf("ExternalGateways %s is not another address in ExternalAddresses' prefix of its family: use the outside router's address on that network", gw)
		case routed[gw.Is6()]:
			return invalidf("ExternalGateways %s is a second router of its family: give at most one per family", gw)
		}
		routed[gw.Is6()] = true
		g.ExternalGateways[i] = gw
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
