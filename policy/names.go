package policy

import (
	"fmt"
	"strconv"
	"strings"
)

var (
	ruleNames  = [...]string{"Nat", "Encap", "None"}
	typeNames  = [...]string{"Static", "Dynamic", "GatewayWildcard", "L2Only"}
	stateNames = [...]string{"Invalid", "Tentative", "Duplicate", "Deprecated", "Preferred"}
)

// String names r; a value out of range is given by its wire number.
func (r Rule) String() string {
	switch {
	case r == RuleUnset:
		return "Unset"
	case r <= TranslationMethodNone:
		return ruleNames[r-1]
	}
	return strconv.Itoa(int(r) - 1)
}

func (t RecordType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return strconv.Itoa(int(t))
}

func (s AddressState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return strconv.Itoa(int(s))
}

// ParseRule accepts Nat, Encap, None (any case, with or without the
// TranslationMethod prefix) or their wire numbers 0..2.
func ParseRule(s string) (Rule, error) {
	v := strings.TrimPrefix(strings.ToLower(s), "translationmethod")
	if i := parseName(v, ruleNames[:]); i >= 0 {
		return Rule(i + 1), nil
	}
	return RuleUnset, invalidf("Rule %q is unknown: use Nat, Encap or None", s)
}

// MarshalJSON writes the wire number, or null for RuleUnset.
func (r Rule) MarshalJSON() ([]byte, error) {
	if r == RuleUnset {
		return []byte("null"), nil
	}
	return strconv.AppendInt(nil, int64(r)-1, 10), nil
}

// UnmarshalJSON reads a wire number 0..2; null leaves r as it is, so a
// default stays.
func (r *Rule) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseUint(string(b), 10, 8)
	if err != nil || n > 2 {
		return invalidf("Rule %s is out of range: %s", b, Rule(0).Syntax())
	}
	*r = Rule(n + 1)
	return nil
}

// MarshalText writes the wire number, for query parameters.
func (r Rule) MarshalText() ([]byte, error) { return []byte(strconv.Itoa(int(r) - 1)), nil }

// UnmarshalText accepts what ParseRule does.
func (r *Rule) UnmarshalText(b []byte) error {
	v, err := ParseRule(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseRecordType accepts Static, Dynamic, GatewayWildcard, L2Only (any case)
// or their numbers 0..3.
func ParseRecordType(s string) (RecordType, error) {
	if i := parseName(strings.ToLower(s), typeNames[:]); i >= 0 {
		return RecordType(i), nil
	}
	return 0, invalidf("Type %q is unknown: use Static, Dynamic, GatewayWildcard or L2Only", s)
}

// ParseAddressState accepts Invalid, Tentative, Duplicate, Deprecated,
// Preferred (any case) or their numbers 0..4.
func ParseAddressState(s string) (AddressState, error) {
	if i := parseName(strings.ToLower(s), stateNames[:]); i >= 0 {
		return AddressState(i), nil
	}
	return 0, invalidf("AddressState %q is unknown: use Invalid, Tentative, Duplicate, Deprecated or Preferred", s)
}

func parseName(lower string, names []string) int {
	for i, n := range names {
		if lower == strings.ToLower(n) || lower == strconv.Itoa(i) {
			return i
		}
	}
	return -1
}

// Syntax says what a well-formed value looks like, for the APIs' errors.
func (VSID) Syntax() string { return fmt.Sprintf("use %d..%d", MinVSID, MaxVSID) }

// Syntax says what a well-formed value looks like, for the APIs' errors.
func (Rule) Syntax() string { return "use 0 (Nat), 1 (Encap) or 2 (None)" }

// Syntax says what a well-formed value looks like, for the APIs' errors.
func (RecordType) Syntax() string {
	return "use 0 (Static), 1 (Dynamic), 2 (GatewayWildcard) or 3 (L2Only)"
}
