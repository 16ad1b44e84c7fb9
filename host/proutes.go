package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// routeProtocol is the rtm_protocol of the kernel routes wnvd installs for
// provider routes (`ip route` shows "proto 243"). It is unassigned in
// iproute2's rt_protos; wnvd recognises its own routes by it and never
// touches a route without it.
const routeProtocol = 0xf3

// ipv6DefaultMetric is what the kernel stores for an IPv6 route added with
// metric 0 (IP6_RT_PRIO_USER).
const ipv6DefaultMetric = 1024

// Provider routes become kernel routes in wnvd's network namespace because
// both paths send PA packets through its routing table: the slow path's GRE
// and VXLAN sockets, and the fast path's bpf_redirect_neigh, whose FIB
// lookup picks the next hop on the underlay.

// routeKey is what the kernel tells routes of one table apart by (for
// unicast routes without TOS): two with the same key cannot both be there.
type routeKey struct {
	dst    netip.Prefix
	metric uint32
}

func keyOf(r dataplane.Route) routeKey { return routeKey{r.Dst, r.Metric} }

// routeRefusal is a provider route that is not installed, and why.
type routeRefusal struct {
	route policy.ProviderRoute
	why   string
}

// desiredRoutes turns the policy's provider routes into the kernel routes
// out of the underlays their InterfaceIndex names (0: the first), sorted,
// given the PAs up. Routes on an interface that is no underlay, and routes
// the kernel could not hold beside another (same destination and metric,
// whatever the interface), are refused.
func desiredRoutes(rs []policy.ProviderRoute, us underlays, pas []netip.Prefix) ([]dataplane.Route, []routeRefusal) {
	var want []dataplane.Route
	var refused []routeRefusal
	seen := map[routeKey]dataplane.Route{}
	for _, r := range rs {
		u, err := us.of(r.InterfaceIndex)
		if err != nil {
			refused = append(refused, routeRefusal{r, err.Error()})
			continue
		}
		k := dataplane.Route{Ifindex: u.index, Dst: r.DestinationPrefix, Metric: r.Metric}
		if !r.NextHop.IsUnspecified() {
			k.Gw = r.NextHop
		}
		if k.Dst.Addr().Is6() && k.Metric == 0 {
			k.Metric = ipv6DefaultMetric
		}
		k.Src = preferredSource(k.Dst, k.Gw, pas)
		if other, ok := seen[keyOf(k)]; ok {
			if other != k {
				refused = append(refused, routeRefusal{r, fmt.Sprintf("the kernel holds one route per destination and metric, and %s is installed: give this one another Metric", other)})
			}
			continue
		}
		seen[keyOf(k)] = k
		want = append(want, k)
	}
	slices.SortFunc(want, compareRoutes)
	return want, refused
}

func compareRoutes(a, b dataplane.Route) int {
	if c := cmp.Compare(a.Ifindex, b.Ifindex); c != 0 {
		return c
	}
	if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Dst.Bits(), b.Dst.Bits()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Metric, b.Metric); c != 0 {
		return c
	}
	if c := a.Gw.Compare(b.Gw); c != 0 {
		return c
	}
	return a.Src.Compare(b.Src)
}

// preferredSource is the PA the host's own packets on a route come from:
// the one whose subnet holds the gateway (on-link: overlaps the
// destination), else the lowest of the family; none without a PA of the
// family. pas are the PAs up, with their prefix lengths.
func preferredSource(dst netip.Prefix, gw netip.Addr, pas []netip.Prefix) netip.Addr {
	var best, near netip.Addr
	for _, p := range pas {
		a := p.Addr()
		if a.Is4() != dst.Addr().Is4() {
			continue
		}
		if !best.IsValid() || a.Less(best) {
			best = a
		}
		inSubnet := gw.IsValid() && p.Contains(gw) || !gw.IsValid() && p.Overlaps(dst)
		if inSubnet && (!near.IsValid() || a.Less(near)) {
			near = a
		}
	}
	if near.IsValid() {
		return near
	}
	return best
}

// diffRoutes is what to delete from have and add to it to get want. Routes
// of have whose key is adopted stay, unless want has a route of that key.
func diffRoutes(want, have []dataplane.Route, adopted map[routeKey]bool) (del, add []dataplane.Route) {
	for _, r := range have {
		if !slices.Contains(want, r) && !adopted[keyOf(r)] {
			del = append(del, r)
		}
	}
	for _, r := range want {
		if !slices.Contains(have, r) {
			add = append(add, r)
		}
	}
	return del, add
}

// routeSet is the state of the provider routes' reconciler.
type routeSet struct {
	kick chan struct{}
	// force has the next pass read the kernel even if policy asks nothing
	// new: a link changed, and the kernel may have dropped routes with it.
	force atomic.Bool
	// last is what the previous pass wanted, and clean whether it got all.
	last  []dataplane.Route
	clean bool
	// states is the state last logged per route, to log changes only.
	states map[string]string
	// started is set by the first pass. adopted are the keys of routes an
	// earlier wnvd left that the policy has not had since: without a
	// checkpoint, policy starts empty and is provisioned again, and until
	// then the kernel goes on forwarding with them (fail static).
	started bool
	adopted map[routeKey]bool

	installed, waiting, failed atomic.Int64
	failures                   atomic.Uint64 // kernel operations that failed
}

// kickRoutes has the reconciler run; with force it reads the kernel even
// if the policy's routes are what it installed last.
func (h *Host) kickRoutes(force bool) {
	if force {
		h.routes.force.Store(true)
	}
	select {
	case h.routes.kick <- struct{}{}:
	default:
	}
}

