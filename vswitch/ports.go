package vswitch

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// PortConfig is a VM port as the switch sees it: the VM's MAC, the VSID of its
// virtual subnet and the customer addresses it may send from.
type PortConfig struct {
	Index int
	Name  string
	MAC   packet.MAC
	VSID  policy.VSID
	CAs   []netip.Addr
}

type vsidMAC struct {
	vsid policy.VSID
	mac  packet.MAC
}

// PortTable is an immutable set of VM ports, indexed for the fast path.
type PortTable struct {
	byIndex []*PortConfig
	byMAC   map[vsidMAC]int
	byVSID  map[policy.VSID][]int // indexes of the local ports of each VSID, in order
}

// NewPortTable indexes ports. Indexes must be unique and non-negative; a MAC
// may appear once per VSID.
func NewPortTable(ports []PortConfig) (*PortTable, error) {
	t := &PortTable{byMAC: make(map[vsidMAC]int, len(ports)), byVSID: make(map[policy.VSID][]int)}
	for i := range ports {
		p := ports[i]
		if p.Index < 0 {
			return nil, fmt.Errorf("port %q has index %d: indexes start at 0", p.Name, p.Index)
		}
		if p.Index >= len(t.byIndex) {
			t.byIndex = append(t.byIndex, make([]*PortConfig, p.Index+1-len(t.byIndex))...)
		}
		if t.byIndex[p.Index] != nil {
			return nil, fmt.Errorf("port %q reuses index %d of port %q", p.Name, p.Index, t.byIndex[p.Index].Name)
		}
		k := vsidMAC{p.VSID, p.MAC}
		if other, ok := t.byMAC[k]; ok {
			return nil, fmt.Errorf("MACAddress %s of port %q is already used by port %q in VirtualSubnetID %d", p.MAC, p.Name, t.byIndex[other].Name, p.VSID)
		}
		p.CAs = slices.Clone(p.CAs)
		t.byIndex[p.Index] = &p
		t.byMAC[k] = p.Index
	}
	for _, p := range t.byIndex {
		if p != nil {
			t.byVSID[p.VSID] = append(t.byVSID[p.VSID], p.Index)
		}
	}
	return t, nil
}

// Port returns the port at index i.
func (t *PortTable) Port(i int) (*PortConfig, bool) {
	if t == nil || i < 0 || i >= len(t.byIndex) || t.byIndex[i] == nil {
		return nil, false
	}
	return t.byIndex[i], true
}

// ByMAC finds the local port of a VM by its VSID and MAC.
func (t *PortTable) ByMAC(vsid policy.VSID, mac packet.MAC) (*PortConfig, bool) {
	if t == nil {
		return nil, false
	}
	i, ok := t.byMAC[vsidMAC{vsid, mac}]
	if !ok {
		return nil, false
	}
	return t.byIndex[i], true
}

// HasVSID reports whether any local port belongs to vsid.
func (t *PortTable) HasVSID(vsid policy.VSID) bool { return len(t.InVSID(vsid)) > 0 }

// InVSID lists the indexes of vsid's local ports in order; the slice is
// the table's, not to be modified.
func (t *PortTable) InVSID(vsid policy.VSID) []int {
	if t == nil {
		return nil
	}
	return t.byVSID[vsid]
}

// Ports lists the ports in index order.
func (t *PortTable) Ports() []PortConfig {
	var out []PortConfig
	if t == nil {
		return out
	}
	for _, p := range t.byIndex {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}

// owns reports whether a is one of the port's customer addresses.
func (p *PortConfig) owns(a netip.Addr) bool {
	for _, ca := range p.CAs {
		if ca == a {
			return true
		}
	}
	return false
}
