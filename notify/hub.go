package notify

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wnv/wnv/packet"
)

// Config sizes a Hub. Zero fields take the defaults.
type Config struct {
	// QueueDepth is the number of events queued per open handle and per type
	// (default 1024). When full, the oldest event is dropped and counted.
	QueueDepth int
	// DedupWindow is the per-key rate limit of policy mismatches: at most one
	// event per (VSID, CA, PA) per window (default 1s).
	DedupWindow time.Duration
	// MismatchKeys is how many (VSID, CA, PA) keys the rate limiter tracks
	// (default 12288, about 256 KiB); beyond it the least recent is evicted.
	MismatchKeys int
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
}

// TypeStats counts the events of one notification type.
type TypeStats struct {
	Raised      uint64 // events reported to the hub
	RateLimited uint64 // policy mismatches suppressed by the dedup window
	Merged      uint64 // per handle: events merged into an identical pending one
	Delivered   uint64 // per handle: events copied into a request buffer
	Dropped     uint64 // per handle: events lost to a full queue
}

// Stats is a snapshot of the hub's counters.
type Stats struct {
	Types        [NotificationTypeMax]TypeStats
	OpenHandles  int
	KeyEvictions uint64 // mismatch keys evicted from the full rate-limit table
}

// Hub fans events out to every open Subscriber. Its event methods are safe for
// concurrent use, never block and never allocate; PolicyMismatch is meant for
// the packet fast path: a repeated key costs a hash and a few atomics.
type Hub struct {
	cfg   Config
	epoch time.Time
	keys  *keyTable

	mu   sync.Mutex                    // serialises Subscribe/Close
	subs atomic.Pointer[[]*Subscriber] // copy on write

	raised    [NotificationTypeMax]atomic.Uint64 // mismatches: admitted only
	merged    [NotificationTypeMax]atomic.Uint64
	delivered [NotificationTypeMax]atomic.Uint64
	dropped   [NotificationTypeMax]atomic.Uint64
}

// NewHub returns a hub with cfg's sizes (defaults for zero fields).
func NewHub(cfg Config) *Hub {
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = 1024
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = time.Second
	}
	if cfg.MismatchKeys <= 0 {
		cfg.MismatchKeys = 12288
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Hub{cfg: cfg, epoch: cfg.Now()}
	h.keys = newKeyTable(cfg.MismatchKeys, int64(cfg.DedupWindow), rand.Uint64())
	h.subs.Store(&[]*Subscriber{})
	return h
}

// Config returns the effective configuration.
func (h *Hub) Config() Config { return h.cfg }

// now is hub time in nanoseconds, always > 0 so that 0 means "never".
func (h *Hub) now() int64 { return int64(h.cfg.Now().Sub(h.epoch)) + 1 }

// PolicyMismatch reports a packet whose (VSID, CA, PA) matches no lookup
// record. An invalid pa means "no PA known" (an outbound miss) and is encoded
// as PAFamily 0 (AF_UNSPEC) with a zero address.
func (h *Hub) PolicyMismatch(vsid uint32, ca, pa netip.Addr) {
	k := h.keys.key(vsid, ca, pa)
	if !h.keys.admit(k, h.now()) {
		return
	}
	h.raised[PolicyMismatchType].Add(1)
	var rec [PolicyMismatchSize]byte
	PutPolicyMismatch(rec[:], &PolicyMismatch{VirtualSubnetID: vsid, CA: ca, PA: pa})
	h.publish(PolicyMismatchType, rec[:], k)
}

// Resolved reports that policy for (vsid, ca, pa) arrived after a mismatch:
// should the policy go again, the next mismatch is news, not a repeat, and
// is raised at once instead of being held back by the dedup window (a
// packet waiting for it would wait in vain).
func (h *Hub) Resolved(vsid uint32, ca, pa netip.Addr) {
	h.keys.forget(h.keys.key(vsid, ca, pa))
}

// Redirect reports a received redirect: ca of vsid moved from pa to newPA.
func (h *Hub) Redirect(vsid uint32, ca, pa, newPA netip.Addr) {
	h.raised[RedirectType].Add(1)
	var rec [RedirectSize]byte
	PutRedirect(rec[:], &Redirect{VirtualSubnetID: vsid, CA: ca, PA: pa, NewPA: newPA})
	h.publish(RedirectType, rec[:], 0)
}

