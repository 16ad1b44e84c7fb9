package vswitch

import (
	"net/netip"

	"github.com/wnv/wnv/policy"
)

// Miss names the destination a held frame waits for: CA in VSID.
type Miss struct {
	VSID policy.VSID
	CA   netip.Addr
}

// SetHoldMisses makes a frame from a VM whose destination has no lookup
// record yet (an IP packet, ARP request or neighbor solicitation) come out
// as Hold instead of a drop, for a host agent that fetches policy on demand.
func (s *Switch) SetHoldMisses(on bool) { s.hold.Store(on) }

func holdFor(vsid policy.VSID, ca netip.Addr) Result {
	return Result{Action: Hold, Reason: ReasonNoLookupRecord, Miss: Miss{VSID: vsid, CA: ca}}
}

// FromPortHeld processes again a frame that came out as Hold, without
// counting its reception twice. It may come out as Hold again.
func (s *Switch) FromPortHeld(port int, buf []byte, off, n int, scratch []byte) Result {
	pt := s.ports.Load()
	p, ok := pt.Port(port)
	if !ok {
		return s.drop(ReasonUnknownPort)
	}
	r := s.egress(p, pt, buf, off, buf[off:off+n], scratch)
	if r.Action == Drop {
		s.Counters.Port(port).Drops.Add(1)
		s.Counters.VSID(p.VSID).Drops.Add(1)
	}
	return r
}
