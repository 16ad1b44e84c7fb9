package host

import (
	"errors"
	"net/netip"
	"os"
	"time"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

const (
	batchSize = 64
	// maxFrame bounds a frame from a VM or the underlay (jumbo frames fit).
	maxFrame = 9216
	// scratchSize holds the largest reply the switch builds: an ICMP error
	// quoting up to 1280 bytes behind its headers.
	scratchSize = 2048
)

// output collects one batch's verdicts and writes them out grouped by
// destination, so each TAP and socket gets one WriteBatch per batch. Its
// slices are reused: steady-state forwarding does not allocate.
type output struct {
	under []underPacket
	toTAP []tapWrite
	group [][]byte
	pkts  []dataplane.Packet
}

type underPacket struct {
	dataplane.Packet
	encap policy.Encapsulation
}

type tapWrite struct {
	port int
	data []byte
}

func (o *output) add(r vswitch.Result) {
	switch r.Action {
	case vswitch.ToUnderlay:
		o.under = append(o.under, underPacket{dataplane.Packet{Buf: r.Data, N: len(r.Data), Src: r.Src, Dst: r.Dst}, r.Encap})
	case vswitch.ToPort:
		o.toTAP = append(o.toTAP, tapWrite{r.Port, r.Data})
	}
}

func (o *output) flush(h *Host) {
	if len(o.under) > 0 {
		socks := *h.pas.socks.Load()
		for len(o.under) > 0 {
			src, encap := o.under[0].Src, o.under[0].encap
			o.pkts = o.pkts[:0]
			rest := o.under[:0]
			for _, p := range o.under {
				if p.Src == src && p.encap == encap {
					o.pkts = append(o.pkts, p.Packet)
				} else {
					rest = append(rest, p)
				}
			}
			o.under = rest
			s := socks[src]
			switch {
			case s == nil:
			case encap == policy.EncapVXLAN && s.vxlan != nil:
				_, _ = s.vxlan.WriteBatch(o.pkts) // refused writes are counted by the socket
			case encap == policy.EncapNVGRE:
				_, _ = s.gre.WriteBatch(o.pkts)
			}
		}
	}
	if len(o.toTAP) > 0 {
		taps := *h.taps.Load()
		for len(o.toTAP) > 0 {
			port := o.toTAP[0].port
			o.group = o.group[:0]
			rest := o.toTAP[:0]
			for _, w := range o.toTAP {
				if w.port == port {
					o.group = append(o.group, w.data)
				} else {
					rest = append(rest, w)
				}
			}
			o.toTAP = rest
			if port < len(taps) && taps[port] != nil {
				_, _ = taps[port].WriteBatch(o.group) // refused writes are counted by the TAP
			}
		}
	}
	clear(o.pkts)
	clear(o.group)
}

func newBuffers(n, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs
}

// portWorker switches the frames a VM sends until its TAP is closed.
func (h *Host) portWorker(p *port) {
	bufs := newBuffers(batchSize, vswitch.Headroom+maxFrame)
	reads := make([][]byte, batchSize)
	for i := range bufs {
		reads[i] = bufs[i][vswitch.Headroom:]
	}
	sizes := make([]int, batchSize)
	scratch := newBuffers(batchSize, scratchSize)
	flows := vswitch.NewFlows()
	var out output
	for {
		n, err := p.tap.ReadBatch(reads, sizes)
		for i := 0; i < n; i++ {
			r := h.sw.FromPortFlows(flows, p.index, bufs[i], vswitch.Headroom, sizes[i], scratch[i])
			if r.Action == vswitch.Hold {
				h.park(p.index, r.Miss, reads[i][:sizes[i]])
				continue
			}
			out.add(r)
		}
		out.flush(h)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			h.log.Warn("reading VM port", "port", p.spec.Name, "err", err)
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
	pkts := make([]dataplane.Packet, batchSize)
	for i := range pkts {
		pkts[i].Buf = make([]byte, maxFrame)
	}
	encap := policy.EncapNVGRE
	if _, ok := s.(*dataplane.VXLANSocket); ok {
		encap = policy.EncapVXLAN
	}
	var out output
	for {
		n, err := s.ReadBatch(pkts)
		for i := 0; i < n; i++ {
			r := from(pkts[i].Src, pkts[i].Dst, pkts[i].Buf[:pkts[i].N])
			switch r.Action {
			case vswitch.Redirect:
				h.applyRedirect(r.Redirect)
				continue
			case vswitch.Forward:
				h.forwardMoved(r, pkts[i].Buf[:pkts[i].N], encap)
				continue
			}
			out.add(r)
		}
		out.flush(h)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			h.log.Warn("reading underlay", "pa", s.LocalAddr(), "err", err)
			time.Sleep(10 * time.Millisecond)
		}
	}
}
