package policy

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParseGUID(t *testing.T) {
	want := GUID{0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0xab, 0, 0, 0, 0, 0x0c}
	for _, s := range []string{
		"{11111111-2222-3333-4444-ab000000000c}",
		"11111111-2222-3333-4444-ab000000000c",
		"{11111111-2222-3333-4444-AB000000000C}",
	} {
		g, err := ParseGUID(s)
		if err != nil {
			t.Fatalf("ParseGUID(%q): %v", s, err)
		}
		if g != want {
			t.Errorf("ParseGUID(%q) = %x, want %x", s, g, want)
		}
	}
	if got := want.String(); got != "{11111111-2222-3333-4444-ab000000000c}" {
		t.Errorf("String() = %q", got)
	}
	for _, s := range []string{"", "{11111111-2222-3333-4444-ab000000000c", "11111111222233334444ab000000000c",
		"{11111111-2222-3333-4444-ab000000000g}", "{1111111-12222-3333-4444-ab000000000c}"} {
		_, err := ParseGUID(s)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseGUID(%q) error %v, want ErrInvalid", s, err)
		}
	}
	_, err := ParseGUID("nope")
	if want := `GUID "nope" is malformed: use {11111111-2222-3333-4444-000000000000}`; err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestGUIDJSON(t *testing.T) {
	type doc struct {
		ID    GUID
		Unset GUID
	}
	in := doc{ID: rd1}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"ID":"{11111111-2222-3333-4444-000000000001}","Unset":"{00000000-0000-0000-0000-000000000000}"}` {
		t.Errorf("JSON %s", b)
	}
	var out doc
	if err := json.Unmarshal([]byte(`{"ID":"11111111-2222-3333-4444-000000000001","Unset":""}`), &out); err != nil {
		t.Fatal(err)
	}
	if out != in || !out.Unset.IsZero() || out.ID.IsZero() {
		t.Errorf("round trip gave %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"ID":"x"}`), &out); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad GUID in JSON: %v, want ErrInvalid", err)
	}
}

func FuzzParseGUID(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGUID(s)
		if err != nil {
			return
		}
		back, err := ParseGUID(g.String())
		if err != nil || back != g {
			t.Fatalf("%q parsed to %v, which does not round-trip: %v", s, g, err)
		}
	})
}