// reconcileRoutes keeps the kernel's routes in line with the provider
// routes until ctx ends. A stopping wnvd leaves them (fail static, like its
// PAs); Cleanup removes them.
func (h *Host) reconcileRoutes(ctx context.Context) {
	h.kickRoutes(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.routes.kick:
		}
		h.syncRoutes()
	}
}

// upPAs are the PAs with sockets, hence configured and past DAD, with
// their prefix lengths from t.
func (h *Host) upPAs(t *policy.Table) []netip.Prefix {
	socks := *h.pas.socks.Load()
	var out []netip.Prefix
	for _, pa := range t.ProviderAddresses(policy.ProviderAddressFilter{}) {
		if socks[pa.ProviderAddress] != nil {
			out = append(out, netip.PrefixFrom(pa.ProviderAddress, int(pa.PrefixLength)))
		}
	}
	return out
}

// syncRoutes is one pass: it deletes the routes of wnvd's protocol on the
// underlays that policy no longer has and adds the missing ones. A route
// whose gateway is not reachable yet (no PA in its subnet) waits for the
// next pass, which a change of policy or of the PAs brings.
func (h *Host) syncRoutes() {
	r := &h.routes
	t := h.store.Table()
	want, refused := desiredRoutes(t.ProviderRoutes(policy.ProviderRouteFilter{}), h.underlays, h.upPAs(t))
	if !r.force.Swap(false) && r.clean && slices.Equal(want, r.last) {
		return
	}
	r.last, r.clean = want, false
	var have []dataplane.Route
	for _, u := range h.underlays {
		rs, err := dataplane.Routes(u.index, routeProtocol)
		if err != nil {
			r.failures.Add(1)
			h.log.Error("provider routes: reading the kernel's", "underlay", u.name, "err", err)
			return
		}
		have = append(have, rs...)
	}
	if !r.started {
		r.started = true
		if !h.restored {
			r.adopted = map[routeKey]bool{}
			for _, x := range have {
				r.adopted[keyOf(x)] = true
			}
		}
	}
	for _, w := range want {
		delete(r.adopted, keyOf(w))
	}
	del, add := diffRoutes(want, have, r.adopted)
	clean := true
	for _, d := range del {
		if err := dataplane.DeleteRoute(routeProtocol, d); err != nil && !errors.Is(err, unix.ESRCH) {
			r.failures.Add(1)
			clean = false
			h.log.Error("provider route: deleting it from the kernel", "route", d.String(), "err", err)
			continue
		}
		h.log.Info("provider route deleted from the kernel", "route", d.String())
	}
	states := map[string]string{}
	var installed, waiting, failed int64
	for _, w := range want {
		states[w.String()] = "installed"
		if !slices.Contains(add, w) {
			installed++
			continue
		}
		switch err := dataplane.AddRoute(routeProtocol, w); {
		case err == nil:
			installed++
		case errors.Is(err, unix.ENETUNREACH):
			r.failures.Add(1)
			waiting++
			clean = false
			states[w.String()] = "waiting: its next hop is not on a subnet of its underlay yet; tried again when policy or the provider addresses change"
		default:
			r.failures.Add(1)
			failed++
			clean = false
			why := err.Error()
			if errors.Is(err, unix.EEXIST) {
				why = "a route that is not wnvd's has the same destination and metric: " + why
			}
			states[w.String()] = "not installed: " + why
		}
	}
	for _, f := range refused {
		failed++
		states[fmt.Sprintf("%s via %s on InterfaceIndex %d", f.route.DestinationPrefix, f.route.NextHop, f.route.InterfaceIndex)] = "not installed: " + f.why
	}
	for k, st := range states {
		if r.states[k] == st {
			continue
		}
		if st == "installed" {
			h.log.Info("provider route installed", "route", k)
		} else {
			h.log.Warn("provider route "+st, "route", k)
		}
	}
	r.states, r.clean = states, clean
	r.installed.Store(installed)
	r.waiting.Store(waiting)
	r.failed.Store(failed)
}

// routeCounters reports the provider routes' states.
func (h *Host) routeCounters() provider.ProviderRouteCounters {
	return provider.ProviderRouteCounters{Installed: int(h.routes.installed.Load()), Waiting: int(h.routes.waiting.Load()),
		Failed: int(h.routes.failed.Load()), Failures: h.routes.failures.Load()}
}

// CheckProviderRoute refuses, before it is added, a provider route this
// host could not install (provider.ProviderRouteChecker): one out of an
// interface that is none of its underlays.
func (h *Host) CheckProviderRoute(r policy.ProviderRoute) error {
	if _, err := h.underlays.of(r.InterfaceIndex); err != nil {
		return &policy.Error{Kind: policy.ErrInvalid, Msg: err.Error()}
	}
	return nil
}

// CheckProviderAddress refuses, before it is added, a PA this host could
// not put where it asks (provider.ProviderAddressChecker): on an interface
// that is none of its underlays. Every VlanID policy accepts (0..4094) is
// honoured.
func (h *Host) CheckProviderAddress(p policy.ProviderAddress) error {
	if _, err := h.underlays.of(p.InterfaceIndex); err != nil {
		return &policy.Error{Kind: policy.ErrInvalid, Msg: err.Error()}
	}
	return nil
}

// cleanupRoutes deletes the routes of wnvd's protocol out of an underlay.
// An underlay that is gone took its routes with it.
func cleanupRoutes(underlay string) (removed []string, err error) {
	idx, err := dataplane.LinkIndex(underlay)
	if err != nil {
		return nil, nil
	}
	rs, err := dataplane.Routes(idx, routeProtocol)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, r := range rs {
		if err := dataplane.DeleteRoute(routeProtocol, r); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, fmt.Sprintf("provider route %s on %s", r, underlay))
	}
	return removed, errors.Join(errs...)
}
