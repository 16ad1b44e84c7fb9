package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// Flags are named after the original properties in kebab-case
// (--virtual-subnet-id; grammar.go) and typed with the values below, so that
// a bad value is rejected while parsing with a message naming the flag and
// the rule (see flagError).

// An empty value sets a typed flag to its zero value: on set it clears the
// property (--customer-id ""), in a filter it matches anything.

// ruleError is the rule a flag value broke, without the flag's name.
type ruleError string

func (e ruleError) Error() string { return string(e) }

type addrValue struct{ p *netip.Addr }

func (v addrValue) String() string {
	if !v.p.IsValid() {
		return ""
	}
	return v.p.String()
}
func (v addrValue) Type() string { return "address" }
func (v addrValue) Set(s string) error {
	if s == "" {
		*v.p = netip.Addr{}
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ruleError("use an IPv4 or IPv6 address such as 10.0.0.5")
	}
	*v.p = a
	return nil
}

// addrsValue is a repeatable address flag; one use may also list several
// addresses separated by commas.
type addrsValue struct{ p *[]netip.Addr }

func (v addrsValue) String() string {
	s := make([]string, len(*v.p))
	for i, a := range *v.p {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
func (v addrsValue) Type() string { return "addresses" }
func (v addrsValue) Set(s string) error {
	if s == "" {
		return nil
	}
	for f := range strings.SplitSeq(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return ruleError("use IPv4 or IPv6 addresses such as 10.0.0.5, repeat the flag for more")
		}
		*v.p = append(*v.p, a)
	}
	return nil
}

// Append, Replace and GetSlice make addrsValue a pflag.SliceValue.
func (v addrsValue) Append(s string) error { return v.Set(s) }
func (v addrsValue) Replace(ss []string) error {
	*v.p = nil
	for _, s := range ss {
		if err := v.Set(s); err != nil {
			return err
		}
	}
	return nil
}
func (v addrsValue) GetSlice() []string {
	if len(*v.p) == 0 {
		return nil
	}
	return strings.Split(v.String(), ",")
}

type prefixValue struct{ p *netip.Prefix }

func (v prefixValue) String() string {
	if !v.p.IsValid() {
		return ""
	}
	return v.p.String()
}
func (v prefixValue) Type() string { return "prefix" }
func (v prefixValue) Set(s string) error {
	if s == "" {
		*v.p = netip.Prefix{}
		return nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return ruleError("use a prefix such as 10.0.0.0/24 or fd00::/64")
	}
	*v.p = p
	return nil
}

type macValue struct{ p *packet.MAC }

func (v macValue) String() string {
	if v.p.IsZero() {
		return ""
	}
	return v.p.String()
}
func (v macValue) Type() string { return "mac" }
func (v macValue) Set(s string) error {
	if s == "" {
		*v.p = packet.MAC{}
		return nil
	}
	m, err := packet.ParseMAC(s)
	if err != nil {
		return ruleError(packet.MAC{}.Syntax())
	}
	*v.p = m
	return nil
}

type vsidValue struct{ p *policy.VSID }

func (v vsidValue) String() string {
	if *v.p == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(*v.p), 10)
}
func (v vsidValue) Type() string { return "vsid" }
func (v vsidValue) Set(s string) error {
	if s == "" {
		*v.p = 0
		return nil
	}
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return ruleError(fmt.Sprintf("use a number %d..%d", policy.MinVSID, policy.MaxVSID))
	}
	*v.p = policy.VSID(n)
	return nil
}

type guidValue struct{ p *policy.GUID }

func (v guidValue) String() string {
	if v.p.IsZero() {
		return ""
	}
	return v.p.String()
}
func (v guidValue) Type() string { return "guid" }
func (v guidValue) Set(s string) error {
	if s == "" {
		*v.p = policy.GUID{}
		return nil
	}
	g, err := policy.ParseGUID(s)
	if err != nil {
		return ruleError("use a GUID such as {11111111-2222-3333-4444-000000000000}")
	}
	*v.p = g
	return nil
}

type ruleValue struct{ p *policy.Rule }

func (v ruleValue) String() string {
	if *v.p == policy.RuleUnset {
		return "" // set's flag: no new value unless given
	}
	return v.p.String()
}
func (v ruleValue) Type() string { return "rule" }
func (v ruleValue) Set(s string) error {
	r, err := policy.ParseRule(s)
	if err != nil {
		return ruleError("use Nat, Encap or None (or 0..2)")
	}
	*v.p = r
	return nil
}

type typeValue struct{ p *policy.RecordType }

func (v typeValue) String() string { return v.p.String() }
func (v typeValue) Type() string   { return "type" }
func (v typeValue) Set(s string) error {
	t, err := policy.ParseRecordType(s)
	if err != nil {
		return ruleError("use Static, Dynamic, GatewayWildcard or L2Only (or 0..3)")
	}
	*v.p = t
	return nil
}

