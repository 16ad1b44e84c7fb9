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
	misses, floods                              rate
}

// VSIDCounters count one virtual subnet's traffic on this host. Flooded
// counts the copies flooding makes in a subnet with L2Only records: one per
// remote PA and local port a VM's frame goes to, one per local port a frame
// from the underlay goes to; they are not in Encapsulated, Decapsulated or
// Local.
type VSIDCounters struct {
	Encapsulated, Decapsulated, Local, Replies, Flooded, Drops atomic.Uint64
}

// UnknownVSID is the one bucket that counts packets from the underlay for
// VSIDs without a local port, and everything beyond MaxVSIDCounters: a
// remote party picks those VSIDs (any GRE key or VNI), so they must not
// create state each.
const UnknownVSID policy.VSID = 0

// MaxVSIDCounters bounds the per-VSID counter entries; a VSID seen after
// the table is full is counted in UnknownVSID (and in VSIDOverflow).
const MaxVSIDCounters = 16384

func (vc *VSIDCounters) zero() bool {
	return vc.Encapsulated.Load()|vc.Decapsulated.Load()|vc.Local.Load()|vc.Replies.Load()|vc.Flooded.Load()|vc.Drops.Load() == 0
}

// Counters are the switch's statistics. Updates are atomic adds on counters
// found through lock-free reads; new per-port entries are created under a
// mutex only the first time a port index is seen, per-VSID ones in a
// concurrent map that never copies itself.
type Counters struct {
	reasons [numReasons]atomic.Uint64

	mu    sync.Mutex
	ports atomic.Pointer[[]*PortCounters]
	vsids sync.Map // policy.VSID -> *VSIDCounters
	nvsid atomic.Int64
	// VSIDOverflow counts lookups of a new VSID refused by a full table.
	VSIDOverflow atomic.Uint64
	unknown      VSIDCounters
}

func newCounters() *Counters {
	c := &Counters{}
	ports := []*PortCounters{}
	c.ports.Store(&ports)
	c.vsids.Store(UnknownVSID, &c.unknown)
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

// VSID returns the counters of a virtual subnet, creating them on first
// use; past MaxVSIDCounters entries, the UnknownVSID bucket's. Callers pass
// only VSIDs that policy or a local port vouches for (see ForUnderlay).
func (c *Counters) VSID(v policy.VSID) *VSIDCounters {
	if vc, ok := c.vsids.Load(v); ok {
		return vc.(*VSIDCounters)
	}
	if c.nvsid.Add(1) > MaxVSIDCounters {
		c.nvsid.Add(-1)
		c.VSIDOverflow.Add(1)
		return &c.unknown
	}
	vc, loaded := c.vsids.LoadOrStore(v, &VSIDCounters{})
	if loaded {
		c.nvsid.Add(-1)
	}
	return vc.(*VSIDCounters)
}

// ForUnderlay returns the counters of v for a packet from the underlay:
// v's own if a local port is in v, else the UnknownVSID bucket.
func (c *Counters) ForUnderlay(pt *PortTable, v policy.VSID) *VSIDCounters {
	if !pt.HasVSID(v) {
		return &c.unknown
	}
	return c.VSID(v)
}

// VSIDEntries is how many VSIDs have counters of their own.
func (c *Counters) VSIDEntries() int { return int(c.nvsid.Load()) }

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
	c.vsids.Range(func(k, v any) bool {
		vc := v.(*VSIDCounters)
		if k.(policy.VSID) == UnknownVSID && vc.zero() {
			return true
		}
		vsids = append(vsids, VSIDSnapshot{k.(policy.VSID), vc.Encapsulated.Load(), vc.Decapsulated.Load(), vc.Local.Load(), vc.Replies.Load(), vc.Flooded.Load(), vc.Drops.Load()})
		return true
	})
	sort.Slice(vsids, func(i, j int) bool { return vsids[i].VSID < vsids[j].VSID })
	reasons = make(map[Reason]uint64, numReasons)
	for r := ReasonNone + 1; r < numReasons; r++ {
		reasons[r] = c.reasons[r].Load()
	}
	return ports, vsids, reasons
}
