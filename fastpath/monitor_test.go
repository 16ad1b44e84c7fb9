package fastpath

import (
	"bytes"
	"testing"
	"time"

	"github.com/wnv/wnv/packet"
)

// TestMonitor: with the monitor on, a drop puts a sample in the ring buffer
// with its reason, port, VSID and first bytes; 1 in 2 sampling passes every
// other drop over and counts it; off, nothing is sampled.
func TestMonitor(t *testing.T) {
	d := newFixture(t)
	r, err := d.DropReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	spoofed := udpFrame(macB, packet.MAC{0x52, 0x54, 0, 0, 0, 0x66}, caA4, caB4, 64, bytes.Repeat([]byte{7}, 200))

	run(t, d.objs.WnvPort, spoofed, 0) // off: not sampled
	if err := d.SetMonitor(MonitorConfig{On: true, Sample: 2, Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	run(t, d.objs.WnvPort, spoofed, 0) // 1st of 2: passed over
	run(t, d.objs.WnvPort, spoofed, 0) // sampled
	r.r.SetDeadline(time.Now().Add(5 * time.Second))
	var got Drop
	if err := r.Read(&got); err != nil {
		t.Fatal(err)
	}
	if got.Reason != ReasonSpoofedMAC || got.PortIndex != indexA || got.VSID != vsidA || got.Weight != 2 ||
		got.Len != len(spoofed) || !bytes.Equal(got.Data, spoofed[:SnapLen]) {
		t.Errorf("sample %+v, want spoofed-mac of port %d VSID %d weight 2, %d bytes and the first %d", got, indexA, vsidA, len(spoofed), SnapLen)
	}
	if time.Since(got.Time).Abs() > time.Minute {
		t.Errorf("sample time %v is not now", got.Time)
	}
	c, err := d.MonitorCounts()
	if err != nil {
		t.Fatal(err)
	}
	if c.SampledOut != 1 || c.RateLimited != 0 || c.Lost != 0 {
		t.Errorf("counts %+v, want 1 sampled out", c)
	}
	if err := d.SetMonitor(MonitorConfig{}); err != nil {
		t.Fatal(err)
	}
	run(t, d.objs.WnvPort, spoofed, 0)
	r.r.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if err := r.Read(&got); err == nil {
		t.Errorf("a sample while the monitor is off: %+v", got)
	}
	if err := d.SetMonitor(MonitorConfig{On: true, Rate: 0}); err == nil {
		t.Error("rate 0 accepted")
	}
}
