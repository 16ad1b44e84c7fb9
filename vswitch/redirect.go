package vswitch

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// A redirect moves this host's traffic for a CA to another PA, so it is
// checked as far as a receiver can alone: the NewPA must be a unicast
// address of the PA's family that is not this host's, and with pairwise
// keys installed the message must carry the MAC of the key this host's PA
// shares with the sender and a sequence number above the last one accepted
// from it.

// RedirectKey is the key LocalPA (this host's) and PeerPA share for
// redirects between them.
type RedirectKey struct {
	LocalPA, PeerPA netip.Addr
	Key             [32]byte
}

// MaxRedirectKeys bounds the pairwise keys a host holds.
const MaxRedirectKeys = 65536

type paPair struct{ local, peer netip.Addr }

// peerKey is one installed key with the last sequence number accepted
// under it, which guards against replay.
type peerKey struct {
	key     [32]byte
	lastSeq atomic.Uint64
}

// redirectKeys is the installed key set; replaced whole, read lock-free.
type redirectKeys struct {
	byPair map[paPair]*peerKey
}

// SetRedirectKeys replaces the pairwise redirect keys. A pair that keeps
// its key keeps its last sequence number, so a re-push opens no replay
// window. Addresses must be valid and of one family per pair, each pair
// given once.
func (s *Switch) SetRedirectKeys(keys []RedirectKey) error {
	if len(keys) > MaxRedirectKeys {
		return fmt.Errorf("%d redirect keys exceed the limit of %d", len(keys), MaxRedirectKeys)
	}
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	old := s.rkeys.Load()
	n := &redirectKeys{byPair: make(map[paPair]*peerKey, len(keys))}
	for i, k := range keys {
		if !k.LocalPA.IsValid() || !k.PeerPA.IsValid() || k.LocalPA.Is4() != k.PeerPA.Is4() {
			return fmt.Errorf("redirect key %d has LocalPA %s and PeerPA %s: both must be addresses of one family", i, k.LocalPA, k.PeerPA)
		}
		p := paPair{k.LocalPA.Unmap(), k.PeerPA.Unmap()}
		if _, dup := n.byPair[p]; dup {
			return fmt.Errorf("redirect key %d repeats LocalPA %s and PeerPA %s: give each pair once", i, k.LocalPA, k.PeerPA)
		}
		pk := &peerKey{key: k.Key}
		if old != nil {
			if o, ok := old.byPair[p]; ok && o.key == k.Key {
				pk.lastSeq.Store(o.lastSeq.Load())
			}
		}
		n.byPair[p] = pk
	}
	s.rkeys.Store(n)
	return nil
}

// RedirectKeyCount is how many pairwise keys are installed.
func (s *Switch) RedirectKeyCount() int {
	if k := s.rkeys.Load(); k != nil {
		return len(k.byPair)
	}
	return 0
}

// RedirectKeyFor returns the key local shares with peer, to sign a
// redirect to it.
func (s *Switch) RedirectKeyFor(local, peer netip.Addr) (*[32]byte, bool) {
	k := s.rkeys.Load()
	if k == nil {
		return nil, false
	}
	pk, ok := k.byPair[paPair{local, peer}]
	if !ok {
		return nil, false
	}
	return &pk.key, true
}

// SetUnauthenticatedRedirects lets redirects without a MAC in while no
// key at all is installed (a host without key distribution); off, they
// are dropped as redirect-unauthenticated.
func (s *Switch) SetUnauthenticatedRedirects(allow bool) { s.unauthRedirects.Store(allow) }

// redirectKeysState is the Switch's part for redirects.
type redirectKeysState struct {
	keysMu          sync.Mutex // serialises SetRedirectKeys
	rkeys           atomic.Pointer[redirectKeys]
	unauthRedirects atomic.Bool
}

