package jsonapi

import (
	"bufio"
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/wnv/wnv/policy"
)

// Bodies and query strings are decoded one property at a time, so that a
// malformed value is reported with its property name and the rule for it,
// which encoding/json alone does not do.

// A Syntaxer says what a well-formed value of its type looks like; the types
// of the APIs' properties implement it next to their parsers.
type Syntaxer interface {
	Syntax() string
}

// stdSyntax covers the standard library's types, which cannot say it
// themselves.
var stdSyntax = map[reflect.Type]string{
	reflect.TypeFor[netip.Addr]():     "use an IPv4 or IPv6 address such as 10.0.0.5",
	reflect.TypeFor[[]netip.Addr]():   `use a list of IPv4 or IPv6 addresses such as ["10.0.0.5"]`,
	reflect.TypeFor[netip.Prefix]():   "use a prefix such as 10.0.0.0/24",
	reflect.TypeFor[[]netip.Prefix](): `use a list of prefixes such as ["10.0.0.0/24", "fd00:0:0:1::/64"]`,
	reflect.TypeFor[bool]():           "use true or false",
	reflect.TypeFor[string]():         "use a string",
}

// SyntaxOf is the rule for a value of type t; cause is the parser's own
// words, the fallback.
func SyntaxOf(t reflect.Type, cause error) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := reflect.Zero(t).Interface().(Syntaxer); ok {
		return s.Syntax()
	}
	if r, ok := stdSyntax[t]; ok {
		return r
	}
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return fmt.Sprintf("use a whole number 0..%d", uint64(1)<<(t.Bits()-1)*2-1)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		return fmt.Sprintf("use a whole number up to %d", int64(1)<<(t.Bits()-1)-1)
	}
	return cause.Error()
}

// field is one property of a wire struct: its name and where it lives.
type field struct {
	name  string
	index []int
	typ   reflect.Type
}

// fieldsOf lists the properties of struct type t in declaration order,
// flattening embedded structs as encoding/json does.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			for _, f := range fieldsOf(sf.Type) {
				f.index = append([]int{i}, f.index...)
				out = append(out, f)
			}
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out = append(out, field{name: name, index: []int{i}, typ: sf.Type})
	}
	return out
}

