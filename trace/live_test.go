package trace

import (
	"testing"

	"github.com/wnv/wnv/monitor"
)

func TestCarriesMark(t *testing.T) {
	mark := []byte("wnv-trace host1 2")
	frame := func(payload string, length int) monitor.Event {
		f := append(make([]byte, 42), payload...)
		return monitor.Event{Frame: f, Length: max(length, len(f))}
	}
	for _, c := range []struct {
		name string
		e    monitor.Event
		want bool
	}{
		{"whole mark", frame("wnv-trace host1 2\x00\x00", 0), true},
		{"mark at the end", frame("wnv-trace host1 2", 0), true},
		{"another probe's longer mark", frame("wnv-trace host1 23\x00", 0), false},
		{"both marks", frame("wnv-trace host1 23 wnv-trace host1 2", 0), true},
		{"another host's probe", frame("wnv-trace host2 2", 0), false},
		{"cut by the sample", frame("wnv-trace host1 ", 200), true},
		{"cut before the host", frame("wnv-trace ", 200), false},
		{"ends like the mark but not cut", frame("wnv-trace host1 ", 0), false},
		{"no mark", frame("hello", 200), false},
	} {
		if got := carriesMark(c.e, mark); got != c.want {
			t.Errorf("%s: carriesMark = %v, want %v", c.name, got, c.want)
		}
	}
	if carriesMark(frame("wnv-trace host1 2", 0), nil) {
		t.Error("an empty mark matched")
	}
}
