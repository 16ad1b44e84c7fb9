package vswitch

import (
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// Learning, as Windows Server 2012 R2 does it in subnets with L2Only
// records: a VM with an L2Only record configures its CAs itself, and the
// host learns them from what it sends (IP sources, ARP senders). The switch
// only decides: a frame from a CA the VM has no record for yet carries a
// Learned in its Result, and the shell adds the Dynamic lookup record, raises
// the customer-address-added notification and reports it. Once the record
// is in policy, ARP and ND for the CA are answered and packets to it are
// switched by CA like any other, without flooding.
//
// What is learned: a unicast CA inside one of the subnet's on-link prefixes
// (a record outside them would be unusable), not the gateway address, not
// one of the CAs the port was attached with (policy's to provision). A
// Static record is never overridden: a VM sending from a CA that a Static
// record gives another VM is dropped (static-ca). A Dynamic record of
// another MAC or PA is moved to this VM (the CA moved). A port learns at most
// Limits.LearnedPerPort CAs (learn-limit beyond), and a CA not heard from for
// Limits.LearnedAge is forgotten (ExpireLearned).

// Learned is a CA the switch learned on a local port: the shell puts the
// Dynamic lookup record Record (CA, VSID, the VM's MAC, the PA and Rule of
// its L2Only record) in policy.
type Learned struct {
	Port   int
	Record policy.LookupRecord
}

// learnRetry is how long the switch waits for the shell to put a learned
// record in policy before it asks again.
const learnRetry = int64(time.Second)

type learnKey struct {
	vsid policy.VSID
	ca   netip.Addr
}

type portKey struct {
	index int
	mac   packet.MAC
}

type learnEntry struct {
	Learned
	seen    atomic.Int64 // Unix nanoseconds of the last frame from the CA
	emitted atomic.Int64 // when the shell was last asked to put the record
}

// learnTable is what this host learned: read lock-free by the workers (a
// map replaced on every change, which only a new CA makes), written under mu.
type learnTable struct {
	mu      sync.Mutex
	entries atomic.Pointer[map[learnKey]*learnEntry]
	perPort map[portKey]int
}

func (lt *learnTable) get(k learnKey) *learnEntry {
	if m := lt.entries.Load(); m != nil {
		return (*m)[k]
	}
	return nil
}

// add makes l the entry of its CA, replacing another port's, unless l's
// port has limit entries already.
func (lt *learnTable) add(l Learned, mac packet.MAC, now int64, limit int) (*learnEntry, bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	k := learnKey{l.Record.VirtualSubnetID, l.Record.CustomerAddress}
	pk := portKey{l.Port, mac}
	if lt.perPort == nil {
		lt.perPort = map[portKey]int{}
	}
	var m map[learnKey]*learnEntry
	if old := lt.entries.Load(); old != nil {
		m = *old
	}
	if e, ok := m[k]; ok && e.Port == l.Port && e.Record.MACAddress == mac {
		return e, true // another worker was first
	}
	if lt.perPort[pk] >= limit {
		return nil, false
	}
	m = maps.Clone(m)
	if m == nil {
		m = map[learnKey]*learnEntry{}
	}
	if e, ok := m[k]; ok {
		lt.release(e)
	}
	e := &learnEntry{Learned: l}
	e.seen.Store(now)
	e.emitted.Store(now)
	m[k] = e
	lt.perPort[pk]++
	lt.entries.Store(&m)
	return e, true
}

// copyFrom makes lt what src holds now, for a trace's shadow switch: the
// entries are shared (a trace changes none of them) and the counts copied.
func (lt *learnTable) copyFrom(src *learnTable) {
	src.mu.Lock()
	defer src.mu.Unlock()
	lt.entries.Store(src.entries.Load())
	lt.perPort = maps.Clone(src.perPort)
}

func (lt *learnTable) release(e *learnEntry) {
	pk := portKey{e.Port, e.Record.MACAddress}
	if lt.perPort[pk]--; lt.perPort[pk] <= 0 {
		delete(lt.perPort, pk)
	}
}

// learn decides what frame, from port p, teaches the switch: nothing (nil),
// a CA to learn or to put in policy again, or a refusal (the frame is dropped
// for the reason). Frames learn only from a VM with an L2Only record; one
// with another source MAC is left to the switch's spoofing checks.
func (s *Switch) learn(p *PortConfig, frame []byte) (*Learned, Reason) {
	t := s.policy.Load()
	if t == nil {
		return nil, ReasonNone
	}
	l2 := t.L2Only(p.VSID).Records(p.MAC)
	if len(l2) == 0 {
		return nil, ReasonNone
	}
	ca, ok := sourceCA(frame, p.MAC)
	if !ok || p.owns(ca) {
		return nil, ReasonNone
	}
	pfx, onLink := t.OnLinkPrefix(p.VSID, ca)
	if !onLink || policy.GatewayAddress(pfx) == ca {
		return nil, ReasonNone
	}
	rec, has := t.LookupCA(p.VSID, ca)
	if has && rec.Type != policy.Dynamic {
		if rec.MACAddress == p.MAC {
			return nil, ReasonNone
		}
		return nil, ReasonStaticCA
	}
	l2rec := l2[0]
	for _, r := range l2 {
		if r.CustomerAddress.Is6() == ca.Is6() {
			l2rec = r
		}
	}
	current := has && rec.MACAddress == p.MAC && rec.ProviderAddress == l2rec.ProviderAddress
	now := s.now.Load()
	if e := s.learned.get(learnKey{p.VSID, ca}); e != nil && e.Port == p.Index && e.Record.MACAddress == p.MAC {
		if s.tr != nil {
			s.tr.learnt(p, ca, false)
			return nil, ReasonNone // a trace keeps no CA alive
		}
		if e.seen.Load() != now {
			e.seen.Store(now)
		}
		if current || now-e.emitted.Load() < learnRetry {
			return nil, ReasonNone
		}
		e.emitted.Store(now)
		return &e.Learned, ReasonNone
	}
	l := Learned{Port: p.Index, Record: policy.LookupRecord{CustomerAddress: ca, VirtualSubnetID: p.VSID, MACAddress: p.MAC,
		ProviderAddress: l2rec.ProviderAddress, Rule: l2rec.Rule, Type: policy.Dynamic, CustomerID: l2rec.CustomerID, VMName: l2rec.VMName}}
	e, ok := s.learned.add(l, p.MAC, now, s.limits.LearnedPerPort)
	switch {
	case !ok && current:
		return nil, ReasonNone // learned before (a checkpoint), beyond the bound now: left to its record
	case !ok:
		return nil, ReasonLearnLimit
	case current:
		return nil, ReasonNone // in policy already (a checkpoint): aged from now on
	}
	if s.tr != nil {
		s.tr.learnt(p, ca, true)
	}
	return &e.Learned, ReasonNone
}

// sourceCA is the CA a frame from the VM with MAC mac sends from: the IPv4
// or IPv6 source, or an ARP packet's sender address; ok is false for any
// other frame, a source that is not unicast, or one with another MAC.
func sourceCA(frame []byte, mac packet.MAC) (ca netip.Addr, ok bool) {
	eth, err := packet.ParseEthernet(frame)
	if err != nil || eth.HasVLAN() || eth.Src() != mac {
		return ca, false
	}
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			return ca, false
		}
		ca = ip.Src()
	case packet.EtherTypeIPv6:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil {
			return ca, false
		}
		ca = ip.Src()
	case packet.EtherTypeARP:
		a, err := packet.ParseARP(eth.Payload())
		if err != nil || a.SenderMAC() != mac {
			return ca, false
		}
		ca = a.SenderIP()
	default:
		return ca, false
	}
	return ca, ca.IsGlobalUnicast()
}

