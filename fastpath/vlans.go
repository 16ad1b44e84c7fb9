package fastpath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// MaxVLANID is the largest 802.1Q VLAN ID a PA may have (4095 is reserved).
const MaxVLANID = 4094

// VLANMark is the skb->mark of a frame wnvd sends from an address that is
// none of its PAs (a moved VM's packet forwarded with its sender's PA as
// source): the underlay's egress program tags it with the VLAN ID in the
// mark's low 12 bits (VLANMark|vlan; 0 leaves it untagged).
const VLANMark uint32 = 0x57560000

// SetPAVLAN tells the underlay programs that PA a is configured on the
// underlay with VLAN vlan (0: untagged): from now on its frames leave
// tagged with vlan, and frames for it are let in only with that VLAN,
// whose tag is popped. Set it before the PA sends anything (its DAD
// probes are tagged too).
func (d *Datapath) SetPAVLAN(a netip.Addr, vlan uint16) error {
	if !a.IsValid() {
		return errors.New("fast path: a PA with a VLAN is not a valid address")
	}
	a = a.Unmap()
	if vlan > MaxVLANID {
		return fmt.Errorf("fast path: VLAN ID %d of PA %s is out of range 0..%d", vlan, a, MaxVLANID)
	}
	k := datapathPaKey{Family: family(a), Addr: addr16(a)}
	if err := d.objs.WnvPaVlans.Put(&k, &vlan); err != nil {
		return fmt.Errorf("fast path: set the VLAN of PA %s: %w", a, err)
	}
	return nil
}

// RemovePAVLAN forgets PA a: the underlay programs leave its frames as
// they are.
func (d *Datapath) RemovePAVLAN(a netip.Addr) error {
	a = a.Unmap()
	k := datapathPaKey{Family: family(a), Addr: addr16(a)}
	if err := d.objs.WnvPaVlans.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("fast path: forget the VLAN of PA %s: %w", a, err)
	}
	return nil
}

// PAVLANs lists the PAs the underlay programs know, with their VLANs.
func (d *Datapath) PAVLANs() (map[netip.Addr]uint16, error) {
	var (
		k datapathPaKey
		v uint16
	)
	out := map[netip.Addr]uint16{}
	it := d.objs.WnvPaVlans.Iterate()
	for it.Next(&k, &v) {
		out[addrFrom(k.Family, k.Addr)] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fast path: list the PAs' VLANs: %w", err)
	}
	return out, nil
}

// UnderlayCounters count the 802.1Q work on one underlay interface.
type UnderlayCounters struct {
	TxTagged  uint64 // frames of a PA with a VLAN, tagged on the way out
	RxTagged  uint64 // frames of a PA's VLAN, accepted and untagged
	WrongVLAN uint64 // frames for a PA dropped: another VLAN, or untagged for a PA with one
}

// UnderlayCounters reads the counters of every underlay interface, by
// ifindex.
func (d *Datapath) UnderlayCounters() (map[int]UnderlayCounters, error) {
	var (
		ifindex uint32
		per     []datapathUnderlayStats
	)
	out := map[int]UnderlayCounters{}
	it := d.objs.WnvUnderlayStats.Iterate()
	for it.Next(&ifindex, &per) {
		var c UnderlayCounters
		for _, s := range per {
			c.TxTagged += s.TxTagged
			c.RxTagged += s.RxTagged
			c.WrongVLAN += s.WrongVlan
		}
		out[int(ifindex)] = c
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fast path: read the underlay counters: %w", err)
	}
	return out, nil
}
