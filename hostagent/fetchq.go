package hostagent

import (
	"net/netip"

	"github.com/wnv/wnv/policy"
)

// lookupKey is one on-demand lookup: the record of CA in VSID.
type lookupKey struct {
	vsid policy.VSID
	ca   netip.Addr
}

// fetchQueue holds the lookups waiting for a slot, served round-robin by
// VSID so that one VM flooding unknown destinations delays another
// tenant's lookup by one turn at most. Each VSID queues at most perVSID
// keys and the queue at most total; a key beyond that is dropped (the host
// raises the mismatch again after its dedup window).
type fetchQueue struct {
	perVSID, total int
	byVSID         map[policy.VSID][]lookupKey
	ring           []policy.VSID // VSIDs with queued keys, in serving order
	queued         map[lookupKey]bool
}

func newFetchQueue(perVSID, total int) fetchQueue {
	return fetchQueue{perVSID: perVSID, total: total, byVSID: map[policy.VSID][]lookupKey{}, queued: map[lookupKey]bool{}}
}

// push queues k; it reports false when k is queued already or over a bound.
func (q *fetchQueue) push(k lookupKey) bool {
	if q.queued[k] || len(q.queued) >= q.total || len(q.byVSID[k.vsid]) >= q.perVSID {
		return false
	}
	if len(q.byVSID[k.vsid]) == 0 {
		q.ring = append(q.ring, k.vsid)
	}
	q.byVSID[k.vsid] = append(q.byVSID[k.vsid], k)
	q.queued[k] = true
	return true
}

// pop returns the next key: the oldest of the VSID whose turn it is.
func (q *fetchQueue) pop() (lookupKey, bool) {
	if len(q.ring) == 0 {
		return lookupKey{}, false
	}
	v := q.ring[0]
	q.ring = q.ring[1:]
	ks := q.byVSID[v]
	k := ks[0]
	if len(ks) == 1 {
		delete(q.byVSID, v)
	} else {
		q.byVSID[v] = ks[1:]
		q.ring = append(q.ring, v)
	}
	delete(q.queued, k)
	return k, true
}