// ExpireLearned forgets the CAs learned here that were not heard from for
// Limits.LearnedAge before now, and those of ports that are gone, and
// appends them to dst: the shell removes their Dynamic records if they are
// still the ones it put (a CA that moved on has another's record by now)
// and raises customer-address-deleted. Learning is aged only from the first
// Tick on.
func (s *Switch) ExpireLearned(now time.Time, dst []Learned) []Learned {
	lt := &s.learned
	lt.mu.Lock()
	defer lt.mu.Unlock()
	old := lt.entries.Load()
	if old == nil || len(*old) == 0 {
		return dst
	}
	pt := s.ports.Load()
	cutoff := now.Add(-s.limits.LearnedAge).UnixNano()
	ticking := s.now.Load() != 0
	var m map[learnKey]*learnEntry
	for k, e := range *old {
		p, ok := pt.Port(e.Port)
		if ok && p.MAC == e.Record.MACAddress && p.VSID == e.Record.VirtualSubnetID && (!ticking || e.seen.Load() >= cutoff) {
			continue
		}
		if m == nil {
			m = maps.Clone(*old)
		}
		delete(m, k)
		lt.release(e)
		dst = append(dst, e.Learned)
	}
	if m != nil {
		lt.entries.Store(&m)
	}
	return dst
}

// LearnedCount is how many CAs this host learned and keeps.
func (s *Switch) LearnedCount() int {
	if m := s.learned.entries.Load(); m != nil {
		return len(*m)
	}
	return 0
}