func fieldNames(fs []field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// MaxBody bounds a request body; policy objects are a few hundred bytes.
const MaxBody = 1 << 20

func invalidf(format string, a ...any) error {
	return &policy.Error{Kind: policy.ErrInvalid, Msg: fmt.Sprintf(format, a...)}
}

// DecodeBody decodes the JSON object in r into the struct dst points to.
// Properties absent from the JSON keep dst's values, which is how defaults
// are applied. Unknown properties and trailing data are errors. Errors are
// of kind policy.ErrInvalid.
func DecodeBody(r io.Reader, dst any) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxBody+1))
	if err != nil {
		return invalidf("request body could not be read: %v", err)
	}
	if len(data) > MaxBody {
		return invalidf("request body is larger than %d bytes: send one object", MaxBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return invalidf("request body is empty: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return invalidf("request body is not a JSON object: %s", describeJSONError(err))
	}
	if dec.More() {
		return invalidf("request body has data after the JSON object: send one object")
	}
	v := reflect.ValueOf(dst).Elem()
	fs := fieldsOf(v.Type())
	if err := checkKnown(obj, fs, "field"); err != nil {
		return err
	}
	for _, f := range fs {
		raw, ok := obj[f.name]
		if !ok {
			continue
		}
		target := v.FieldByIndex(f.index)
		fresh := reflect.New(target.Type())
		fresh.Elem().Set(target)
		if err := DecodeValue(f.name, raw, fresh.Interface()); err != nil {
			return err
		}
		target.Set(fresh.Elem())
	}
	return nil
}

// DecodeValue decodes raw, the JSON value of property name, into what dst
// points to; the error names the property and the syntax of its type.
func DecodeValue(name string, raw json.RawMessage, dst any) error {
	if err := json.Unmarshal(raw, dst); err != nil {
		return invalidf("%s %s is malformed: %s", name, clip(string(raw)), SyntaxOf(reflect.TypeOf(dst).Elem(), err))
	}
	return nil
}

func describeJSONError(err error) string {
	if err == nil {
		return "got null"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v at byte %d", se, se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "got " + te.Value
	}
	return err.Error()
}

func checkKnown[V any](got map[string]V, fs []field, what string) error {
	unknown := make([]string, 0, len(got))
	for k := range got {
		if !slices.ContainsFunc(fs, func(f field) bool { return f.name == k }) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return invalidf("unknown %s %q: use %s", what, unknown[0], fieldNames(fs))
}

// clip shortens a quoted value and keeps it on one line.
func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}

// DecodeQuery fills the struct dst points to from query parameters named
// after its properties; absent parameters leave the zero value ("any"). A
// slice property takes the parameter repeated, one value each time (the
// filters' lists); any other property takes it once. Errors are of kind
// policy.ErrInvalid.
func DecodeQuery(q url.Values, dst any) error {
	v := reflect.ValueOf(dst).Elem()
	fs := fieldsOf(v.Type())
	if err := checkKnown(q, fs, "query parameter"); err != nil {
		return err
	}
	for _, f := range fs {
		vals, ok := q[f.name]
		if !ok {
			continue
		}
		fv := v.FieldByIndex(f.index)
		if f.typ.Kind() == reflect.Slice {
			fv.Set(reflect.MakeSlice(f.typ, len(vals), len(vals)))
			for i, s := range vals {
				if err := parseText(fv.Index(i), s); err != nil {
					return invalidf("%s %q is malformed: %s", f.name, clip(s), SyntaxOf(f.typ.Elem(), err))
				}
			}
			continue
		}
		if len(vals) != 1 {
			return invalidf("query parameter %s is given %d times: give it once", f.name, len(vals))
		}
		if err := parseText(fv, vals[0]); err != nil {
			return invalidf("%s %q is malformed: %s", f.name, clip(vals[0]), SyntaxOf(f.typ, err))
		}
	}
	return nil
}

// parseText sets v from its text form: through encoding.TextUnmarshaler when
// the type has one, otherwise by kind. Pointers are allocated.
func parseText(v reflect.Value, s string) error {
	if v.Kind() == reflect.Pointer {
		p := reflect.New(v.Type().Elem())
		if err := parseText(p.Elem(), s); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetUint(n)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetInt(n)
	default:
		return fmt.Errorf("type %s cannot be a query parameter", v.Type())
	}
	return nil
}

// EncodeQuery is DecodeQuery's inverse: every non-zero property of the
// struct src becomes one query parameter, each element of a slice one
// repetition.
func EncodeQuery(src any) url.Values {
	q := url.Values{}
	v := reflect.ValueOf(src)
	for _, f := range fieldsOf(v.Type()) {
		fv := v.FieldByIndex(f.index)
		switch {
		case fv.IsZero():
		case fv.Kind() == reflect.Slice:
			for i := range fv.Len() {
				q.Add(f.name, formatText(fv.Index(i)))
			}
		case fv.Kind() == reflect.Pointer:
			q.Set(f.name, formatText(fv.Elem()))
		default:
			q.Set(f.name, formatText(fv))
		}
	}
	return q
}

func formatText(v reflect.Value) string {
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		if b, err := m.MarshalText(); err == nil {
			return string(b)
		}
	}
	switch v.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		return strconv.FormatInt(v.Int(), 10)
	}
	return fmt.Sprint(v.Interface())
}

// DecodeLines reads body as NDJSON, one value of T a line of at most max
// bytes, and hands each to yield until yield returns false (stopped) or the
// body ends. err is what ended it: a line that is not a T (named with what,
// e.g. "the monitor stream"), a read error, or nil at the body's end.
func DecodeLines[T any](body io.Reader, max int, what string, yield func(T) bool) (stopped bool, err error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, min(64<<10, max)), max)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return false, fmt.Errorf("%s sent a line that is not JSON of its kind: %w", what, err)
		}
		if !yield(v) {
			return true, nil
		}
	}
	return false, sc.Err()
}
