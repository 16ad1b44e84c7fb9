package host

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/offload"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

const (
	batchSize = 64
	// maxFrame bounds a frame from a VM or the underlay (jumbo frames fit).
	maxFrame = 9216
	// maxSuper bounds a TCP super-frame from an offload TAP (TSO) or a
	// coalesced VXLAN read (UDP GRO): an IP packet of 64 KiB and its
	// Ethernet and encapsulation headers.
	maxSuper = 65535 + 64
	// superBatch is the batch size of workers with maxSuper buffers.
	superBatch = 16
	// segmentsSize holds the segments of one super-frame, each with its own
	// headers (SegmentTCP refuses what does not fit).
	segmentsSize = 2 * maxSuper
	// scratchSize holds the largest reply the switch builds: an ICMP error
	// quoting up to 1280 bytes behind its headers.
	scratchSize = 2048
)

// output collects one batch's verdicts and writes them out grouped by
// destination, so each TAP and socket gets one WriteBatch per batch; runs of
// TCP segments of one flow to an offload TAP are coalesced into one
// super-frame. Its slices are reused: steady-state forwarding does not
// allocate.
type output struct {
	under     []underPacket
	rewritten []vswitch.Result
	toTAP     []tapWrite
	frames    []dataplane.OffloadFrame
	tails     [][]byte
	pkts      []dataplane.Packet
}

type underPacket struct {
	dataplane.Packet
	encap policy.Encapsulation
	flow  uint8
}

type tapWrite struct {
	port int
	f    dataplane.OffloadFrame
}

func (o *output) add(r vswitch.Result) {
	switch r.Action {
	case vswitch.ToUnderlay:
		o.under = append(o.under, underPacket{dataplane.Packet{Buf: r.Data, N: len(r.Data), Src: r.Src, Dst: r.Dst}, r.Encap, r.FlowID})
	case vswitch.Rewritten:
		o.rewritten = append(o.rewritten, r)
	case vswitch.ToPort:
		o.toTAP = append(o.toTAP, tapWrite{r.Port, dataplane.OffloadFrame{Head: r.Data}})
	case vswitch.Flood:
		// Every copy shares r.Data: flush groups the underlay copies by
		// source PA like any others, so they go out in the same batched
		// writes, and nothing writes into a buffer it sends.
		for _, p := range r.Copies.Paths {
			o.under = append(o.under, underPacket{dataplane.Packet{Buf: r.Data, N: len(r.Data), Src: p.Src, Dst: p.Dst}, r.Encap, r.FlowID})
		}
		inner := r.Data[vswitch.EncapHeaderLen:]
		for _, port := range r.Copies.Ports {
			if port != r.Copies.Except {
				o.toTAP = append(o.toTAP, tapWrite{port, dataplane.OffloadFrame{Head: inner}})
			}
		}
	}
}

// addSuper queues a TCP super-frame, with its virtio-net header, for a local
// port.
func (o *output) addSuper(port int, hdr offload.VirtioNetHdr, frame []byte) {
	o.toTAP = append(o.toTAP, tapWrite{port, dataplane.OffloadFrame{Hdr: hdr, Head: frame}})
}

func (o *output) flush(h *Host) {
	for _, r := range o.rewritten {
		h.sendRewritten(r.Dst, r.Data[packet.EthernetHeaderLen:])
	}
	clear(o.rewritten)
	o.rewritten = o.rewritten[:0]
	if len(o.under) > 0 {
		socks := *h.pas.socks.Load()
		for len(o.under) > 0 {
			src, encap, flow := o.under[0].Src, o.under[0].encap, o.under[0].flow
			s := socks[src]
			o.pkts = o.pkts[:0]
			rest := o.under[:0]
			for _, p := range o.under {
				if p.Src == src && p.encap == encap && (encap != policy.EncapVXLAN || s.sameVXLAN(p.flow, flow)) {
					o.pkts = append(o.pkts, p.Packet)
				} else {
					rest = append(rest, p)
				}
			}
			o.under = rest
			o.send(s, encap, flow)
		}
	}
	if len(o.toTAP) > 0 {
		socks := *h.socks.Load()
		for len(o.toTAP) > 0 {
			port := o.toTAP[0].port
			o.frames = o.frames[:0]
			rest := o.toTAP[:0]
			for _, w := range o.toTAP {
				if w.port == port {
					o.frames = append(o.frames, w.f)
				} else {
					rest = append(rest, w)
				}
			}
			o.toTAP = rest
			if port >= len(socks) || socks[port] == nil {
				continue
			}
			// Refused writes are counted by the port.
			_, _ = socks[port].WriteOffload(o.coalesce(o.frames))
		}
	}
	clear(o.pkts)
	clear(o.frames)
	clear(o.tails)
	o.tails = o.tails[:0]
}

