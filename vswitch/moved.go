package vswitch

import (
	"net/netip"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// Moved is a VM that migrated away from this host: for a grace period,
// packets still arriving for its MAC in VSID are forwarded to NewPA.
type Moved struct {
	VSID  policy.VSID
	MAC   packet.MAC
	NewPA netip.Addr
}

// MovedTable is an immutable set of moved VMs, indexed for the fast path.
type MovedTable struct {
	byMAC map[vsidMAC]netip.Addr
}

// NewMovedTable indexes moved VMs; a later entry for the same (VSID, MAC)
// wins.
func NewMovedTable(moved []Moved) *MovedTable {
	t := &MovedTable{byMAC: make(map[vsidMAC]netip.Addr, len(moved))}
	for _, m := range moved {
		t.byMAC[vsidMAC{m.VSID, m.MAC}] = m.NewPA
	}
	return t
}

// SetMoved installs the moved VMs; nil or an empty table forwards nothing
// and costs the fast path one atomic load.
func (s *Switch) SetMoved(t *MovedTable) {
	if t != nil && len(t.byMAC) == 0 {
		t = nil
	}
	s.moved.Store(t)
}

// forwardMoved returns a Forward verdict for a packet from srcPA to local
// dstPA whose inner destination MAC is a VM that moved away and has no port
// here any more. The inner source is not validated here: the new host checks
// it against the original sender's PA, which the forwarded packet keeps as
// its outer source.
func (s *Switch) forwardMoved(srcPA, dstPA netip.Addr, vsid policy.VSID, mac packet.MAC, dstCA netip.Addr) (Result, bool) {
	t := s.moved.Load()
	if t == nil {
		return Result{}, false
	}
	newPA, ok := t.byMAC[vsidMAC{vsid, mac}]
	if !ok || newPA == dstPA {
		return Result{}, false
	}
	if _, local := s.ports.Load().ByMAC(vsid, mac); local {
		return Result{}, false
	}
	return Result{Action: Forward, Src: srcPA, Dst: newPA,
		Redirect: RedirectInfo{VSID: vsid, CA: dstCA, PA: dstPA, NewPA: newPA}}, true
}
