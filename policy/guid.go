package policy

import "encoding/hex"

// GUID identifies a routing domain or a customer, written
// {11111111-2222-3333-4444-000000000000}. The bytes are kept in the order
// they are written (not the mixed-endian Windows in-memory layout), so the
// text form round-trips and compares byte-wise.
type GUID [16]byte

// ParseGUID accepts the 8-4-4-4-12 hex form with or without braces, in any
// case.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	b := s
	if len(b) == 38 && b[0] == '{' && b[37] == '}' {
		b = b[1:37]
	}
	if len(b) != 36 || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return g, invalidf("GUID %q is malformed: use {11111111-2222-3333-4444-000000000000}", s)
	}
	var h [32]byte
	copy(h[0:8], b[0:8])
	copy(h[8:12], b[9:13])
	copy(h[12:16], b[14:18])
	copy(h[16:20], b[19:23])
	copy(h[20:32], b[24:36])
	if _, err := hex.Decode(g[:], h[:]); err != nil {
		return GUID{}, invalidf("GUID %q is malformed: use {11111111-2222-3333-4444-000000000000}", s)
	}
	return g, nil
}

// MustParseGUID is ParseGUID for constants in tests and examples; it panics
// on malformed input.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// IsZero reports whether g is the all-zero GUID (unset).
func (g GUID) IsZero() bool { return g == GUID{} }

// String returns the braced lower-case form.
func (g GUID) String() string {
	var b [38]byte
	g.appendTo(b[:0])
	return string(b[:])
}

func (g GUID) appendTo(b []byte) []byte {
	b = append(b, '{')
	b = hex.AppendEncode(b, g[0:4])
	b = append(b, '-')
	b = hex.AppendEncode(b, g[4:6])
	b = append(b, '-')
	b = hex.AppendEncode(b, g[6:8])
	b = append(b, '-')
	b = hex.AppendEncode(b, g[8:10])
	b = append(b, '-')
	b = hex.AppendEncode(b, g[10:16])
	return append(b, '}')
}

// MarshalText gives the braced lower-case form.
func (g GUID) MarshalText() ([]byte, error) { return g.appendTo(make([]byte, 0, 38)), nil }

// Syntax says what a well-formed value looks like, for the APIs' errors.
func (GUID) Syntax() string { return "use a GUID such as {11111111-2222-3333-4444-000000000000}" }

// UnmarshalText accepts what ParseGUID accepts; an empty string is the zero
// GUID, so an omitted CustomerID stays unset.
func (g *GUID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*g = GUID{}
		return nil
	}
	v, err := ParseGUID(string(b))
	if err != nil {
		return err
	}
	*g = v
	return nil
}
