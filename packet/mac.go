package packet

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// MAC is a 48-bit Ethernet address. It is a value type so that it can be a
// map key and be copied on the fast path without allocation.
type MAC [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// IsMulticast reports whether the group bit is set (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 == 1 }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// String is the readable form, 00:15:5d:01:02:03, for logs, messages and
// tables. It is also part of the policy server's etcd index keys, so it must
// not change.
func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// macSyntax names the accepted forms, the WMI one first.
const macSyntax = "use 12 hex digits such as 00155D010203, or 00-15-5D-01-02-03, 00:15:5d:01:02:03 or 0015.5d01.0203"

// ParseMAC accepts, in any case, the forms people and tools write: 12 hex
// digits (00155D010203, as WMI prints it), six groups of two separated by '-'
// (Windows) or ':' (Linux), and three groups of four separated by '.'
// (Cisco).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	h, ok := macDigits(s)
	if !ok {
		return m, fmt.Errorf("MAC address %q is malformed: %s", s, macSyntax)
	}
	if _, err := hex.Decode(m[:], []byte(h)); err != nil {
		return m, fmt.Errorf("MAC address %q is malformed: %s", s, macSyntax)
	}
	return m, nil
}

// macDigits drops the separators of one of ParseMAC's forms, leaving the 12
// characters that must be hex digits. Only the separator positions are
// dropped, so a separator anywhere else fails as a non-digit.
func macDigits(s string) (string, bool) {
	var group int
	var sep byte
	switch len(s) {
	case 12:
		return s, true
	case 17:
		group, sep = 2, s[2]
		if sep != ':' && sep != '-' {
			return "", false
		}
	case 14:
		group, sep = 4, '.'
	default:
		return "", false
	}
	var b strings.Builder
	// Groups start at 0, group+1, 2*(group+1), ...; a separator follows
	// each but the last.
	for i := 0; i < len(s); i += group + 1 {
		b.WriteString(s[i : i+group])
		if i+group < len(s) && s[i+group] != sep {
			return "", false
		}
	}
	return b.String(), true
}

// MarshalText gives the form WMI prints, 12 upper-case hex digits
// (00155D010203), so the APIs' JSON matches what the NetWNV cmdlets show.
// UnmarshalText accepts every form ParseMAC does, so JSON stored in the
// earlier 00:15:5d:01:02:03 form still loads.
func (m MAC) MarshalText() ([]byte, error) {
	return []byte(strings.ToUpper(hex.EncodeToString(m[:]))), nil
}

// Syntax says what a well-formed value looks like, for the APIs' errors.
func (MAC) Syntax() string { return macSyntax }

func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
