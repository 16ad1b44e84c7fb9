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
		if n := PutRedirect(b, 5001, ca, pa, npa); n != RedirectLen {
			t.Fatalf("PutRedirect wrote %d bytes", n)
		}
		r, err := ParseRedirect(b)
		if err != nil || r.VSID() != 5001 || r.CA() != ca || r.PA() != pa || r.NewPA() != npa {
			t.Fatalf("round trip of %v: %v %d %s %s %s", c, err, r.VSID(), r.CA(), r.PA(), r.NewPA())
		}
	}
}

func TestRedirectRejects(t *testing.T) {
	good := make([]byte, RedirectLen)
	PutRedirect(good, 5001, netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3"))
	mut := func(i int, v byte) []byte { b := append([]byte(nil), good...); b[i] = v; return b }
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"short":   {good[:63], ErrRedirectShort},
		"magic":   {mut(0, 'X'), ErrRedirectMagic},
		"version": {mut(4, 2), ErrRedirectVersion},
		"type":    {mut(5, 9), ErrRedirectVersion},
		"family":  {mut(13, 5), ErrRedirectFamily},
	} {
		if _, err := ParseRedirect(c.b); err != c.want {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

func FuzzParseRedirect(f *testing.F) {
	good := make([]byte, RedirectLen)
	PutRedirect(good, 5001, netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("fd00::3"))
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRedirect(b)
		if err != nil {
			return
		}
		out := make([]byte, RedirectLen)
		PutRedirect(out, r.VSID(), r.CA(), r.PA(), r.NewPA())
		r2, err := ParseRedirect(out)
		if err != nil || r2.VSID() != r.VSID() || r2.CA() != r.CA() || r2.PA() != r.PA() || r2.NewPA() != r.NewPA() {
			t.Fatalf("round trip changed the message: %v", err)
		}
	})
}
