package pcap

import (
	"bytes"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestReadBack: gopacket's reader, an independent one, reads what Writer
// wrote: link type, snap length, timestamps, captured and original lengths.
func TestReadBack(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 128)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 6, 14, 0, 0, 123456000, time.UTC)
	frames := []struct {
		data []byte
		orig int
	}{
		{bytes.Repeat([]byte{0xab}, 60), 60},
		{bytes.Repeat([]byte{0xcd}, 200), 1514}, // cut to the snap length
	}
	for i, f := range frames {
		if err := w.WriteFrame(t0.Add(time.Duration(i)*time.Second), f.data, f.orig); err != nil {
			t.Fatal(err)
		}
	}
	r, err := pcapgo.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Snaplen() != 128 {
		t.Errorf("link type %v snap length %d, want Ethernet and 128", r.LinkType(), r.Snaplen())
	}
	for i, f := range frames {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		want := f.data[:min(len(f.data), 128)]
		if !bytes.Equal(data, want) || ci.CaptureLength != len(want) || ci.Length != f.orig {
			t.Errorf("frame %d: %d bytes (capture %d, length %d), want %d of %d", i, len(data), ci.CaptureLength, ci.Length, len(want), f.orig)
		}
		if wantT := t0.Add(time.Duration(i) * time.Second); !ci.Timestamp.Equal(wantT) {
			t.Errorf("frame %d: time %v, want %v", i, ci.Timestamp, wantT)
		}
	}
	if _, _, err := r.ReadPacketData(); err == nil {
		t.Error("a third frame read back")
	}
}
