package vswitch

import (
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
)

var (
	redirectCA = netip.MustParseAddr("10.0.0.11")
	keyPA2     = [32]byte{0x22}
)

// keyedHost1 is host1 sharing keyPA2 with PA2 for redirects.
func keyedHost1(t *testing.T) *Switch {
	sw, _ := host1(t)
	if err := sw.SetRedirectKeys([]RedirectKey{{LocalPA: pa1, PeerPA: pa2, Key: keyPA2}}); err != nil {
		t.Fatal(err)
	}
	return sw
}

func signed(newPA netip.Addr, seq uint64, key *[32]byte) []byte {
	return BuildSignedRedirect(make([]byte, 128), 5001, redirectCA, pa2, newPA, seq, key)
}

// TestForgedRedirectsRefused sends host1 redirects of blue2's CA from PA2
// that a receiver can tell are forged, each of which must be dropped for
// its own reason; only the valid one is accepted.
func TestForgedRedirectsRefused(t *testing.T) {
	otherKey := [32]byte{0x33}
	cases := []struct {
		name   string
		from   netip.Addr
		msg    []byte
		reason Reason
	}{
		{"wrong key", pa2, signed(pa3, 10, &otherKey), ReasonRedirectBadMAC},
		{"no MAC", pa2, signed(pa3, 10, nil), ReasonRedirectBadMAC},
		{"MAC of another message", pa2, func() []byte {
			b := signed(pa3, 10, &keyPA2)
			m := signed(netip.MustParseAddr("198.18.0.66"), 10, &keyPA2)
			copy(b[len(b)-packet.RedirectMACLen:], m[len(m)-packet.RedirectMACLen:])
			return b
		}(), ReasonRedirectBadMAC},
		{"from a PA without a key", pa3, BuildSignedRedirect(make([]byte, 128), 5001, redirectCA, pa3, pa2, 10, &keyPA2), ReasonRedirectUnauthenticated},
		{"NewPA loopback", pa2, signed(netip.MustParseAddr("127.0.0.1"), 10, &keyPA2), ReasonRedirectLoopback},
		{"NewPA unspecified", pa2, signed(netip.MustParseAddr("0.0.0.0"), 10, &keyPA2), ReasonRedirectUnspecified},
		{"NewPA broadcast", pa2, signed(netip.MustParseAddr("255.255.255.255"), 10, &keyPA2), ReasonRedirectNotUnicast},
		{"NewPA multicast", pa2, signed(netip.MustParseAddr("224.0.0.1"), 10, &keyPA2), ReasonRedirectNotUnicast},
		{"NewPA link-local", pa2, signed(netip.MustParseAddr("169.254.0.9"), 10, &keyPA2), ReasonRedirectNotUnicast},
		{"NewPA this host's", pa2, signed(pa1, 10, &keyPA2), ReasonRedirectOwnPA},
		{"NewPA of another family", pa2, signed(netip.MustParseAddr("fd00:198:18::3"), 10, &keyPA2), ReasonRedirectFamily},
		{"malformed", pa2, signed(pa3, 10, &keyPA2)[:60], ReasonBadRedirect},
		{"version 1", pa2, func() []byte {
			b := signed(pa3, 10, &keyPA2)
			b[8+14+4] = 1
			return b
		}(), ReasonBadRedirect},
		{"from a third host", pa3, signed(pa3, 10, &keyPA2), ReasonBadRedirect},
	}
	for _, c := range cases {
		sw := keyedHost1(t)
		r := sw.FromUnderlay(c.from, pa1, c.msg)
		if r.Action != Drop || r.Reason != c.reason {
			t.Errorf("%s: %v %v, want a %v drop", c.name, r.Action, r.Reason, c.reason)
		}
		if n := sw.Counters.Dropped(c.reason); n != 1 {
			t.Errorf("%s: %v counted %d times, want 1", c.name, c.reason, n)
		}
		// A refused message spends no sequence number: the valid one with
		// the same number still goes through.
		if r := sw.FromUnderlay(pa2, pa1, signed(pa3, 10, &keyPA2)); r.Action != Redirect || r.Redirect != (RedirectInfo{5001, redirectCA, pa2, pa3}) {
			t.Errorf("%s: the valid redirect after it: %v %v %+v", c.name, r.Action, r.Reason, r.Redirect)
		}
	}
}