// send writes o.pkts from one PA's socket of the encapsulation (for VXLAN,
// the flow's).
func (o *output) send(s *paSockets, encap policy.Encapsulation, flow uint8) {
	if s == nil {
		return
	}
	// Refused writes are counted by the socket.
	if encap == policy.EncapNVGRE {
		_, _ = s.gre.WriteBatch(o.pkts)
	} else if vs := s.vxlanFor(flow); vs != nil {
		_, _ = vs.WriteBatch(o.pkts)
	}
}

// coalesce merges, in place, each run of plain frames that are consecutive
// TCP segments of one flow, with good checksums, into one super-frame whose
// Tail holds the payloads of the segments after the first (GRO), so the
// VM's kernel receives one packet per run. A segment with a bad checksum is
// written on its own for the VM to drop.
func (o *output) coalesce(frames []dataplane.OffloadFrame) []dataplane.OffloadFrame {
	out := frames[:0]
	for i := 0; i < len(frames); {
		f := frames[i]
		i++
		if f.Hdr != (offload.VirtioNetHdr{}) {
			out = append(out, f)
			continue
		}
		first, ok := offload.ParseSegment(f.Head)
		if !ok || !first.ChecksumValid() {
			out = append(out, f)
			continue
		}
		prev, run, start := first, first.PayloadLen(), len(o.tails)
		for i < len(frames) && frames[i].Hdr == (offload.VirtioNetHdr{}) {
			s, ok := offload.ParseSegment(frames[i].Head)
			if !ok || !offload.Follows(&first, &prev, &s, run) || !s.ChecksumValid() {
				break
			}
			o.tails = append(o.tails, s.Payload())
			prev, run = s, run+s.PayloadLen()
			i++
		}
		if len(o.tails) > start {
			f.Hdr = offload.Coalesce(&first, run-first.PayloadLen(), prev.IsPSH())
			f.Head = first.Frame[:first.HeaderLen()+first.PayloadLen()]
			f.Tail = o.tails[start:len(o.tails):len(o.tails)]
		}
		out = append(out, f)
	}
	return out
}

// sendSegmented sends the encapsulated TCP super-frame of r from r.Src: as
// one tunnel GSO packet for the kernel to cut where it can, else cut here
// into wire-sized packets, sent as UDP GSO batches (VXLAN) or one sendmmsg
// (NVGRE).
func (o *output) sendSegmented(h *Host, r vswitch.Result, hdr offload.VirtioNetHdr, segs []byte) {
	socks := (*h.pas.socks.Load())[r.Src]
	// The GSO TAP's program sends to the default underlay only.
	if h.gso != nil && socks != nil && socks.ifindex == h.underlays[0].index {
		p := dataplane.GSOPacket{Src: r.Src, Dst: r.Dst, Hdr: hdr, Data: r.Data}
		if r.Encap == policy.EncapVXLAN {
			if vs := socks.vxlanFor(r.FlowID); vs != nil {
				p.VXLANPort = vs.Port()
			}
		}
		if (r.Encap == policy.EncapNVGRE || p.VXLANPort != 0) && h.gso.Send(p) == nil {
			return
		}
	}
	encapLen := packet.NVGREHeaderLen
	if r.Encap == policy.EncapVXLAN {
		encapLen = packet.VXLANHeaderLen
	}
	size, total, err := offload.SegmentTCP(segs, r.Data, encapLen, hdr)
	if err != nil {
		h.sw.Counters.Drop(vswitch.ReasonMalformed)
		return
	}
	o.pkts = o.pkts[:0]
	step := size
	if r.Encap == policy.EncapVXLAN {
		step = size * min(dataplane.MaxGSOSegments, dataplane.MaxGSOBytes/size)
	}
	for off := 0; off < total; off += step {
		end := min(off+step, total)
		p := dataplane.Packet{Buf: segs[off:end], N: end - off, Src: r.Src, Dst: r.Dst}
		if r.Encap == policy.EncapVXLAN {
			p.Segment = size
		}
		o.pkts = append(o.pkts, p)
	}
	o.send(socks, r.Encap, r.FlowID)
	clear(o.pkts)
}

