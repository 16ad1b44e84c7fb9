package host

import (
	"net/netip"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// applyRedirect moves the lookup record a redirect names to its new PA, so
// this host's switch sends there at once, and raises the redirect and
// customer-address-moved notifications (the latter from the store's moves).
func (h *Host) applyRedirect(r vswitch.RedirectInfo) {
	newPA := r.NewPA
	_, err := h.store.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{r.CA}, VirtualSubnetID: []policy.VSID{r.VSID}, ProviderAddress: []netip.Addr{r.PA}},
		policy.LookupRecordChange{ProviderAddress: &newPA, Unsynchronized: true})
	if err != nil {
		h.log.Warn("applying redirect", "vsid", r.VSID, "ca", r.CA, "pa", r.PA, "newPA", r.NewPA, "err", err)
		return
	}
	h.mig.redirectsApplied.Add(1)
	h.log.Info("redirect applied", "vsid", r.VSID, "ca", r.CA, "pa", r.PA, "newPA", r.NewPA)
	if h.hub == nil {
		return
	}
	h.hub.Redirect(uint32(r.VSID), r.CA, r.PA, r.NewPA)
}

// SendRedirect tells the host at peer that CA of vsid moved from this host's
// PA pa to newPA.
func (h *Host) SendRedirect(peer netip.Addr, vsid policy.VSID, ca, pa, newPA netip.Addr) error {
	sock := (*h.pas.socks.Load())[pa]
	if sock == nil {
		return &noSocketError{pa}
	}
	buf := make([]byte, 128)
	key, _ := h.sw.RedirectKeyFor(pa, peer)
	msg := vswitch.BuildSignedRedirect(buf, vsid, ca, pa, newPA, h.redirectSeq.Add(1), key)
	_, err := sock.gre.WriteBatch([]dataplane.Packet{{Buf: msg, N: len(msg), Src: pa, Dst: peer}})
	return err
}

// SetRedirectKeys replaces the pairwise keys this host's PAs share with
// other hosts' for redirects: a redirect from a peer PA to a local PA with a
// key must carry its MAC and a new sequence number, and redirects this host
// sends to such a peer carry them.
func (h *Host) SetRedirectKeys(keys []provider.RedirectKey) error {
	ks := make([]vswitch.RedirectKey, len(keys))
	for i, k := range keys {
		ks[i] = vswitch.RedirectKey(k)
	}
	if err := h.sw.SetRedirectKeys(ks); err != nil {
		return &policy.Error{Kind: policy.ErrInvalid, Msg: err.Error()}
	}
	h.log.Info("redirect keys installed", "keys", len(ks))
	return nil
}

// RedirectKeyCount is how many pairwise redirect keys are installed.
func (h *Host) RedirectKeyCount() int { return h.sw.RedirectKeyCount() }

type noSocketError struct{ pa netip.Addr }

func (e *noSocketError) Error() string {
	return "provider address " + e.pa.String() + " is not up on this host"
}
