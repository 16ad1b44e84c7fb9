package policy

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Encapsulation is how a virtual subnet's frames cross the provider network.
type Encapsulation uint8

const (
	// EncapNVGRE is NVGRE (RFC 7637), IP protocol 47: the default.
	EncapNVGRE Encapsulation = 0
	// EncapVXLAN is VXLAN (RFC 7348), UDP port 4789, with VNI = VSID.
	EncapVXLAN Encapsulation = 1
)

var encapNames = [...]string{"NVGRE", "VXLAN"}

func (e Encapsulation) String() string {
	if int(e) < len(encapNames) {
		return encapNames[e]
	}
	return strconv.Itoa(int(e))
}

// ParseEncapsulation accepts NVGRE or VXLAN (any case) or their numbers 0, 1.
func ParseEncapsulation(s string) (Encapsulation, error) {
	if i := parseName(strings.ToLower(s), encapNames[:]); i >= 0 {
		return Encapsulation(i), nil
	}
	return 0, invalidf("Encapsulation %q is unknown: use NVGRE or VXLAN", s)
}

func (e Encapsulation) MarshalText() ([]byte, error) {
	if int(e) >= len(encapNames) {
		return nil, invalidf("Encapsulation %d is unknown: use NVGRE (0) or VXLAN (1)", e)
	}
	return []byte(encapNames[e]), nil
}

func (e *Encapsulation) UnmarshalText(b []byte) error {
	v, err := ParseEncapsulation(string(b))
	if err == nil {
		*e = v
	}
	return err
}

// VirtualSubnet holds the per-subnet settings of a VSID. Identity:
// VirtualSubnetID. A VSID without a VirtualSubnet object uses NVGRE.
type VirtualSubnet struct {
	VirtualSubnetID VSID          `json:"VirtualSubnetID"`
	Encapsulation   Encapsulation `json:"Encapsulation"`
}

// VirtualSubnetFilter selects virtual subnets; a zero VirtualSubnetID matches
// all.
type VirtualSubnetFilter struct {
	VirtualSubnetID VSID
}

func (f *VirtualSubnetFilter) match(v VSID) bool {
	return f.VirtualSubnetID == 0 || f.VirtualSubnetID == v
}

func (f *VirtualSubnetFilter) String() string {
	if f.VirtualSubnetID == 0 {
		return ""
	}
	return fmt.Sprintf("VirtualSubnetID %d", f.VirtualSubnetID)
}

// VirtualSubnetChange holds what Set may change; nil leaves it as it is.
type VirtualSubnetChange struct {
	Encapsulation *Encapsulation
}

func checkVirtualSubnet(v *VirtualSubnet) error {
	if err := checkVSID(v.VirtualSubnetID); err != nil {
		return err
	}
	if int(v.Encapsulation) >= len(encapNames) {
		return invalidf("Encapsulation %d of VirtualSubnetID %d is unknown: use NVGRE (0) or VXLAN (1)", v.Encapsulation, v.VirtualSubnetID)
	}
	return nil
}

// Encapsulation is the encapsulation of vsid: NVGRE unless a VirtualSubnet
// object says otherwise.
func (t *Table) Encapsulation(vsid VSID) Encapsulation {
	return t.subnets[vsid]
}

// VirtualSubnets returns the virtual subnets matching f, by VSID.
func (t *Table) VirtualSubnets(f VirtualSubnetFilter) []VirtualSubnet {
	var out []VirtualSubnet
	for _, v := range slices.Sorted(maps.Keys(t.subnets)) {
		if f.match(v) {
			out = append(out, VirtualSubnet{VirtualSubnetID: v, Encapsulation: t.subnets[v]})
		}
	}
	return out
}

// setSubnets publishes a changed copy of the virtual subnets.
func (x *tx) setSubnets(m map[VSID]Encapsulation) {
	x.t.subnets = m
	x.changed = true
}

// AddVirtualSubnet validates and adds v. ErrExists if the VSID has one.
func (s *Store) AddVirtualSubnet(v VirtualSubnet) (VirtualSubnet, error) {
	err := s.update(func(x *tx) error {
		if err := checkVirtualSubnet(&v); err != nil {
			return err
		}
		if _, ok := x.t.subnets[v.VirtualSubnetID]; ok {
			return existsf("VirtualSubnetID %d already has a virtual subnet: change it with Set", v.VirtualSubnetID)
		}
		m := maps.Clone(x.t.subnets)
		if m == nil {
			m = map[VSID]Encapsulation{}
		}
		m[v.VirtualSubnetID] = v.Encapsulation
		x.setSubnets(m)
		return nil
	})
	return v, err
}

// VirtualSubnets returns the virtual subnets matching f, by VSID.
func (s *Store) VirtualSubnets(f VirtualSubnetFilter) []VirtualSubnet {
	return s.Table().VirtualSubnets(f)
}

// SetVirtualSubnets changes every virtual subnet matching f and returns them
// as changed. ErrNotFound if none match.
func (s *Store) SetVirtualSubnets(f VirtualSubnetFilter, c VirtualSubnetChange) ([]VirtualSubnet, error) {
	var out []VirtualSubnet
	err := s.update(func(x *tx) error {
		out = x.t.VirtualSubnets(f)
		if len(out) == 0 {
			return notFoundf("no virtual subnet has %s", &f)
		}
		if c.Encapsulation == nil {
			return nil
		}
		m := maps.Clone(x.t.subnets)
		for i := range out {
			out[i].Encapsulation = *c.Encapsulation
			if err := checkVirtualSubnet(&out[i]); err != nil {
				return err
			}
			m[out[i].VirtualSubnetID] = *c.Encapsulation
		}
		x.setSubnets(m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveVirtualSubnets removes the virtual subnets matching f (all for an
// empty filter), returning their VSIDs to NVGRE. ErrNotFound if a non-empty
// filter matches none.
func (s *Store) RemoveVirtualSubnets(f VirtualSubnetFilter) ([]VirtualSubnet, error) {
	var out []VirtualSubnet
	err := s.update(func(x *tx) error {
		out = x.t.VirtualSubnets(f)
		if len(out) == 0 {
			if f.VirtualSubnetID != 0 {
				return notFoundf("no virtual subnet has %s", &f)
			}
			return nil
		}
		m := maps.Clone(x.t.subnets)
		for _, v := range out {
			delete(m, v.VirtualSubnetID)
		}
		x.setSubnets(m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []VirtualSubnet{}
	}
	return out, nil
}
