package policy

import (
	"regexp"
	"strings"
)

// Wildcard is a filter value for a string property, matched as PowerShell
// matches the NetWNV cmdlets' filter parameters: case-insensitively, with
// * for any text, ? for one character, [abc] and [a-c] for one of a set, and
// ` (backtick) escaping the next character.
//
// path.Match is not used: its * and ? stop at '/', and '\' escapes, which
// would make "tenant*" miss a Context of "tenant/blue" and misread
// "DOMAIN\web1".
type Wildcard struct {
	text string
	re   *regexp.Regexp // nil without wildcard characters: compared with EqualFold
}

const wildcardSyntax = "use text with the wildcards * (any text), ? (one character) and [a-c] (one of a set); ` escapes"

// ParseWildcard compiles pattern s.
func ParseWildcard(s string) (Wildcard, error) {
	if !strings.ContainsAny(s, "*?[`") {
		return Wildcard{text: s}, nil
	}
	var b strings.Builder
	b.WriteString(`(?is)\A`)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		switch c := rs[i]; c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '`':
			if i++; i == len(rs) {
				return Wildcard{}, invalidf("wildcard %q ends with the escape character `: %s", s, wildcardSyntax)
			}
			b.WriteString(regexp.QuoteMeta(string(rs[i])))
		case '[':
			end := i + 1
			for end < len(rs) && rs[end] != ']' {
				if rs[end] == '`' {
					end++
				}
				end++
			}
			if end >= len(rs) || end == i+1 {
				return Wildcard{}, invalidf("wildcard %q has a [ without a set and a closing ]: %s", s, wildcardSyntax)
			}
			b.WriteByte('[')
			for j := i + 1; j < end; j++ {
				switch {
				case rs[j] == '`':
					j++
					b.WriteString(classLiteral(rs[j]))
				case rs[j] == '-' && j > i+1 && j < end-1:
					b.WriteByte('-') // a range; a leading or trailing - is literal
				default:
					b.WriteString(classLiteral(rs[j]))
				}
			}
			b.WriteByte(']')
			i = end
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`\z`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return Wildcard{}, invalidf("wildcard %q has a malformed set such as [z-a]: %s", s, wildcardSyntax)
	}
	return Wildcard{text: s, re: re}, nil
}

// classLiteral writes c for inside a regexp [set]; RE2 takes any
// punctuation escaped.
func classLiteral(c rune) string {
	if c < 0x80 && (c >= '!' && c <= '/' || c >= ':' && c <= '@' || c >= '[' && c <= '`' || c >= '{' && c <= '~') {
		return `\` + string(c)
	}
	return string(c)
}

// MustParseWildcard is ParseWildcard for constants in tests and examples; it
// panics on a malformed pattern.
func MustParseWildcard(s string) Wildcard {
	w, err := ParseWildcard(s)
	if err != nil {
		panic(err)
	}
	return w
}

// Match reports whether s matches the pattern.
func (w Wildcard) Match(s string) bool {
	if w.re == nil {
		return strings.EqualFold(w.text, s)
	}
	return w.re.MatchString(s)
}

// String returns the pattern as written.
func (w Wildcard) String() string { return w.text }

func (w Wildcard) MarshalText() ([]byte, error) { return []byte(w.text), nil }

func (w *Wildcard) UnmarshalText(b []byte) error {
	v, err := ParseWildcard(string(b))
	if err != nil {
		return err
	}
	*w = v
	return nil
}

// Syntax says what a well-formed value looks like, for the APIs' errors.
func (Wildcard) Syntax() string { return wildcardSyntax }
