package packet

import (
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

func TestParseMAC(t *testing.T) {
	want := MAC{0x00, 0x15, 0x5d, 0x01, 0x02, 0xab}
	for _, s := range []string{"00:15:5d:01:02:ab", "00-15-5D-01-02-AB", "00155d0102ab", "00155D0102AB", "0015.5d01.02ab", "0015.5D01.02AB", "00:15:5D:01:02:aB"} {
		if m, err := ParseMAC(s); err != nil || m != want {
			t.Errorf("ParseMAC(%q) = %v, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "00:15:5d:01:02", "00:15-5d:01:02:ab", "00.15.5d.01.02.ab", "00:15:5d:01:02:zz", "00155d0102abcd",
		"0015-5d01-02ab", "0015.5d01:02ab", "00155d0102a", " 00155d0102ab", "001.55d01.02ab"} {
		if _, err := ParseMAC(s); err == nil {
			t.Errorf("ParseMAC(%q) accepted", s)
		}
	}
	if _, err := ParseMAC("zz"); err == nil || err.Error() != `MAC address "zz" is malformed: `+want.Syntax() {
		t.Errorf("error %v", err)
	}
	// JSON carries the WMI form; the readable form stays for people.
	j, err := json.Marshal(want)
	if err != nil || string(j) != `"00155D0102AB"` {
		t.Errorf("marshal: %s %v", j, err)
	}
	if want.String() != "00:15:5d:01:02:ab" {
		t.Errorf("String() = %s", want)
	}
	for _, s := range []string{`"00155D0102AB"`, `"00:15:5d:01:02:ab"`, `"0015.5d01.02ab"`} {
		var m MAC
		if err := json.Unmarshal([]byte(s), &m); err != nil || m != want {
			t.Errorf("unmarshal %s: %v %v", s, m, err)
		}
	}
	if !Broadcast.IsMulticast() || want.IsMulticast() || !(MAC{}).IsZero() || want.IsZero() {
		t.Error("IsMulticast/IsZero")
	}
}

// macForms is the rule ParseMAC implements, written independently.
var macForms = regexp.MustCompile(`^(?:[[:xdigit:]]{12}|[[:xdigit:]]{2}(?::[[:xdigit:]]{2}){5}|[[:xdigit:]]{2}(?:-[[:xdigit:]]{2}){5}|[[:xdigit:]]{4}(?:\.[[:xdigit:]]{4}){2})$`)

// FuzzParseMAC checks that ParseMAC accepts exactly the documented forms,
// reads the digits in order, and that both printed forms parse back.
func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"10-10-10-10-11-05", "10:10:10:10:11:05", "101010101105", "1010.1010.1105", "ff:FF:ff:ff:ff:ff", "10:10-10:10:11:05", "1010:1010:1105"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMAC(s)
		if ok := macForms.MatchString(s); ok != (err == nil) {
			t.Fatalf("ParseMAC(%q) err %v, want accepted %v", s, err, ok)
		}
		if err != nil {
			return
		}
		digits := strings.NewReplacer(":", "", "-", "", ".", "").Replace(s)
		if want, _ := hex.DecodeString(digits); string(want) != string(m[:]) {
			t.Fatalf("ParseMAC(%q) = %x", s, m[:])
		}
		text, _ := m.MarshalText()
		for _, form := range []string{string(text), m.String()} {
			if r, err := ParseMAC(form); err != nil || r != m {
				t.Fatalf("%q -> %q -> %v %v", s, form, r, err)
			}
		}
	})
}
