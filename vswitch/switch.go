// Package vswitch is the pure switching pipeline of a wnv host: frames from VM
// ports and NVGRE or VXLAN packets from the underlay go in, verdicts and bytes
// come out. It does no I/O and allocates nothing per packet; policy and ports are
// immutable snapshots swapped atomically by the shell.
package vswitch

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// GatewayMAC is the MAC of the distributed virtual gateway that answers for
// every subnet's gateway address and sources routed frames. Locally
// administered, so it cannot collide with a vendor-assigned VM MAC.
var GatewayMAC = packet.MAC{0x02, 0x57, 0x4e, 0x56, 0x00, 0x01}

// Headroom is the space a caller leaves in front of a frame read from a VM
// port so the switch can prepend the encapsulation header in place.
const Headroom = 64

// EventSink receives policy-mismatch events. It is called on the fast path and
// must not block; merging and rate limiting are its business.
type EventSink interface {
	PolicyMismatch(vsid uint32, ca, pa netip.Addr)
}

// Action is what the caller must do with a processed frame.
type Action uint8

const (
	// Drop: the frame is consumed; Result.Reason says why.
	Drop Action = iota
	// ToPort: write Result.Data to the VM port Result.Port.
	ToPort
	// ToUnderlay: send Result.Data (the GRE or VXLAN header, per
	// Result.Encap, and the inner frame) from provider address Result.Src to
	// Result.Dst.
	ToUnderlay
	// Redirect: a valid redirect arrived; the caller moves the lookup record
	// of Result.Redirect.CA to Result.Redirect.NewPA and raises the
	// notification.
	Redirect
	// Hold: no lookup record yet for Result.Miss (only with SetHoldMisses);
	// the caller parks a copy of the frame until policy arrives and feeds it
	// again with FromPortHeld. A policy mismatch was raised.
	Hold
	// Forward: the packet is for a VM that migrated away; send Result.Data
	// unchanged from Result.Src (the original sender's PA) to Result.Dst
	// (the VM's new PA), and redirect the sender (Result.Redirect).
	Forward
	// Flood: a broadcast, or an ARP or ND request policy cannot answer, in a
	// virtual subnet with L2Only records. Data is an encapsulation header
	// (per Encap) followed by the inner frame; Result.Copies says where
	// copies go.
	Flood
	// Rewritten: Data is an Ethernet frame whose IP packet was rewritten
	// for IP Rewrite (Rule Nat), from CA to PA; send the IP packet,
	// Data[EthernetHeaderLen:], as it is to the underlay, from provider
	// address Result.Src to Result.Dst.
	Rewritten
)

// Copies are the destinations of a Flood verdict, lists shared with the
// policy and port snapshots: read them, never modify them.
type Copies struct {
	// Paths each get Data, from Src to Dst.
	Paths []policy.Path
	// Ports, all but Except (the sender, or -1), get the inner frame
	// Data[EncapHeaderLen:].
	Ports  []int
	Except int
}

// RedirectInfo is a redirect the switch accepted: CA of VSID moved from PA to
// NewPA.
type RedirectInfo struct {
	VSID          policy.VSID
	CA, PA, NewPA netip.Addr
}

// Result is the verdict for one frame. Data aliases either the input buffer
// or the caller's scratch buffer.
type Result struct {
	Action   Action
	Reason   Reason
	Port     int
	Src, Dst netip.Addr
	Encap    policy.Encapsulation
	// FlowID is the ECMP entropy of an encapsulated packet's inner flow: the
	// NVGRE FlowID, and what picks a VXLAN packet's UDP source port.
	FlowID   uint8
	Data     []byte
	Redirect RedirectInfo
	Miss     Miss
	Copies   Copies
	// Learn, set with any Action, is a CA learned from a frame of a VM
	// with an L2Only record: the caller puts its Dynamic record in policy
	// (see learn.go). It points into the switch's table: copy it to keep it.
	Learn *Learned
	// Validated marks a ToPort verdict for a packet from the underlay that
	// passed every check for its (outer source PA, VSID, inner addresses):
	// the caller may install it in a fast path as an IngressDecision. For
	// an IP Rewrite packet (FromRewritten), Src and Dst are the PAs it
	// arrived with, and the decision is a RewriteIngressDecision.
	Validated bool
	// Reply marks a ToPort verdict whose Data the switch built (an ARP or
	// ND answer, an ICMP error) rather than the frame it was given.
	Reply bool
	// again is set on the way in for a frame switched again from the hold
	// queue.
	again bool
}

