package host

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// probeSeq numbers the live probes of this process, for their marks.
var probeSeq atomic.Uint64

// Trace answers POST /v1/trace (provider.Tracer): the switch's dry run of
// the packet on the current policy and ports, whether the kernel fast path
// holds its decision now, and for a live trace the marked probe injected at
// the port into the slow path and forwarded for real.
func (h *Host) Trace(r provider.TraceRequest, live bool) (provider.TraceResponse, error) {
	if r.Outer != nil {
		res := provider.TraceOuter(h.sw, r.Outer)
		res.Host = h.cfg.Name
		h.slowPathOnly(res.Packet)
		if in := res.Packet.Ingress; in != nil {
			res.Installed = h.ingressInstalled(in)
		}
		if in := res.Packet.RewriteIngress; in != nil {
			res.Installed = h.rewriteIngressInstalled(in)
		}
		return res, nil
	}
	var mark []byte
	if live {
		mark = fmt.Appendf(nil, "wnv-trace %s %d", h.cfg.Name, probeSeq.Add(1))
	}
	res, p, frame, err := provider.TracePort(h.sw, r, mark)
	if err != nil {
		return res, err
	}
	res.Host = h.cfg.Name
	h.slowPathOnly(res.Packet)
	if res.Packet != nil && res.Packet.Decision != nil {
		res.Installed = h.egressInstalled(res.Packet.Decision)
	}
	if live && frame != nil {
		res.Mark = string(mark)
		res.Injected = h.inject(p.Index, frame).String()
	}
	return res, nil
}

// egressInstalled reports whether the kernel holds d in its current
// generation.
func (h *Host) egressInstalled(d *vswitch.Decision) bool {
	socks := *h.socks.Load()
	if d.Port >= len(socks) || socks[d.Port] == nil {
		return false
	}
	es, err := h.k.dp.Egresses()
	if err != nil {
		return false
	}
	gen := h.k.dp.Generation()
	for _, e := range es {
		if e.Ifindex == socks[d.Port].Ifindex() && e.Dst == d.Dst.Unmap() && e.Gen == gen {
			return true
		}
	}
	return false
}

// ingressInstalled reports whether the kernel holds in in its current
// generation.
func (h *Host) ingressInstalled(in *vswitch.IngressDecision) bool {
	ins, err := h.k.dp.Ingresses()
	if err != nil {
		return false
	}
	gen := h.k.dp.Generation()
	for _, i := range ins {
		if i.VSID == uint32(in.VSID) && i.SrcPA == in.SrcPA.Unmap() && i.SrcCA == in.SrcCA && i.DstCA == in.DstCA &&
			i.SrcMAC == in.SrcMAC && i.DstMAC == in.DstMAC && i.Gen == gen {
			return true
		}
	}
	return false
}

// rewriteIngressInstalled reports whether the kernel holds in, an IP
// Rewrite delivery, in its current generation.
func (h *Host) rewriteIngressInstalled(in *vswitch.RewriteIngressDecision) bool {
	rs, err := h.k.dp.RewriteIngresses()
	if err != nil {
		return false
	}
	gen := h.k.dp.Generation()
	for _, r := range rs {
		if r.SrcPA == in.SrcPA.Unmap() && r.DstPA == in.DstPA.Unmap() && r.SrcCA == in.SrcCA.Unmap() && r.DstCA == in.DstCA.Unmap() &&
			r.SrcMAC == in.SrcMAC && r.DstMAC == in.DstMAC && r.Gen == gen {
			return true
		}
	}
	return false
}

// inject switches frame as if the VM on port had sent it, through the slow
// path (no flow cache, so the decision is made afresh and counted), and
// sends or parks what comes out.
func (h *Host) inject(port int, frame []byte) vswitch.Action {
	buf := make([]byte, vswitch.Headroom+len(frame))
	copy(buf[vswitch.Headroom:], frame)
	h.sw.Tick(time.Now())
	r := h.sw.FromPort(port, buf, vswitch.Headroom, len(frame), make([]byte, scratchSize))
	if r.Action == vswitch.Hold {
		h.park(port, r.Miss, frame)
		return r.Action
	}
	var out output
	out.add(r)
	out.flush(h)
	return r.Action
}

// slowPathOnly corrects the fast path of a trace on a host that runs
// without it: nothing is ever installed.
func (h *Host) slowPathOnly(t *vswitch.TraceResult) {
	if t == nil || !h.cfg.SlowPathOnly || !t.FastPath {
		return
	}
	t.FastPath = false
	t.Steps = append(t.Steps, vswitch.Step{Step: "slow-path", Detail: "this wnvd runs without the kernel fast path (--fast-path off): every packet takes the slow path"})
}