// TestRedirectReplayRefused: a sequence number accepted once, or a lower
// one, is a replay; a key set pushed again keeps the last number.
func TestRedirectReplayRefused(t *testing.T) {
	sw := keyedHost1(t)
	if r := sw.FromUnderlay(pa2, pa1, signed(pa3, 100, &keyPA2)); r.Action != Redirect {
		t.Fatalf("valid redirect: %v %v", r.Action, r.Reason)
	}
	for _, seq := range []uint64{100, 99, 0} {
		if r := sw.FromUnderlay(pa2, pa1, signed(pa3, seq, &keyPA2)); r.Reason != ReasonRedirectReplay {
			t.Errorf("sequence %d after 100: %v %v, want %v", seq, r.Action, r.Reason, ReasonRedirectReplay)
		}
	}
	if err := sw.SetRedirectKeys([]RedirectKey{{LocalPA: pa1, PeerPA: pa2, Key: keyPA2}, {LocalPA: pa1, PeerPA: pa3, Key: [32]byte{3}}}); err != nil {
		t.Fatal(err)
	}
	if r := sw.FromUnderlay(pa2, pa1, signed(pa3, 100, &keyPA2)); r.Reason != ReasonRedirectReplay {
		t.Errorf("sequence 100 after the keys were pushed again: %v %v, want %v", r.Action, r.Reason, ReasonRedirectReplay)
	}
	if r := sw.FromUnderlay(pa2, pa1, signed(pa3, 101, &keyPA2)); r.Action != Redirect {
		t.Errorf("sequence 101: %v %v, want Redirect", r.Action, r.Reason)
	}
	if n := sw.Counters.Dropped(ReasonRedirectReplay); n != 4 {
		t.Errorf("redirect-replay counted %d, want 4", n)
	}
}

// TestUnauthenticatedRedirects: without any key, an unsigned redirect is
// refused unless the host allows it; record checks still apply.
func TestUnauthenticatedRedirects(t *testing.T) {
	sw, _ := host1(t)
	msg := BuildRedirect(make([]byte, 128), 5001, redirectCA, pa2, pa3)
	if r := sw.FromUnderlay(pa2, pa1, msg); r.Reason != ReasonRedirectUnauthenticated || sw.Counters.Dropped(ReasonRedirectUnauthenticated) != 1 {
		t.Fatalf("unsigned redirect by default: %v %v, want %v counted", r.Action, r.Reason, ReasonRedirectUnauthenticated)
	}
	sw.SetUnauthenticatedRedirects(true)
	if r := sw.FromUnderlay(pa2, pa1, msg); r.Action != Redirect || r.Redirect != (RedirectInfo{5001, redirectCA, pa2, pa3}) {
		t.Fatalf("unsigned redirect when allowed: %v %v", r.Action, r.Reason)
	}
	if r := sw.FromUnderlay(pa3, pa1, BuildRedirect(make([]byte, 128), 5001, redirectCA, pa3, pa2)); r.Reason != ReasonStaleRedirect {
		t.Errorf("record already moved: %v %v, want %v", r.Action, r.Reason, ReasonStaleRedirect)
	}
	if r := sw.FromUnderlay(pa2, pa1, BuildRedirect(make([]byte, 128), 5001, redirectCA, pa2, pa1)); r.Reason != ReasonRedirectOwnPA {
		t.Errorf("to this host's PA when allowed: %v %v, want %v", r.Action, r.Reason, ReasonRedirectOwnPA)
	}
	if err := sw.SetRedirectKeys([]RedirectKey{{LocalPA: pa1, PeerPA: pa3, Key: [32]byte{3}}}); err != nil {
		t.Fatal(err)
	}
	if r := sw.FromUnderlay(pa2, pa1, msg); r.Reason != ReasonRedirectUnauthenticated {
		t.Errorf("unsigned redirect from a peer without a key once keys exist: %v %v, want %v", r.Action, r.Reason, ReasonRedirectUnauthenticated)
	}
}

func TestSetRedirectKeysValidates(t *testing.T) {
	sw, _ := host1(t)
	for name, keys := range map[string][]RedirectKey{
		"mixed families": {{LocalPA: pa1, PeerPA: netip.MustParseAddr("fd00::2")}},
		"no LocalPA":     {{PeerPA: pa2}},
		"repeated pair":  {{LocalPA: pa1, PeerPA: pa2}, {LocalPA: pa1, PeerPA: pa2, Key: [32]byte{1}}},
	} {
		if err := sw.SetRedirectKeys(keys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if sw.RedirectKeyCount() != 0 {
		t.Errorf("refused key sets left %d keys", sw.RedirectKeyCount())
	}
}

// FuzzRedirectIngress feeds arbitrary redirect bodies from PA2 to a host
// with a key for PA2: whatever the bytes, the verdict is a drop or a
// redirect of a record that exists, to a NewPA that passed every check.
func FuzzRedirectIngress(f *testing.F) {
	f.Add(signed(pa3, 1, &keyPA2)[8+14:])
	f.Add(signed(netip.MustParseAddr("127.0.0.1"), 1, &keyPA2)[8+14:])
	f.Add(signed(pa3, 1, nil)[8+14:])
	f.Fuzz(func(t *testing.T, body []byte) {
		sw := keyedHost1(t)
		hdr := signed(pa3, 0, nil)[:8+14]
		r := sw.FromUnderlay(pa2, pa1, append(hdr, body...))
		switch r.Action {
		case Drop:
		case Redirect:
			m := packet.Redirect(body)
			if !packet.VerifyRedirect(m, &keyPA2) || r.Redirect.NewPA != m.NewPA() || !r.Redirect.NewPA.IsGlobalUnicast() || r.Redirect.NewPA == pa1 {
				t.Fatalf("accepted %+v", r.Redirect)
			}
		default:
			t.Fatalf("verdict %v for a redirect", r.Action)
		}
	})
}
