package fastpath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// PortCounters count a port's frames the fast path switched.
type PortCounters struct {
	RxFrames, RxBytes uint64 // from the VM, forwarded by the fast path
	TxFrames, TxBytes uint64 // delivered to the VM by the fast path
	Drops             uint64
}

// VSIDCounters count a virtual subnet's frames the fast path switched.
type VSIDCounters struct {
	Encapsulated, Decapsulated, Local, Drops uint64
}

// PathCounters count frames by the path they took.
type PathCounters struct {
	PortFast     uint64 // from ports, forwarded by the fast path
	UnderlayFast uint64 // from the underlay, decapsulated by the fast path
	PortSlow     uint64 // from ports, handed to the slow path
	UnderlaySlow uint64 // tunnel packets to a local PA left to the slow path
	// Errors are frames dropped because a helper failed after the frame
	// was changed (the kernel could not write it): none in practice.
	Errors uint64
}

// Counters are the fast path's counts, summed over CPUs.
type Counters struct {
	Ports   map[int]PortCounters // by port index; ports with counts only
	VSIDs   map[uint32]VSIDCounters
	Reasons [NumReasonSlots]uint64 // drops by vswitch.Reason number
	Path    PathCounters
}

// EnsureVSID creates the counters of vsid (the programs count only VSIDs
// that have them). Existing counts are kept.
func (d *Datapath) EnsureVSID(vsid uint32) error {
	zero := make([]datapathVsidStats, ebpf.MustPossibleCPU())
	err := d.objs.WnvVsidStats.Update(vsid, zero, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("fast path: create the counters of VSID %d: %w", vsid, err)
	}
	return nil
}

// RemoveVSID removes the counters of vsid.
func (d *Datapath) RemoveVSID(vsid uint32) error {
	if err := d.objs.WnvVsidStats.Delete(vsid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("fast path: remove the counters of VSID %d: %w", vsid, err)
	}
	return nil
}

// Counters reads and sums the per-CPU counters.
func (d *Datapath) Counters() (Counters, error) {
	c := Counters{Ports: map[int]PortCounters{}, VSIDs: map[uint32]VSIDCounters{}}
	err := eachPerCPU(d.objs.WnvPortStats, func(idx uint32, ps []datapathPortStats) {
		var s PortCounters
		for _, p := range ps {
			s.RxFrames += p.RxFrames
			s.RxBytes += p.RxBytes
			s.TxFrames += p.TxFrames
			s.TxBytes += p.TxBytes
			s.Drops += p.Drops
		}
		if s != (PortCounters{}) {
			c.Ports[int(idx)] = s
		}
	})
	if err != nil {
		return c, fmt.Errorf("fast path: read the port counters: %w", err)
	}
	var (
		vsid uint32
		vs   []datapathVsidStats
	)
	it := d.objs.WnvVsidStats.Iterate()
	for it.Next(&vsid, &vs) {
		var s VSIDCounters
		for _, v := range vs {
			s.Encapsulated += v.Encapsulated
			s.Decapsulated += v.Decapsulated
			s.Local += v.Local
			s.Drops += v.Drops
		}
		c.VSIDs[vsid] = s
	}
	if err := it.Err(); err != nil {
		return c, fmt.Errorf("fast path: read the VSID counters: %w", err)
	}
	err = eachPerCPU(d.objs.WnvReasons, func(idx uint32, per []uint64) {
		if idx < NumReasonSlots {
			for _, n := range per {
				c.Reasons[idx] += n
			}
		}
	})
	if err != nil {
		return c, fmt.Errorf("fast path: read the drop reasons: %w", err)
	}
	path := []*uint64{&c.Path.PortFast, &c.Path.UnderlayFast, &c.Path.PortSlow, &c.Path.UnderlaySlow, &c.Path.Errors}
	err = eachPerCPU(d.objs.WnvPathStats, func(idx uint32, per []uint64) {
		if int(idx) < len(path) {
			for _, n := range per {
				*path[idx] += n
			}
		}
	})
	if err != nil {
		return c, fmt.Errorf("fast path: read the path counters: %w", err)
	}
	return c, nil
}

// eachPerCPU calls fn with every entry of the per-CPU array m, read in one
// batch. The port array has a slot per possible port index (4096): read one
// entry at a time, that is 8192 syscalls and tens of milliseconds for every
// port listing, which the host agent makes while a migrating VM waits for
// its port.
func eachPerCPU[V any](m *ebpf.Map, fn func(key uint32, perCPU []V)) error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	keys := make([]uint32, m.MaxEntries())
	vals := make([]V, len(keys)*ncpu)
	var cursor ebpf.MapBatchCursor
	n, err := m.BatchLookup(&cursor, keys, vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	for i, k := range keys[:n] {
		fn(k, vals[i*ncpu:(i+1)*ncpu])
	}
	return nil
}
