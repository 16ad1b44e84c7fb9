package vswitch

import (
	"encoding/binary"
	"net/netip"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// Flows is one worker's cache of forwarding decisions, keyed by (port,
// destination CA): what policy says about a destination (lookup record,
// routing, local or remote PA, encapsulation) is worked out once and reused
// by the next packets of the flow, so the fast path does one small,
// cache-resident lookup instead of several map lookups in a policy of
// millions of records. Per-packet checks (source MAC and CA, TTL, MTU) still
// run on every packet. Any change of policy or ports empties the cache.
//
// A Flows belongs to one worker: it is not safe for concurrent use. It holds
// 4096 decisions in 280 KiB. It also keeps the counts of the packets it
// switched (frames and bytes received, frames encapsulated) until Flush adds
// them to the switch's Counters, which the worker does after every batch.
type Flows struct {
	// sets comes first: a Flows is a large allocation, so page-aligned, and
	// each 64-byte entry then sits in one cache line instead of straddling
	// two.
	sets [flowSets][flowWays]flowEntry
	// gws[i][j] is the source MAC of the routed frames of sets[i][j] (see
	// gatewayMAC), apart so that an entry still fills one cache line: only
	// routed frames read it.
	gws [flowSets][flowWays]packet.MAC
	gen uint64

	// Fast-path counts not yet added to the switch's Counters: an atomic
	// add per counter per packet cost as much as the lookup.
	pc                *PortCounters
	rxFrames, rxBytes uint64
	vc                *VSIDCounters
	encapsulated      uint64

	record  bool       // keep new decisions for Decided
	decided []Decision // since the last Decided
	// forwarded are the sources since the last Forwarded.
	forwarded []ForwardedSource
}

const (
	flowSetBits = 10
	flowSets    = 1 << flowSetBits
	flowWays    = 4
)

// decision is the part of forwarding that depends only on policy, ports and
// the destination. It and its key fit one 64-byte cache line.
type decision struct {
	dstVSID policy.VSID
	local   int32      // local port index, or -1 to encapsulate
	mac     packet.MAC // the destination's, from its lookup record
	routed  bool
	encap   policy.Encapsulation
	dstPA   [16]byte // IPv4 as IPv4-mapped; see pa
	vc      *VSIDCounters
}

// pa is the destination's provider address, told IPv4 by its prefix
// without the copy and conversion of netip.AddrFrom16.
func (d *decision) pa() netip.Addr {
	if [12]byte(d.dstPA[:12]) == v4InV6Prefix {
		return netip.AddrFrom4([4]byte(d.dstPA[12:]))
	}
	return netip.AddrFrom16(d.dstPA)
}

var v4InV6Prefix = [12]byte{10: 0xff, 11: 0xff}

// flowKey is a destination as a port's packets carry it: the address bytes
// straight from the IP header (IPv4 in a alone), and in tag the port and
// the family, so that an IPv6 packet to ::ffff:a.b.c.d never takes the
// decision made for IPv4 a.b.c.d. Tag 0 marks an empty entry.
type flowKey struct {
	a, b uint64
	tag  uint64
}

// newFlowKey keys the 4- or 16-byte destination address dst of port's
// packets.
func newFlowKey(port int, dst []byte) flowKey {
	if len(dst) == 4 {
		return flowKey{a: uint64(binary.LittleEndian.Uint32(dst)), tag: uint64(port)<<2 | 1}
	}
	return flowKey{a: binary.LittleEndian.Uint64(dst[:8]), b: binary.LittleEndian.Uint64(dst[8:16]), tag: uint64(port)<<2 | 3}
}

// set hashes k to the index of its set, with a multiply whose top bits
// depend on every input bit.
func (k flowKey) set() int {
	return int((k.a ^ k.b*0x9e3779b97f4a7c15 ^ k.tag) * 0xbf58476d1ce4e5b9 >> (64 - flowSetBits))
}

type flowEntry struct {
	key flowKey
	d   decision
}

// NewFlows returns an empty cache for one worker.
func NewFlows() *Flows { return &Flows{} }

// sync empties f if policy or ports changed since it was filled.
func (f *Flows) sync(gen uint64) {
	if f.gen != gen {
		clear(f.sets[:])
		f.gen = gen
	}
}

// lookup returns the decision cached for k and where the source MAC of its
// routed frames is, or nil.
func (f *Flows) lookup(k flowKey) (*decision, *packet.MAC) {
	if f == nil {
		return nil, nil
	}
	n := k.set()
	set := &f.sets[n]
	for i := range set {
		if set[i].key == k {
			return &set[i].d, &f.gws[n][i]
		}
	}
	return nil, nil
}

// insert puts d, with gw the source MAC of its routed frames, first in its
// set, pushing out the least recently inserted.
func (f *Flows) insert(k flowKey, d *decision, gw packet.MAC) {
	if f == nil {
		return
	}
	n := k.set()
	set, gws := &f.sets[n], &f.gws[n]
	copy(set[1:], set[:flowWays-1])
	copy(gws[1:], gws[:flowWays-1])
	set[0] = flowEntry{key: k, d: *d}
	gws[0] = gw
}

func (f *Flows) countRx(pc *PortCounters, n int) {
	if f.pc != pc {
		f.flushRx()
		f.pc = pc
	}
	f.rxFrames++
	f.rxBytes += uint64(n)
}

func (f *Flows) countEncap(vc *VSIDCounters) {
	if f.vc != vc {
		f.flushEncap()
		f.vc = vc
	}
	f.encapsulated++
}

func (f *Flows) flushRx() {
	if f.rxFrames > 0 {
		f.pc.RxFrames.Add(f.rxFrames)
		f.pc.RxBytes.Add(f.rxBytes)
		f.rxFrames, f.rxBytes = 0, 0
	}
}

func (f *Flows) flushEncap() {
	if f.encapsulated > 0 {
		f.vc.Encapsulated.Add(f.encapsulated)
		f.encapsulated = 0
	}
}

// Flush adds the counts f accumulated to the switch's Counters.
func (f *Flows) Flush() {
	f.flushRx()
	f.flushEncap()
}