// Config holds the switch's fixed parameters.
type Config struct {
	// UnderlayMTU is the MTU of the provider network (e.g. 1500).
	UnderlayMTU int
	Events      EventSink
	Limits      Limits
}

// Switch is the pipeline with its current snapshots and counters. Process
// methods are safe for concurrent use by many workers.
type Switch struct {
	cfg      Config
	policy   atomic.Pointer[policy.Table]
	ports    atomic.Pointer[PortTable]
	moved    atomic.Pointer[MovedTable]
	hold     atomic.Bool
	gen      atomic.Uint64 // bumped after every policy or port change; empties Flows
	now      atomic.Int64  // Unix nanoseconds of the last Tick; 0: limits off
	limits   Limits
	negative *negativeCache
	learned  learnTable
	redirectKeysState
	Counters *Counters
	// tr records the decisions of a trace's shadow switch (see trace.go);
	// nil in a real one.
	tr *tracer
}

// New returns a switch with empty policy and no ports.
func New(cfg Config) *Switch {
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	limits := cfg.Limits.withDefaults()
	s := &Switch{cfg: cfg, limits: limits, negative: newNegativeCache(limits.NegativeEntries), Counters: newCounters()}
	s.ports.Store(&PortTable{})
	return s
}

// SetPolicy installs a policy snapshot; frames processed after it returns use it.
func (s *Switch) SetPolicy(t *policy.Table) {
	s.policy.Store(t)
	s.gen.Add(1)
}

// SetPorts installs a port snapshot.
func (s *Switch) SetPorts(p *PortTable) {
	s.ports.Store(p)
	s.gen.Add(1)
}

// Policy is the installed policy snapshot.
func (s *Switch) Policy() *policy.Table { return s.policy.Load() }

// Ports is the installed port snapshot.
func (s *Switch) Ports() *PortTable { return s.ports.Load() }

// Overhead is the bytes encapsulation e adds in front of an inner frame for
// an outer IPv4 or IPv6 header, counting the inner Ethernet header: NVGRE 42
// or 62, VXLAN 50 or 70. A port's MTU is the underlay MTU minus this.
func Overhead(e policy.Encapsulation, v6 bool) int {
	n := packet.IPv4HeaderLen + packet.EthernetHeaderLen
	if v6 {
		n = packet.IPv6HeaderLen + packet.EthernetHeaderLen
	}
	if e == policy.EncapVXLAN {
		return n + packet.UDPHeaderLen + packet.VXLANHeaderLen
	}
	return n + packet.NVGREHeaderLen
}

func (s *Switch) drop(r Reason) Result {
	s.Counters.Drop(r)
	if s.tr != nil {
		s.tr.drop(r)
	}
	return Result{Action: Drop, Reason: r}
}

func (s *Switch) mismatch(vsid policy.VSID, ca, pa netip.Addr) {
	if s.cfg.Events != nil {
		s.cfg.Events.PolicyMismatch(uint32(vsid), ca, pa)
	}
}

// FlowID spreads flows over ECMP paths: a multiplicative hash of the inner
// addresses, protocol and TCP/UDP ports (0 for other protocols) folded to 8
// bits. The fast path computes the same (fastpath/bpf/datapath.c flow_id),
// so a flow keeps its FlowID whichever path encapsulates it.
func FlowID(src, dst netip.Addr, proto uint8, sport, dport uint16) uint8 {
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		return flowID4(uint64(binary.BigEndian.Uint32(s[:]))<<32|uint64(binary.BigEndian.Uint32(d[:])), proto, sport, dport)
	}
	ports := uint64(proto)<<32 ^ uint64(sport)<<16 ^ uint64(dport)
	s, d := src.As16(), dst.As16()
	h := binary.LittleEndian.Uint64(s[:8]) ^ binary.LittleEndian.Uint64(d[:8])*0x9e3779b97f4a7c15
	h = (h ^ binary.LittleEndian.Uint64(s[8:])) * 0xbf58476d1ce4e5b9
	h = (h ^ binary.LittleEndian.Uint64(d[8:])) * 0x94d049bb133111eb
	return uint8((h ^ ports) * 0x9e3779b97f4a7c15 >> 56)
}

// flowID4 is FlowID of IPv4 source and destination addresses read as one
// big-endian word, as they sit in the header.
func flowID4(addrs uint64, proto uint8, sport, dport uint16) uint8 {
	ports := uint64(proto)<<32 ^ uint64(sport)<<16 ^ uint64(dport)
	h := addrs * 0x9e3779b97f4a7c15
	return uint8((h ^ ports) * 0xbf58476d1ce4e5b9 >> 56)
}