func newBuffers(n, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs
}

// portWorker switches the frames a VM sends on its port until the port's
// socket is closed. Each frame comes behind a virtio-net header: partial
// checksums are completed, and a TCP super-frame is switched once, then cut
// into segments.
func (h *Host) portWorker(p *port) {
	vnet, size, batch := offload.VirtioNetHdrLen, maxSuper, superBatch
	segs := make([]byte, segmentsSize)
	bufs := newBuffers(batch, vswitch.Headroom+size)
	reads := make([][]byte, batch)
	for i := range bufs {
		reads[i] = bufs[i][vswitch.Headroom-vnet:]
	}
	sizes := make([]int, batch)
	scratch := newBuffers(batch, scratchSize)
	flows := vswitch.NewFlows()
	if !h.cfg.SlowPathOnly {
		flows.RecordDecisions()
	}
	r := new(vswitch.Result)
	var out output
	var in installer
	mon := h.mon.Source()
	for {
		p.busy.Store(false)
		n, err := p.sock.ReadBatch(reads, sizes)
		p.busy.Store(true)
		h.sw.Tick(time.Now())
		for i := 0; i < n; i++ {
			m := sizes[i] - vnet
			frame := bufs[i][vswitch.Headroom : vswitch.Headroom+max(m, 0)]
			hdr, segLen, ok := h.offloaded(reads[i][:sizes[i]], frame)
			if !ok {
				continue
			}
			h.sw.FromPortFlows(r, flows, p.index, bufs[i], vswitch.Headroom, len(frame), segLen, scratch[i])
			if r.Action == vswitch.Drop && mon.Wanted(monitor.KindDrop) {
				offerPortDrop(mon, p, r.Reason, frame)
			}
			if r.Learn != nil {
				h.learned(r.Learn)
			}
			switch {
			case r.Action == vswitch.Hold:
				// A super-frame is never a flow's first packet: drop it (TCP
				// resends) rather than park 64 KiB.
				if hdr.IsGSO() {
					h.sw.Counters.Drop(r.Reason)
				} else {
					h.park(p.index, r.Miss, frame)
				}
			case !hdr.IsGSO():
				out.add(*r)
			case r.Action == vswitch.ToUnderlay:
				out.flush(h) // keep the flow's earlier packets ahead
				out.sendSegmented(h, *r, hdr, segs)
			case r.Action == vswitch.Rewritten:
				out.flush(h)
				h.sendRewrittenSegmented(*r, hdr, segs)
			case r.Action == vswitch.ToPort && !r.Reply:
				out.addSuper(r.Port, hdr, r.Data)
			default:
				out.add(*r) // a reply the switch built, or a drop
			}
		}
		out.flush(h)
		flows.Flush()
		ds, fs := flows.Decided(), flows.Forwarded()
		if len(ds) > 0 && mon.Wanted(monitor.KindFlow) {
			h.offerFlows(mon, p, ds)
		}
		if len(ds) > 0 || len(fs) > 0 {
			in.addEgress(h.k, ds, *h.socks.Load(), *h.pas.socks.Load())
			in.addForwarded(h.k, fs, *h.socks.Load())
			if ierr := in.flush(h.k); ierr != nil {
				h.log.Debug("fast path: installing decisions", "err", ierr)
			}
		}
		p.batches.Add(1)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			h.log.Warn("reading VM port", "port", p.spec.Name, "err", err)
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// offloaded reads the virtio-net header in front of frame. It completes a
// partial checksum in place, and for a TCP super-frame returns the size of
// the largest segment it will be cut into. ok is false for a frame to drop.
func (h *Host) offloaded(read, frame []byte) (hdr offload.VirtioNetHdr, segLen int, ok bool) {
	hdr, err := offload.ParseVirtioNetHdr(read)
	if err != nil || len(frame) == 0 {
		h.sw.Counters.Drop(vswitch.ReasonMalformed)
		return hdr, 0, false
	}
	if hdr.IsGSO() {
		s, ok := offload.ParseSegment(frame)
		if !ok || hdr.GSOSize == 0 {
			h.sw.Counters.Drop(vswitch.ReasonMalformed)
			return hdr, 0, false
		}
		return hdr, s.HeaderLen() + int(hdr.GSOSize), true
	}
	if err := offload.CompleteChecksum(frame, hdr); err != nil {
		h.sw.Counters.Drop(vswitch.ReasonMalformed)
		return hdr, 0, false
	}
	return offload.VirtioNetHdr{}, 0, true
}

// sendRewritten sends an IP Rewrite packet, its IP header built by the
// switch, to dst through the family's IPPROTO_RAW socket: the kernel routes
// it and resolves the next hop. A refused send counts as a no-local-pa drop.
func (h *Host) sendRewritten(dst netip.Addr, ip []byte) {
	if err := h.mig.sendIP(dst, ip); err != nil {
		h.sw.Counters.Drop(vswitch.ReasonNoLocalPA)
		h.log.Debug("sending a rewritten packet", "dst", dst, "err", err)
	}
}

// sendRewrittenSegmented cuts a rewritten TCP super-frame into segments,
// each with full checksums, and sends them.
func (h *Host) sendRewrittenSegmented(r vswitch.Result, hdr offload.VirtioNetHdr, segs []byte) {
	size, total, err := offload.SegmentTCP(segs, r.Data, 0, hdr)
	if err != nil {
		h.sw.Counters.Drop(vswitch.ReasonMalformed)
		return
	}
	for off := 0; off < total; off += size {
		h.sendRewritten(r.Dst, segs[off+packet.EthernetHeaderLen:min(off+size, total)])
	}
}

// rewriteWorker validates and delivers the IP Rewrite packets the underlay
// program hands to the slow path, until the socket is closed, and installs
// what it validated for the kernel to deliver the PA pair's next packets.
func (h *Host) rewriteWorker(sock *dataplane.Port) {
	vnet := offload.VirtioNetHdrLen
	bufs := newBuffers(superBatch, maxSuper+vnet)
	sizes := make([]int, superBatch)
	var out output
	var in installer
	for {
		n, err := sock.ReadBatch(bufs, sizes)
		for i := 0; i < n; i++ {
			hdr, herr := offload.ParseVirtioNetHdr(bufs[i][:sizes[i]])
			if herr != nil || sizes[i] <= vnet {
				h.sw.Counters.Drop(vswitch.ReasonMalformed)
				continue
			}
			// Read before the switch loads its policy: a decision is never
			// labelled newer than the policy it was made from.
			gen := h.sw.Generation()
			r := h.sw.FromRewritten(bufs[i][vnet:sizes[i]], hdr.Flags&offload.NeedsCsum != 0)
			if d, ok := vswitch.RewriteIngress(&r, gen); ok && !h.cfg.SlowPathOnly {
				in.addRewriteIngress(h.k, d, *h.socks.Load())
			}
			if r.Action == vswitch.ToPort {
				if hdr != (offload.VirtioNetHdr{}) {
					out.addSuper(r.Port, hdr, r.Data)
					continue
				}
			}
			out.add(r)
		}
		out.flush(h)
		if ierr := in.flush(h.k); ierr != nil {
			h.log.Debug("fast path: installing decisions", "err", ierr)
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			h.log.Warn("reading IP Rewrite packets", "err", err)
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// underlaySocket is a PA's GRE or VXLAN socket.
type underlaySocket interface {
	ReadBatch([]dataplane.Packet) (int, error)
	LocalAddr() netip.Addr
}

// underlayWorker validates and delivers what arrives on one PA socket, with
// the switch entry of its encapsulation, until the socket is closed.
func (h *Host) underlayWorker(s underlaySocket, from func(src, dst netip.Addr, payload []byte) vswitch.Result) {
	// GRE reads carry what the kernel's GRO on the underlay merged, up to
	// 64 KiB; UDP GRO reads up to 64 KiB of datagrams.
	encap, batch, size := policy.EncapNVGRE, batchSize, maxSuper
	if _, ok := s.(*dataplane.VXLANSocket); ok {
		encap, batch = policy.EncapVXLAN, superBatch
	}
	// wire is the longest inner frame one underlay packet carries.
	wire := h.underlays.mtu() - vswitch.Overhead(encap, s.LocalAddr().Is6()) + packet.EthernetHeaderLen
	pkts := make([]dataplane.Packet, batch)
	for i := range pkts {
		pkts[i].Buf = make([]byte, size)
	}
	var out output
	var in installer
	var results []vswitch.Result
	mon := h.mon.Source()
	for {
		n, err := s.ReadBatch(pkts)
		for i := 0; i < n; i++ {
			p := &pkts[i]
			// Read before the switch loads its policy: a decision is never
			// labelled newer than the policy it was made from.
			gen := h.sw.Generation()
			step := p.N
			if p.Segment > 0 {
				step = p.Segment
				results = h.sw.FromVXLANSegments(p.Src, p.Dst, p.Buf[:p.N], step, results[:0])
			}
			for k, off := 0, 0; off < p.N; k, off = k+1, off+step {
				payload := p.Buf[off:min(off+step, p.N)]
				var r vswitch.Result
				if p.Segment > 0 {
					r = results[k]
				} else {
					r = from(p.Src, p.Dst, payload)
				}
				switch r.Action {
				case vswitch.Redirect:
					h.applyRedirect(r.Redirect)
					continue
				case vswitch.Forward:
					h.forwardMoved(r, p.Dst, payload, encap)
					continue
				case vswitch.Drop:
					if mon.Wanted(monitor.KindDrop) {
						offerUnderlayDrop(mon, r.Reason, encap, payload)
					}
				case vswitch.ToPort:
					if r.Validated && !h.cfg.SlowPathOnly {
						in.addIngress(h.k, gen, p.Src, payload, &r, *h.socks.Load())
					}
					if hdr, ok := offload.KernelCoalesced(r.Data, wire); ok {
						out.addSuper(r.Port, hdr, r.Data)
						continue
					}
					if hdr, ok := offload.PartialChecksum(r.Data); ok {
						out.addSuper(r.Port, hdr, r.Data)
						continue
					}
				}
				out.add(r)
			}
		}
		out.flush(h)
		if ierr := in.flush(h.k); ierr != nil {
			h.log.Debug("fast path: installing decisions", "err", ierr)
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			h.log.Warn("reading underlay", "pa", s.LocalAddr(), "err", err)
			time.Sleep(10 * time.Millisecond)
		}
		clear(results)
	}
}

// settleWait bounds settlePorts, so that a reader stuck in a send cannot
// hold a policy change up for long.
const settleWait = time.Second

// settlePorts returns once no port reader still works on a batch it began
// before the call: every frame it reads afterwards meets the switch's
// current policy, so a policy change is in effect, also for frames already
// read, when the API call that made it returns (a lookup-record set that
// moves a CA sends nothing more to the old PA).
func (h *Host) settlePorts() {
	rs := h.readers.Load()
	if rs == nil {
		return
	}
	deadline := time.Now().Add(settleWait)
	for _, p := range *rs {
		if !p.busy.Load() {
			continue
		}
		n := p.batches.Load()
		for p.busy.Load() && p.batches.Load() == n {
			if time.Now().After(deadline) {
				h.log.Warn("a port reader did not finish its batch in time: the policy change may meet a frame read before it", "port", p.spec.Name)
				return
			}
			runtime.Gosched()
		}
	}
}
