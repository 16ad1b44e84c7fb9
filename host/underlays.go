package host

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/provider"
)

// ParseUnderlays reads `wnvd host --underlay`: interface names separated by
// commas, the first the default underlay (of a PA or provider route with
// InterfaceIndex 0).
func ParseUnderlays(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("--underlay %q names no interface: give one or more names separated by commas, e.g. eth1 or eth1,eth2", s)
	}
	var names []string
	for _, f := range strings.Split(s, ",") {
		name := strings.TrimSpace(f)
		if name == "" {
			return nil, fmt.Errorf("--underlay %q has an empty interface name: remove the extra comma", s)
		}
		if err := provider.CheckIfName("--underlay interface", name, true); err != nil {
			return nil, err
		}
		if slices.Contains(names, name) {
			return nil, fmt.Errorf("--underlay %q names %s twice: name each interface once", s, name)
		}
		names = append(names, name)
	}
	return names, nil
}

// underlay is one underlay interface of the host.
type underlay struct {
	name  string
	index int
	mtu   int
}

// underlays are the host's underlay interfaces, the default first.
type underlays []underlay

// openUnderlays looks up the named interfaces.
func openUnderlays(names []string) (underlays, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("no underlay interface: name one or more")
	}
	us := make(underlays, 0, len(names))
	for _, n := range names {
		idx, err := dataplane.LinkIndex(n)
		if err != nil {
			return nil, fmt.Errorf("underlay %w", err)
		}
		mtu, err := dataplane.LinkMTU(n)
		if err != nil {
			return nil, fmt.Errorf("underlay %w", err)
		}
		us = append(us, underlay{name: n, index: idx, mtu: mtu})
	}
	return us, nil
}

// of is the underlay an InterfaceIndex names: 0 is the default, anything
// else must be one of the underlays.
func (us underlays) of(ifindex int) (underlay, error) {
	if ifindex == 0 {
		return us[0], nil
	}
	for _, u := range us {
		if u.index == ifindex {
			return u, nil
		}
	}
	return underlay{}, fmt.Errorf("InterfaceIndex %d is not an underlay interface of this host, which has %s: use one of them, or 0 for %s",
		ifindex, us, us[0].name)
}

// String lists the underlays as people name them.
func (us underlays) String() string {
	parts := make([]string, len(us))
	for i, u := range us {
		parts[i] = fmt.Sprintf("%s (InterfaceIndex %d)", u.name, u.index)
	}
	return strings.Join(parts, ", ")
}

// mtu is the smallest MTU of the underlays: the switch sizes every tunnel
// packet by it, whichever interface the packet leaves by.
func (us underlays) mtu() int {
	m := us[0].mtu
	for _, u := range us[1:] {
		m = min(m, u.mtu)
	}
	return m
}

// names are the underlays' names.
func (us underlays) names() []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.name
	}
	return out
}

// indexes are the underlays' interface indexes.
func (us underlays) indexes() []int {
	out := make([]int, len(us))
	for i, u := range us {
		out[i] = u.index
	}
	return out
}
