package host

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/wnv/wnv/fastpath"
	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

// The drop monitor of both paths (GET /v1/monitor): the slow path's workers
// offer their drops and decided flows to h.mon through a monitor.Source
// each; the kernel's samples come from its ring buffer (readKernelDrops).
// The hub turns the kernel's monitor on while someone watches.

// MonitorHub is the host's monitor, for the provider API.
func (h *Host) MonitorHub() *monitor.Hub { return h.mon }

// HostName is the host's name (wnvd host --name), on monitor streams.
func (h *Host) HostName() string { return h.cfg.Name }

// monitorChanged makes the kernel sample what the subscribers want.
func (h *Host) monitorChanged(c monitor.SourceConfig) {
	k := h.k
	if k == nil {
		return
	}
	if err := k.dp.SetMonitor(fastpath.MonitorConfig{On: c.Drops, Sample: c.Sample, Rate: c.Rate}); err != nil {
		h.log.Error("fast path: drop monitor", "err", err)
	}
}

// kernelMonitorCounts is what the kernel's monitor suppressed.
func (h *Host) kernelMonitorCounts() monitor.Counts {
	k := h.k
	if k == nil {
		return monitor.Counts{}
	}
	c, err := k.dp.MonitorCounts()
	if err != nil {
		h.log.Debug("fast path: drop monitor counts", "err", err)
	}
	return monitor.Counts{Sampled: c.SampledOut, RateLimited: c.RateLimited, Lost: c.Lost}
}

// readKernelDrops publishes the kernel's samples until ctx ends, then turns
// the kernel's monitor off: the programs stay, and nobody reads their ring.
func (h *Host) readKernelDrops(ctx context.Context) {
	r, err := h.k.dp.DropReader()
	if err != nil {
		h.log.Warn("the monitor will not show the kernel's drops", "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = r.Close() })
	defer stop()
	defer func() { _ = h.k.dp.SetMonitor(fastpath.MonitorConfig{}) }()
	var d fastpath.Drop
	for {
		if err := r.Read(&d); err != nil {
			if errors.Is(err, fastpath.ErrClosed) || ctx.Err() != nil {
				return
			}
			h.log.Warn("reading the kernel's drop samples", "err", err)
			continue
		}
		s := monitor.Sample{Time: d.Time, Kind: monitor.KindDrop, Path: monitor.PathKernel, Reason: d.Reason,
			VSID: d.VSID, Weight: d.Weight, FromUnderlay: slices.Contains(h.underlays.indexes(), d.Ifindex)}
		if p, ok := h.sw.Ports().Port(d.PortIndex); ok {
			s.Port = p.Name
		}
		s.SetFrame(d.Data)
		s.Len = d.Len
		h.mon.Publish(&s)
	}
}

// offerPortDrop offers the monitor a frame the switch dropped from port p.
func offerPortDrop(src *monitor.Source, p *port, reason vswitch.Reason, frame []byte) {
	s := monitor.Sample{Time: time.Now(), Kind: monitor.KindDrop, Path: monitor.PathSlow, Reason: uint8(reason),
		Port: p.spec.Name, VSID: uint32(p.spec.VirtualSubnetID)}
	s.SetFrame(frame)
	src.Offer(&s)
}

// offerUnderlayDrop offers the monitor a tunnel packet the switch dropped:
// payload starts at its NVGRE or VXLAN header; the sample holds the inner
// frame.
func offerUnderlayDrop(src *monitor.Source, reason vswitch.Reason, encap policy.Encapsulation, payload []byte) {
	s := monitor.Sample{Time: time.Now(), Kind: monitor.KindDrop, Path: monitor.PathSlow, Reason: uint8(reason), FromUnderlay: true}
	if encap == policy.EncapVXLAN {
		if v, err := packet.ParseVXLAN(payload); err == nil {
			s.VSID = v.VNI()
		}
	} else if g, err := packet.ParseNVGRE(payload); err == nil {
		s.VSID = g.VSID()
	}
	s.SetFrame(payload[min(len(payload), vswitch.EncapHeaderLen):])
	src.Offer(&s)
}

// offerFlows offers the monitor the flows of port p the switch decided.
func (h *Host) offerFlows(src *monitor.Source, p *port, ds []vswitch.Decision) {
	pt := h.sw.Ports()
	for i := range ds {
		d := &ds[i]
		s := monitor.Sample{Time: time.Now(), Kind: monitor.KindFlow, Path: monitor.PathSlow, Port: p.spec.Name,
			VSID: uint32(d.VSID), Flow: monitor.Flow{Dst: d.Dst, PA: d.DstPA, Encap: d.Encap.String(), Routed: d.Routed}}
		if lp, ok := pt.Port(d.Local); ok {
			s.Flow.Local = lp.Name
		}
		src.Offer(&s)
	}
}