// listValue is a filter flag: like the cmdlets' filter parameters it takes a
// list, given with commas or by repeating the flag, and matches any of its
// values. An empty value adds nothing.
type listValue[T any] struct {
	p     *[]T
	typ   string
	parse func(string) (T, error)
	rule  string
}

func (v listValue[T]) String() string { return strings.Join(v.GetSlice(), ",") }
func (v listValue[T]) Type() string   { return v.typ }
func (v listValue[T]) Set(s string) error {
	if s == "" {
		return nil
	}
	for f := range strings.SplitSeq(s, ",") {
		x, err := v.parse(strings.TrimSpace(f))
		if err != nil {
			return ruleError(v.rule + ", separated by commas")
		}
		*v.p = append(*v.p, x)
	}
	return nil
}

// Append, Replace and GetSlice make listValue a pflag.SliceValue.
func (v listValue[T]) Append(s string) error { return v.Set(s) }
func (v listValue[T]) Replace(ss []string) error {
	*v.p = nil
	for _, s := range ss {
		if err := v.Set(s); err != nil {
			return err
		}
	}
	return nil
}
func (v listValue[T]) GetSlice() []string {
	s := make([]string, len(*v.p))
	for i, x := range *v.p {
		s[i] = fmt.Sprint(x)
	}
	return s
}

func listOf[T any](p *[]T, typ string, parse func(string) (T, error), rule string) listValue[T] {
	return listValue[T]{p: p, typ: typ, parse: parse, rule: rule}
}

func addrFilter(p *[]netip.Addr) listValue[netip.Addr] {
	return listOf(p, "addresses", netip.ParseAddr, "use IPv4 or IPv6 addresses such as 10.0.0.5")
}

func prefixFilter(p *[]netip.Prefix) listValue[netip.Prefix] {
	return listOf(p, "prefixes", netip.ParsePrefix, "use prefixes such as 10.0.0.0/24 or fd00::/64")
}

func macFilter(p *[]packet.MAC) listValue[packet.MAC] {
	return listOf(p, "macs", packet.ParseMAC, "use MAC addresses such as 00155D010203 or 00-15-5D-01-02-03")
}

func vsidFilter(p *[]policy.VSID) listValue[policy.VSID] {
	return listOf(p, "vsids", func(s string) (policy.VSID, error) {
		n, err := strconv.ParseUint(s, 0, 32)
		return policy.VSID(n), err
	}, fmt.Sprintf("use numbers %d..%d", policy.MinVSID, policy.MaxVSID))
}

// wildcardFilter is the flag of a string or GUID property.
func wildcardFilter(p *[]policy.Wildcard) listValue[policy.Wildcard] {
	return listOf(p, "wildcards", policy.ParseWildcard, "use text with the wildcards * ? [a-c]")
}

func uintFilter[T ~uint8 | ~uint16 | ~uint32](p *[]T, bits int, rule string) listValue[T] {
	return listOf(p, "numbers", func(s string) (T, error) {
		n, err := strconv.ParseUint(s, 10, bits)
		return T(n), err
	}, rule)
}

func intFilter(p *[]int, rule string) listValue[int] { return listOf(p, "numbers", strconv.Atoi, rule) }

func boolFilter(p *[]bool) listValue[bool] {
	return listOf(p, "bools", strconv.ParseBool, "use true or false")
}

// flagError turns pflag's "invalid argument" errors into one sentence naming
// the flag, the value and the rule.
func flagError(_ *cobra.Command, err error) error {
	var ive *pflag.InvalidValueError
	if !errors.As(err, &ive) {
		return err
	}
	f := ive.GetFlag()
	var re ruleError
	rule := ""
	switch {
	case errors.As(err, &re):
		rule = string(re)
	case f.Value.Type() == "bool":
		rule = "use true or false"
	case numberRules[f.Value.Type()] != "":
		rule = numberRules[f.Value.Type()]
	default:
		rule = errors.Unwrap(err).Error()
	}
	return fmt.Errorf("--%s %q is malformed: %s", f.Name, ive.GetValue(), rule)
}

var numberRules = map[string]string{
	"uint8":  "use a whole number 0..255",
	"uint16": "use a whole number 0..65535",
	"uint32": "use a whole number 0..4294967295",
	"int":    "use a whole number",
}

// changed reports whether the named flag was given.
func changed(cmd *cobra.Command, name string) bool { return cmd.Flags().Changed(name) }

// anyChanged reports whether any of the named flags was given.
func anyChanged(cmd *cobra.Command, names ...string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return changed(cmd, n) })
}

// flagList names flags for messages: --A, --B, --C.
func flagList(names []string) string { return "--" + strings.Join(names, ", --") }
