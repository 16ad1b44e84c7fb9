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

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// ParseMAC accepts 00:15:5d:01:02:03, 00-15-5D-01-02-03 (the Windows form) and
// 00155D010203.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	h := s
	if len(s) == 17 {
		sep := s[2]
		if sep != ':' && sep != '-' {
			return m, fmt.Errorf("MAC address %q is malformed: use 00:15:5d:01:02:03", s)
		}
		for i := 2; i < 17; i += 3 {
			if s[i] != sep {
				return m, fmt.Errorf("MAC address %q is malformed: use 00:15:5d:01:02:03", s)
			}
		}
		h = strings.ReplaceAll(s, string(sep), "")
	}
	if len(h) != 12 {
		return m, fmt.Errorf("MAC address %q is malformed: use 00:15:5d:01:02:03", s)
	}
	if _, err := hex.Decode(m[:], []byte(h)); err != nil {
		return m, fmt.Errorf("MAC address %q is malformed: use 00:15:5d:01:02:03", s)
	}
	return m, nil
}

func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// Syntax says what a well-formed value looks like, for the APIs' errors.
func (MAC) Syntax() string { return "use 00:15:5d:01:02:03" }

func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