// ProviderAddressChange reports a PA's new DAD state (NL_DAD_STATE).
func (h *Hub) ProviderAddressChange(pa netip.Addr, state uint32) {
	h.raised[ObjectChangeType].Add(1)
	var rec [ObjectChangeSize]byte
	PutObjectChange(rec[:], &ObjectChange{ObjectType: ProviderAddressType,
		ProviderAddress: &ProviderAddressChange{PA: pa, AddressState: DADState(state)}})
	h.publish(ObjectChangeType, rec[:], 0)
}

// CustomerAddressChange reports a CA added, deleted or moved on this host
// (reason is a WNV_CA_NOTIFICATION_TYPE). An invalid ca or pa is encoded as
// family 0 with a zero address.
func (h *Hub) CustomerAddressChange(mac packet.MAC, ca netip.Addr, vsid uint32, pa netip.Addr, reason uint32) {
	h.raised[ObjectChangeType].Add(1)
	var rec [ObjectChangeSize]byte
	PutObjectChange(rec[:], &ObjectChange{ObjectType: CustomerAddressType,
		CustomerAddress: &CustomerAddressChange{MACAddress: mac, CA: ca, VirtualSubnetID: vsid, PA: pa, NotificationReason: CAReason(reason)}})
	h.publish(ObjectChangeType, rec[:], 0)
}

func (h *Hub) publish(t NotificationType, rec []byte, k uint64) {
	for _, s := range *h.subs.Load() {
		merged, dropped := s.q[t].push(rec, k)
		if merged {
			h.merged[t].Add(1)
		}
		if dropped {
			h.dropped[t].Add(1)
		}
	}
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	var s Stats
	for t := range s.Types {
		s.Types[t] = TypeStats{
			Raised:    h.raised[t].Load(),
			Merged:    h.merged[t].Load(),
			Delivered: h.delivered[t].Load(),
			Dropped:   h.dropped[t].Load(),
		}
	}
	rl := h.keys.suppressed()
	s.Types[PolicyMismatchType].RateLimited = rl
	s.Types[PolicyMismatchType].Raised += rl
	s.OpenHandles = len(*h.subs.Load())
	s.KeyEvictions = h.keys.evictions.Load()
	return s
}

// Subscriber is one open handle's view of the hub: a bounded queue per type.
// Events raised after Subscribe are queued for it until Close.
type Subscriber struct {
	h      *Hub
	q      [NotificationTypeMax]*queue
	closed atomic.Bool
}

// Subscribe opens a handle on the hub.
func (h *Hub) Subscribe() *Subscriber {
	s := &Subscriber{h: h}
	for t := range s.q {
		s.q[t] = newQueue(h.cfg.QueueDepth, recordSizes[t], NotificationType(t) == PolicyMismatchType)
	}
	h.mu.Lock()
	old := *h.subs.Load()
	subs := make([]*Subscriber, len(old), len(old)+1)
	copy(subs, old)
	subs = append(subs, s)
	h.subs.Store(&subs)
	h.mu.Unlock()
	return s
}

// Ready receives a token after events of type t are queued. A token may be
// stale: callers loop on Fill.
func (s *Subscriber) Ready(t NotificationType) <-chan struct{} { return s.q[t].ready }

// Fill moves as many whole queued structures of type t as fit into dst,
// oldest first, and returns the bytes written and how many events remain.
func (s *Subscriber) Fill(t NotificationType, dst []byte) (n int, pending uint32) {
	n, recs, pending := s.q[t].fill(dst)
	s.h.delivered[t].Add(uint64(recs))
	return n, pending
}

// Dropped is how many events of type t this handle lost to a full queue.
func (s *Subscriber) Dropped(t NotificationType) uint64 { return s.q[t].droppedCount() }

// Close detaches the handle from the hub; queued events are discarded.
func (s *Subscriber) Close() {
	if s.closed.Swap(true) {
		return
	}
	h := s.h
	h.mu.Lock()
	old := *h.subs.Load()
	subs := make([]*Subscriber, 0, len(old))
	for _, o := range old {
		if o != s {
			subs = append(subs, o)
		}
	}
	h.subs.Store(&subs)
	h.mu.Unlock()
}
