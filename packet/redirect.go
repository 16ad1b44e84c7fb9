package packet

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/netip"
)

// A redirect tells a host that a customer address moved from one provider
// address to another (live migration). It is our own message, since the
// original format was never published: an NVGRE packet from the old host to a
// host still sending there, key = VSID<<8, whose inner Ethernet frame goes
// from and to the virtual gateway MAC with EtherType 0x88B5 (IEEE 802 local
// experimental) and this 88-byte body:
//
//	0  "WNVR"      magic
//	4  2           version
//	5  1           message type: redirect
//	6  0           reserved (2 bytes)
//	8  VSID        uint32, big endian; must equal the GRE key's VSID
//	12 CA family   4 or 6
//	13 PA family   4 or 6
//	14 NewPA family 4 or 6
//	15 0           reserved
//	16 CA          16 bytes (IPv4 in the first 4)
//	32 PA          16 bytes: where the CA was
//	48 NewPA       16 bytes: where it is now
//	64 Sequence    uint64, big endian: per sender and receiver, increasing
//	72 MAC         16 bytes: HMAC-SHA256 of bytes 0-71 with the key the
//	               sender (PA) and receiver share, truncated; zero when the
//	               sender has no key for the receiver
//
// Version 1 (64 bytes, no sequence or MAC) is refused: anyone on the
// underlay could forge it.
const (
	EtherTypeWNVControl = 0x88B5
	RedirectLen         = 88
	RedirectMACLen      = 16
	redirectSignedLen   = RedirectLen - RedirectMACLen
	redirectVersion     = 2
	redirectType        = 1
)

var (
	ErrRedirectShort   = errors.New("redirect message is shorter than its 88 bytes")
	ErrRedirectMagic   = errors.New("redirect message does not start with \"WNVR\"")
	ErrRedirectVersion = errors.New("redirect message version is not 2 or its type is not 1")
	ErrRedirectFamily  = errors.New("redirect message address family is not 4 or 6")
)

// Redirect is a view of a redirect message body.
type Redirect []byte

// ParseRedirect checks length, magic, version, type and address families;
// the MAC is checked by VerifyRedirect, with the key.
func ParseRedirect(b []byte) (Redirect, error) {
	if len(b) < RedirectLen {
		return nil, ErrRedirectShort
	}
	if string(b[0:4]) != "WNVR" {
		return nil, ErrRedirectMagic
	}
	if b[4] != redirectVersion || b[5] != redirectType {
		return nil, ErrRedirectVersion
	}
	for _, f := range b[12:15] {
		if f != 4 && f != 6 {
			return nil, ErrRedirectFamily
		}
	}
	return Redirect(b[:RedirectLen]), nil
}

func (r Redirect) VSID() uint32      { return binary.BigEndian.Uint32(r[8:12]) }
func (r Redirect) CA() netip.Addr    { return redirectAddr(r[12], r[16:32]) }
func (r Redirect) PA() netip.Addr    { return redirectAddr(r[13], r[32:48]) }
func (r Redirect) NewPA() netip.Addr { return redirectAddr(r[14], r[48:64]) }
func (r Redirect) Sequence() uint64  { return binary.BigEndian.Uint64(r[64:72]) }

// MAC is the message's authentication code, as sent.
func (r Redirect) MAC() []byte { return r[redirectSignedLen:RedirectLen] }

func redirectAddr(fam byte, b []byte) netip.Addr {
	if fam == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b))
}

// PutRedirect writes a redirect body with sequence seq and a zero MAC
// (SignRedirect fills it) and returns RedirectLen.
func PutRedirect(b []byte, vsid uint32, ca, pa, newPA netip.Addr, seq uint64) int {
	_ = b[RedirectLen-1]
	clear(b[:RedirectLen])
	copy(b[0:4], "WNVR")
	b[4], b[5] = redirectVersion, redirectType
	binary.BigEndian.PutUint32(b[8:12], vsid)
	for i, a := range []netip.Addr{ca, pa, newPA} {
		b[12+i] = 6
		if a.Is4() {
			b[12+i] = 4
			a4 := a.As4()
			copy(b[16+16*i:], a4[:])
		} else {
			a16 := a.As16()
			copy(b[16+16*i:], a16[:])
		}
	}
	binary.BigEndian.PutUint64(b[64:72], seq)
	return RedirectLen
}

// SignRedirect writes the MAC of the redirect body b (written by
// PutRedirect) with key.
func SignRedirect(b []byte, key *[32]byte) {
	copy(b[redirectSignedLen:RedirectLen], redirectMAC(b, key))
}

// VerifyRedirect reports whether r's MAC is the one key makes, in constant
// time.
func VerifyRedirect(r Redirect, key *[32]byte) bool {
	return hmac.Equal(r.MAC(), redirectMAC(r, key))
}

func redirectMAC(b []byte, key *[32]byte) []byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(b[:redirectSignedLen])
	return m.Sum(nil)[:RedirectMACLen]
}
