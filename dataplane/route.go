package dataplane

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is a unicast route of the main table out of one interface.
type Route struct {
	Ifindex int // the interface it goes out of
	Dst     netip.Prefix
	Gw      netip.Addr // invalid: on-link
	Src     netip.Addr // preferred source; invalid: none
	// Metric is the route's priority; the kernel stores 0 on an IPv6 route
	// as 1024, so callers pass the value they will read back.
	Metric uint32
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	return fmt.Sprintf("%s metric %d", s, r.Metric)
}

func (r Route) netlink(proto int) *netlink.Route {
	nr := &netlink.Route{LinkIndex: r.Ifindex, Dst: IPNet(r.Dst), Protocol: netlink.RouteProtocol(proto),
		Priority: int(r.Metric), Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	} else if r.Dst.Addr().Is4() {
		nr.Scope = netlink.SCOPE_LINK // as `ip route add PREFIX dev IF` does
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	return nr
}

// AddRoute adds r out of its interface with routing protocol proto
// (rtm_protocol, which marks whose route it is). It never replaces a route:
// one already there with the same destination and metric is an error
// (EEXIST). A gateway the interface cannot reach yet fails with ENETUNREACH.
func AddRoute(proto int, r Route) error {
	if err := netlink.RouteAdd(r.netlink(proto)); err != nil {
		return fmt.Errorf("add route %s: %w", r, err)
	}
	return nil
}

// DeleteRoute deletes r, out of its interface, with protocol proto.
func DeleteRoute(proto int, r Route) error {
	if err := netlink.RouteDel(r.netlink(proto)); err != nil {
		return fmt.Errorf("delete route %s: %w", r, err)
	}
	return nil
}

// Routes lists the routes of the main table out of interface ifindex with
// protocol proto, of both families.
func Routes(ifindex, proto int) ([]Route, error) {
	filter := &netlink.Route{LinkIndex: ifindex, Protocol: netlink.RouteProtocol(proto), Table: unix.RT_TABLE_MAIN}
	nrs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list the routes of interface %d: %w", ifindex, err)
	}
	out := make([]Route, 0, len(nrs))
	for _, nr := range nrs {
		if nr.Dst == nil || nr.Type != unix.RTN_UNICAST {
			continue
		}
		dst, ok := prefixOf(nr.Dst)
		if !ok {
			continue
		}
		r := Route{Ifindex: ifindex, Dst: dst, Metric: uint32(nr.Priority)}
		r.Gw, _ = netip.AddrFromSlice(nr.Gw)
		r.Src, _ = netip.AddrFromSlice(nr.Src)
		r.Gw, r.Src = r.Gw.Unmap(), r.Src.Unmap()
		out = append(out, r)
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}
