package packet

import (
	"encoding/json"
	"testing"
)

func TestParseMAC(t *testing.T) {
	want := MAC{0x00, 0x15, 0x5d, 0x01, 0x02, 0xab}
	for _, s := range []string{"00:15:5d:01:02:ab", "00-15-5D-01-02-AB", "00155d0102ab"} {
		if m, err := ParseMAC(s); err != nil || m != want {
			t.Errorf("ParseMAC(%q) = %v, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "00:15:5d:01:02", "00:15-5d:01:02:ab", "00.15.5d.01.02.ab", "00:15:5d:01:02:zz", "00155d0102abcd"} {
		if _, err := ParseMAC(s); err == nil {
			t.Errorf("ParseMAC(%q) accepted", s)
		}
	}
	j, err := json.Marshal(want)
	if err != nil || string(j) != `"00:15:5d:01:02:ab"` {
		t.Errorf("marshal: %s %v", j, err)
	}
	var m MAC
	if err := json.Unmarshal(j, &m); err != nil || m != want {
		t.Errorf("unmarshal: %v %v", m, err)
	}
	if !Broadcast.IsMulticast() || want.IsMulticast() || !(MAC{}).IsZero() || want.IsZero() {
		t.Error("IsMulticast/IsZero")
	}
}
