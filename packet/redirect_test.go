package packet

import (
	"net/netip"
	"testing"
)

func TestRedirectRoundTrip(t *testing.T) {
	for _, c := range [][3]string{
		{"10.0.0.11", "198.18.0.2", "198.18.0.3"},
		{"fd00:0:0:1::11", "2001:db8::2", "198.18.0.3"},
	} {
		ca, pa, npa := netip.MustParseAddr(c[0]), netip.MustParseAddr(c[1]), netip.MustParseAddr(c[2])
		b := make([]byte, RedirectLen)
		if n := PutRedirect(b, 5001, ca, pa, npa, 1<<40+7); n != RedirectLen {
			t.Fatalf("PutRedirect wrote %d bytes", n)
		}
		r, err := ParseRedirect(b)
		if err != nil || r.VSID() != 5001 || r.CA() != ca || r.PA() != pa || r.NewPA() != npa || r.Sequence() != 1<<40+7 {
			t.Fatalf("round trip of %v: %v %d %s %s %s %d", c, err, r.VSID(), r.CA(), r.PA(), r.NewPA(), r.Sequence())
		}
	}
}

func TestRedirectMAC(t *testing.T) {
	key, other := [32]byte{1, 2, 3}, [32]byte{1, 2, 4}
	b := make([]byte, RedirectLen)
	PutRedirect(b, 5001, netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3"), 9)
	r := Redirect(b)
	if VerifyRedirect(r, &key) {
		t.Fatal("an unsigned message verified")
	}
	SignRedirect(b, &key)
	if !VerifyRedirect(r, &key) {
		t.Fatal("a signed message did not verify with its key")
	}
	if VerifyRedirect(r, &other) {
		t.Error("a signed message verified with another key")
	}
	for _, i := range []int{8, 20, 50, 70, 80} {
		m := Redirect(append([]byte(nil), b...))
		m[i] ^= 1
		if VerifyRedirect(m, &key) {
			t.Errorf("a message with byte %d changed verified", i)
		}
	}
}

func TestRedirectRejects(t *testing.T) {
	good := make([]byte, RedirectLen)
	PutRedirect(good, 5001, netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3"), 1)
	mut := func(i int, v byte) []byte { b := append([]byte(nil), good...); b[i] = v; return b }
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"short":      {good[:RedirectLen-1], ErrRedirectShort},
		"version 1":  {mut(4, 1)[:64], ErrRedirectShort},
		"magic":      {mut(0, 'X'), ErrRedirectMagic},
		"old format": {mut(4, 1), ErrRedirectVersion},
		"type":       {mut(5, 9), ErrRedirectVersion},
		"family":     {mut(13, 5), ErrRedirectFamily},
	} {
		if _, err := ParseRedirect(c.b); err != c.want {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

func FuzzParseRedirect(f *testing.F) {
	good := make([]byte, RedirectLen)
	PutRedirect(good, 5001, netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("fd00::3"), 42)
	SignRedirect(good, &[32]byte{7})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRedirect(b)
		if err != nil {
			switch err {
			case ErrRedirectShort, ErrRedirectMagic, ErrRedirectVersion, ErrRedirectFamily:
				return
			}
			t.Fatalf("error %v is none of the sentinels", err)
		}
		out := make([]byte, RedirectLen)
		PutRedirect(out, r.VSID(), r.CA(), r.PA(), r.NewPA(), r.Sequence())
		r2, err := ParseRedirect(out)
		if err != nil || r2.VSID() != r.VSID() || r2.CA() != r.CA() || r2.PA() != r.PA() || r2.NewPA() != r.NewPA() || r2.Sequence() != r.Sequence() {
			t.Fatalf("round trip changed the message: %v", err)
		}
		key := [32]byte{7}
		SignRedirect(out, &key)
		if !VerifyRedirect(Redirect(out), &key) {
			t.Fatal("a message signed again does not verify")
		}
	})
}
