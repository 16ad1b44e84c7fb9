package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// The drop monitor: while it is on, the programs sample the frames they
// drop into a ring buffer (datapath.c, monitor_drop), 1 in Sample drops
// and at most Rate samples a second on each CPU. Off, which it is after
// Open, a drop costs the programs one more map lookup.

// SnapLen is how many bytes of a dropped frame a sample carries.
const SnapLen = 128

// MaxMonitorRate bounds MonitorConfig.Rate (the token bucket's arithmetic
// stays within 64 bits).
const MaxMonitorRate = 1_000_000

// MonitorConfig configures the drop monitor.
type MonitorConfig struct {
	On bool
	// Sample: 1 in Sample drops is sampled; 0 and 1 sample every one.
	Sample uint32
	// Rate bounds the samples a second of each CPU, 1..MaxMonitorRate.
	Rate uint32
}

// SetMonitor turns the drop monitor on or off.
func (d *Datapath) SetMonitor(c MonitorConfig) error {
	if c.On && (c.Rate == 0 || c.Rate > MaxMonitorRate) {
		return fmt.Errorf("fast path: monitor rate %d is out of range: use 1..%d", c.Rate, MaxMonitorRate)
	}
	v := datapathMonitorConfig{Sample: c.Sample, Rate: uint64(c.Rate)}
	if c.On {
		v.On = 1
	}
	if err := d.objs.WnvMonitor.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("fast path: configure the drop monitor: %w", err)
	}
	return nil
}

// MonitorCounts are the drops the monitor did not sample, summed over CPUs.
type MonitorCounts struct {
	SampledOut  uint64 // passed over by the 1-in-N sampling
	RateLimited uint64 // over the rate
	Lost        uint64 // refused by the full ring buffer
}

// MonitorCounts reads what the monitor suppressed since Open.
func (d *Datapath) MonitorCounts() (MonitorCounts, error) {
	var per []datapathMonitorState
	if err := d.objs.WnvMonitorState.Lookup(uint32(0), &per); err != nil {
		return MonitorCounts{}, fmt.Errorf("fast path: read the drop monitor's counts: %w", err)
	}
	var c MonitorCounts
	for _, s := range per {
		c.SampledOut += s.SampledOut
		c.RateLimited += s.RateLimited
		c.Lost += s.Lost
	}
	return c, nil
}

// Drop is a sample of a frame a program dropped.
type Drop struct {
	Time    time.Time
	Reason  uint8 // numbered as vswitch.Reason
	Ifindex int   // where the frame arrived: a port or the underlay
	// PortIndex is the Go switch's index of the dropping port, -1 if the
	// frame did not come from a known port.
	PortIndex int
	VSID      uint32
	Len       int    // of the frame
	Weight    uint32 // drops this sample stands for (the sampling's N)
	Data      []byte // the first SnapLen bytes at most; reused by the next Read
}

// DropReader reads the monitor's samples. It is not safe for concurrent
// use, except Close.
type DropReader struct {
	r   *ringbuf.Reader
	rec ringbuf.Record
	ev  datapathMonitorEvent
}

// DropReader opens the monitor's ring buffer for reading.
func (d *Datapath) DropReader() (*DropReader, error) {
	r, err := ringbuf.NewReader(d.objs.WnvMonitorEvents)
	if err != nil {
		return nil, fmt.Errorf("fast path: open the drop monitor's ring buffer: %w", err)
	}
	return &DropReader{r: r}, nil
}

// ErrClosed is returned by Read after Close.
var ErrClosed = ringbuf.ErrClosed

// Read waits for the next sample and fills into with it.
func (r *DropReader) Read(into *Drop) error {
	if err := r.r.ReadInto(&r.rec); err != nil {
		return err
	}
	if _, err := binary.Decode(r.rec.RawSample, binary.LittleEndian, &r.ev); err != nil {
		return fmt.Errorf("fast path: a drop monitor sample of %d bytes is malformed: %w", len(r.rec.RawSample), err)
	}
	e := &r.ev
	*into = Drop{Time: monotonicToWall(e.TimeNs), Reason: uint8(e.Reason), Ifindex: int(e.Ifindex), PortIndex: -1,
		VSID: e.Vsid, Len: int(e.Len), Weight: e.Weight, Data: e.Data[:min(int(e.CapLen), SnapLen)]}
	if e.Flags&monitorHasPort != 0 {
		into.PortIndex = int(e.PortIndex)
	}
	return nil
}

// Close ends a Read in progress and the reader.
func (r *DropReader) Close() error {
	if err := r.r.Close(); err != nil && !errors.Is(err, ringbuf.ErrClosed) {
		return err
	}
	return nil
}

const monitorHasPort = 1 // monitor_event.flags, as in datapath.h

// monotonicToWall converts a CLOCK_MONOTONIC time (bpf_ktime_get_ns) to
// the wall clock's.
func monotonicToWall(ns uint64) time.Time {
	var now unix.Timespec
	wall := time.Now()
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &now) != nil {
		return wall
	}
	return wall.Add(-time.Duration(uint64(now.Nano()) - ns))
}