// redirect accepts a redirect only from the PA it says the CA moved away from,
// to a NewPA that can be another host's, authenticated when keys are
// installed, and only while this host's record still points there; a
// redirect that arrives after the record was updated (by watch, say) is stale.
func (s *Switch) redirect(t *policy.Table, srcPA, dstPA netip.Addr, vsid policy.VSID, eth packet.Ethernet) Result {
	if eth.Src() != GatewayMAC || eth.Dst() != GatewayMAC {
		return s.drop(ReasonBadRedirect)
	}
	m, err := packet.ParseRedirect(eth.Payload())
	if err != nil || policy.VSID(m.VSID()) != vsid || m.PA() != srcPA || m.NewPA() == srcPA {
		return s.drop(ReasonBadRedirect)
	}
	newPA := m.NewPA()
	switch {
	case newPA.Is4() != srcPA.Is4():
		return s.drop(ReasonRedirectFamily)
	case newPA.IsUnspecified():
		return s.drop(ReasonRedirectUnspecified)
	case newPA.IsLoopback():
		return s.drop(ReasonRedirectLoopback)
	case !newPA.IsGlobalUnicast():
		return s.drop(ReasonRedirectNotUnicast)
	case t.IsLocalPA(newPA):
		return s.drop(ReasonRedirectOwnPA)
	}
	if reason := s.authenticate(m, dstPA, srcPA); reason != ReasonNone {
		return s.drop(reason)
	}
	ca := m.CA()
	rec, ok := t.LookupCA(vsid, ca)
	if !ok || rec.ProviderAddress != srcPA {
		return s.drop(ReasonStaleRedirect)
	}
	if s.tr != nil {
		s.tr.note("redirect", "redirect accepted: %s in VSID %d moved from PA %s to %s; the lookup record is updated", ca, vsid, srcPA, newPA)
	}
	return Result{Action: Redirect, Redirect: RedirectInfo{VSID: vsid, CA: ca, PA: srcPA, NewPA: newPA}}
}

// authenticate checks m, from peer to local, against the installed keys
// and records its sequence number.
func (s *Switch) authenticate(m packet.Redirect, local, peer netip.Addr) Reason {
	keys := s.rkeys.Load()
	if keys == nil || len(keys.byPair) == 0 {
		if s.unauthRedirects.Load() {
			return ReasonNone
		}
		return ReasonRedirectUnauthenticated
	}
	pk, ok := keys.byPair[paPair{local, peer}]
	if !ok {
		return ReasonRedirectUnauthenticated
	}
	if !packet.VerifyRedirect(m, &pk.key) {
		return ReasonRedirectBadMAC
	}
	seq := m.Sequence()
	for {
		last := pk.lastSeq.Load()
		if seq <= last {
			return ReasonRedirectReplay
		}
		if s.tr != nil {
			return ReasonNone // a trace records no sequence number
		}
		if pk.lastSeq.CompareAndSwap(last, seq) {
			return ReasonNone
		}
	}
}

// BuildRedirect writes into buf the NVGRE payload of an unsigned redirect
// with sequence number 0 telling a host that CA of vsid moved from pa (this
// host) to newPA, and returns it: what a host without keys sends, accepted
// only where SetUnauthenticatedRedirects allows it. buf needs 8 + 14 +
// packet.RedirectLen bytes.
func BuildRedirect(buf []byte, vsid policy.VSID, ca, pa, newPA netip.Addr) []byte {
	return BuildSignedRedirect(buf, vsid, ca, pa, newPA, 0, nil)
}

// BuildSignedRedirect is BuildRedirect with sequence number seq, signed
// with key unless it is nil.
func BuildSignedRedirect(buf []byte, vsid policy.VSID, ca, pa, newPA netip.Addr, seq uint64, key *[32]byte) []byte {
	n := packet.PutNVGRE(buf, uint32(vsid), 0)
	n += packet.PutEthernet(buf[n:], GatewayMAC, GatewayMAC, packet.EtherTypeWNVControl)
	body := buf[n:]
	n += packet.PutRedirect(body, uint32(vsid), ca, pa, newPA, seq)
	if key != nil {
		packet.SignRedirect(body, key)
	}
	return buf[:n]
}
