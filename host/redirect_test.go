package host

import (
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// redirectHost is a host's policy and switch without I/O: PA 198.18.0.1,
// blue2's CA 10.0.0.11 of VSID 5001 at 198.18.0.2.
func redirectHost(t *testing.T) (*Host, netip.Addr, netip.Addr) {
	pa1, pa2 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	h := &Host{store: policy.NewStore(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), sw: vswitch.New(vswitch.Config{})}
	h.store.Subscribe(h.sw.SetPolicy)
	if _, err := h.store.AddProviderAddress(policy.ProviderAddress{ProviderAddress: pa1, PrefixLength: 15, AddressState: policy.AddressPreferred}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.AddCustomerRoute(policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-000000000001}"),
		VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.AddLookupRecord(policy.LookupRecord{CustomerAddress: netip.MustParseAddr("10.0.0.11"), VirtualSubnetID: 5001,
		MACAddress: packet.MAC{2, 0, 0, 0, 0x50, 2}, ProviderAddress: pa2, Rule: policy.TranslationMethodEncap}); err != nil {
		t.Fatal(err)
	}
	return h, pa1, pa2
}

// receive is what an underlay worker does with a redirect from src.
func (h *Host) receive(src, dst netip.Addr, msg []byte) vswitch.Result {
	r := h.sw.FromUnderlay(src, dst, msg)
	if r.Action == vswitch.Redirect {
		h.applyRedirect(r.Redirect)
	}
	return r
}

// TestForgedRedirectsChangeNothing installs a key for 198.18.0.2 through
// the host's method, sends forged redirects that must leave the record as
// it is and count their reasons, then a valid one that moves the record,
// marked Unsynchronized until a Set confirms it.
func TestForgedRedirectsChangeNothing(t *testing.T) {
	h, pa1, pa2 := redirectHost(t)
	key := [32]byte{0x42}
	if err := h.SetRedirectKeys([]provider.RedirectKey{{LocalPA: pa1, PeerPA: pa2, Key: key}}); err != nil || h.RedirectKeyCount() != 1 {
		t.Fatalf("SetRedirectKeys: %v, %d keys", err, h.RedirectKeyCount())
	}
	ca, pa3 := netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("198.18.0.3")
	msg := func(newPA netip.Addr, seq uint64, k *[32]byte) []byte {
		return vswitch.BuildSignedRedirect(make([]byte, 128), 5001, ca, pa2, newPA, seq, k)
	}
	before := h.store.LookupRecords(policy.LookupRecordFilter{})
	valid := msg(pa3, 7, &key)
	forged := []struct {
		name   string
		msg    []byte
		reason vswitch.Reason
	}{
		{"wrong MAC", msg(pa3, 7, &[32]byte{1}), vswitch.ReasonRedirectBadMAC},
		{"no MAC", vswitch.BuildRedirect(make([]byte, 128), 5001, ca, pa2, pa3), vswitch.ReasonRedirectBadMAC},
		{"malformed", valid[:50], vswitch.ReasonBadRedirect},
		{"NewPA loopback", msg(netip.MustParseAddr("127.0.0.1"), 8, &key), vswitch.ReasonRedirectLoopback},
		{"NewPA this host's", msg(pa1, 8, &key), vswitch.ReasonRedirectOwnPA},
		{"NewPA of another family", msg(netip.MustParseAddr("fd00::3"), 8, &key), vswitch.ReasonRedirectFamily},
		{"NewPA broadcast", msg(netip.MustParseAddr("255.255.255.255"), 8, &key), vswitch.ReasonRedirectNotUnicast},
	}
	for _, f := range forged {
		if r := h.receive(pa2, pa1, f.msg); r.Action != vswitch.Drop || r.Reason != f.reason {
			t.Errorf("%s: %v %v, want a %v drop", f.name, r.Action, r.Reason, f.reason)
		}
		if n := h.sw.Counters.Dropped(f.reason); n == 0 {
			t.Errorf("%s: %v not counted", f.name, f.reason)
		}
	}
	if after := h.store.LookupRecords(policy.LookupRecordFilter{}); !reflect.DeepEqual(after, before) {
		t.Fatalf("forged redirects changed the records: %+v, want %+v", after, before)
	}

	if r := h.receive(pa2, pa1, valid); r.Action != vswitch.Redirect {
		t.Fatalf("valid redirect: %v %v", r.Action, r.Reason)
	}
	recs := h.store.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca}})
	if len(recs) != 1 || recs[0].ProviderAddress != pa3 || !recs[0].Unsynchronized {
		t.Fatalf("after the valid redirect: %+v, want PA %s marked Unsynchronized", recs, pa3)
	}
	if h.mig.redirectsApplied.Load() != 1 {
		t.Errorf("%d redirects applied, want 1", h.mig.redirectsApplied.Load())
	}
	// Replayed: dropped, and the record stays where the valid one put it.
	if r := h.receive(pa2, pa1, valid); r.Reason != vswitch.ReasonRedirectReplay && r.Reason != vswitch.ReasonStaleRedirect {
		t.Errorf("replayed redirect: %v %v, want a drop", r.Action, r.Reason)
	}
	if h.sw.Counters.Dropped(vswitch.ReasonRedirectReplay) != 1 {
		t.Errorf("redirect-replay counted %d, want 1", h.sw.Counters.Dropped(vswitch.ReasonRedirectReplay))
	}
	// The agent confirms the record (any Set of it): the mark goes.
	if _, err := h.store.SetLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca}, VirtualSubnetID: []policy.VSID{5001}}, policy.LookupRecordChange{ProviderAddress: &pa3}); err != nil {
		t.Fatal(err)
	}
	if recs := h.store.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca}}); len(recs) != 1 || recs[0].Unsynchronized {
		t.Errorf("after a Set: %+v, want the mark cleared", recs)
	}
}
