package vswitch

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/wnv/wnv/policy"
)

// PortCounters count one VM port's traffic. Rx is from the VM into the switch,
// Tx is from the switch to the VM.
type PortCounters struct {
	RxFrames, RxBytes, TxFrames, TxBytes, Drops atomic.Uint64
}

// VSIDCounters count one virtual subnet's traffic on this host. Flooded
// counts the copies flooding makes in a subnet with L2Only records: one per
// remote PA and local port a VM's frame goes to, one per local port a frame
// from the underlay goes to; they are not in Encapsulated, Decapsulated or
// Local.
type VSIDCounters struct {
	Encapsulated, Decapsulated, Local, Replies, Flooded, Drops atomic.Uint64
}

// Counters are the switch's statistics. Updates are atomic adds on counters
// found through lock-free reads; new per-port and per-VSID entries are created
// under a mutex only the first time a port index or VSID is seen.
type Counters struct {
	reasons [numReasons]atomic.Uint64

	mu    sync.Mutex
	ports atomic.Pointer[[]*PortCounters]
	vsids atomic.Pointer[map[policy.VSID]*VSIDCounters]
}

func newCounters() *Counters {
	c := &Counters{}
	ports := []*PortCounters{}
	vsids := map[policy.VSID]*VSIDCounters{}
	c.ports.Store(&ports)
	c.vsids.Store(&vsids)
	return c
}

// Port returns the counters of port index i, creating them on first use.
func (c *Counters) Port(i int) *PortCounters {
	if ps := *c.ports.Load(); i >= 0 && i < len(ps) && ps[i] != nil {
		return ps[i]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := *c.ports.Load()
	if i < len(ps) && ps[i] != nil {
		return ps[i]
	}
	n := make([]*PortCounters, max(len(ps), i+1))
	copy(n, ps)
	n[i] = &PortCounters{}
	c.ports.Store(&n)
	return n[i]
}

// ResetPort forgets port index i's counters, so a new port reusing the index
// starts from zero.
func (c *Counters) ResetPort(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := *c.ports.Load()
	if i < 0 || i >= len(ps) {
		return
	}
	n := make([]*PortCounters, len(ps))
	copy(n, ps)
	n[i] = nil
	c.ports.Store(&n)
}

// VSID returns the counters of a virtual subnet, creating them on first use.
func (c *Counters) VSID(v policy.VSID) *VSIDCounters {
	if vc, ok := (*c.vsids.Load())[v]; ok {
		return vc
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := *c.vsids.Load()
	if vc, ok := m[v]; ok {
		return vc
	}
	n := make(map[policy.VSID]*VSIDCounters, len(m)+1)
	for k, vc := range m {
		n[k] = vc
	}
	vc := &VSIDCounters{}
	n[v] = vc
	c.vsids.Store(&n)
	return vc
}

// Drop counts a drop for reason r.
func (c *Counters) Drop(r Reason) { c.reasons[r].Add(1) }

// Dropped is the number of drops for reason r.
func (c *Counters) Dropped(r Reason) uint64 { return c.reasons[r].Load() }

// VSIDSnapshot is a copy of one VSID's counters.
type VSIDSnapshot struct {
	VSID                                                       policy.VSID
	Encapsulated, Decapsulated, Local, Replies, Flooded, Drops uint64
}

// PortSnapshot is a copy of one port's counters.
type PortSnapshot struct {
	Index                                       int
	RxFrames, RxBytes, TxFrames, TxBytes, Drops uint64
}

// Snapshot copies every counter; for reports, not the fast path.
func (c *Counters) Snapshot() (ports []PortSnapshot, vsids []VSIDSnapshot, reasons map[Reason]uint64) {
	for i, p := range *c.ports.Load() {
		if p == nil {
			continue
		}
		ports = append(ports, PortSnapshot{i, p.RxFrames.Load(), p.RxBytes.Load(), p.TxFrames.Load(), p.TxBytes.Load(), p.Drops.Load()})
	}
	for v, vc := range *c.vsids.Load() {
		vsids = append(vsids, VSIDSnapshot{v, vc.Encapsulated.Load(), vc.Decapsulated.Load(), vc.Local.Load(), vc.Replies.Load(), vc.Flooded.Load(), vc.Drops.Load()})
	}
	sort.Slice(vsids, func(i, j int) bool { return vsids[i].VSID < vsids[j].VSID })
	reasons = make(map[Reason]uint64, numReasons)
	for r := ReasonNone + 1; r < numReasons; r++ {
		reasons[r] = c.reasons[r].Load()
	}
	return ports, vsids, reasons
}
