package host

import (
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/policy"
)

// paSet is the actual state of the provider addresses on the underlays:
// the reconciler moves it towards the PAs in policy.
type paSet struct {
	m map[netip.Addr]*paRun
	// refused are the PAs of policy that are not configured, and why (as
	// logged last).
	refused map[netip.Addr]string
	socks   atomic.Pointer[map[netip.Addr]*paSockets] // for the workers
	mu      sync.Mutex                                // guards socks updates from DAD goroutines
	// changed, if set, learns the PAs with sockets after every change.
	changed func(pas []netip.Addr)
}

// paSockets are the underlay sockets of one PA, bound to its interface:
// raw GRE for NVGRE; for VXLAN, sockets on UDP 4789 with a reader each, one
// per core (none if the port could not be bound), and sockets on ephemeral
// ports to send from, one picked per flow.
type paSockets struct {
	ifindex   int    // the PA's underlay interface
	vlan      uint16 // the PA's VLAN (0: untagged)
	gre       *dataplane.GRESocket
	vxlan     []*dataplane.VXLANSocket
	vxlanSend []*dataplane.VXLANSocket
}

// vxlanSenders is how many source ports a PA's VXLAN traffic spreads over.
const vxlanSenders = 8

// vxlanFor is the socket that sends VXLAN packets of a flow, or nil.
func (s *paSockets) vxlanFor(flow uint8) *dataplane.VXLANSocket {
	if len(s.vxlanSend) > 0 {
		return s.vxlanSend[int(flow)%len(s.vxlanSend)]
	}
	if len(s.vxlan) > 0 {
		return s.vxlan[0]
	}
	return nil
}

// sameVXLAN reports whether flows a and b leave by the same socket.
func (s *paSockets) sameVXLAN(a, b uint8) bool { return s == nil || s.vxlanFor(a) == s.vxlanFor(b) }

// openVXLAN opens the VXLAN sockets of PA a on interface ifindex; any it
// cannot open it logs and goes without: without listeners (port 4789
// taken, e.g. by a kernel vxlan device bound to the wildcard address)
// NVGRE still works.
func (h *Host) openVXLAN(a netip.Addr, ifindex int, log *slog.Logger) (listen, send []*dataplane.VXLANSocket) {
	for range runtime.GOMAXPROCS(0) {
		s, err := dataplane.ListenVXLAN(a, ifindex)
		if err != nil {
			log.Error("opening VXLAN socket: VXLAN subnets cannot use this PA", "err", err)
			break
		}
		listen = append(listen, s)
	}
	if len(listen) == 0 {
		return nil, nil
	}
	for range vxlanSenders {
		s, err := dataplane.SendVXLAN(a, ifindex)
		if err != nil {
			log.Warn("opening a VXLAN sending socket: fewer source ports", "err", err)
			break
		}
		send = append(send, s)
	}
	return listen, send
}

// paWant is where policy wants a PA: its prefix on an underlay, with its
// VLAN (0: untagged).
type paWant struct {
	prefix netip.Prefix
	on     underlay
	vlan   uint16
}

// paRun is one PA being brought up or in use.
type paRun struct {
	want   paWant
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *paSet) init() {
	s.m = map[netip.Addr]*paRun{}
	s.refused = map[netip.Addr]string{}
	s.socks.Store(&map[netip.Addr]*paSockets{})
}

func (s *paSet) setSocket(a netip.Addr, sock *paSockets) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.socks.Load()
	n := make(map[netip.Addr]*paSockets, len(old)+1)
	for k, v := range old {
		n[k] = v
	}
	if sock == nil {
		delete(n, a)
	} else {
		n[a] = sock
	}
	s.socks.Store(&n)
	if s.changed != nil {
		pas := make([]netip.Addr, 0, len(n))
		for a := range n {
			pas = append(pas, a)
		}
		s.changed(pas)
	}
}

// wantedPAs places the PAs of policy on the underlays their InterfaceIndex
// names; those on no underlay (a checkpoint of a host with other
// interfaces) are refused, with the reason.
func wantedPAs(pas []policy.ProviderAddress, us underlays) (map[netip.Addr]paWant, map[netip.Addr]string) {
	want := map[netip.Addr]paWant{}
	refused := map[netip.Addr]string{}
	for _, pa := range pas {
		u, err := us.of(pa.InterfaceIndex)
		if err != nil {
			refused[pa.ProviderAddress] = err.Error()
			continue
		}
		want[pa.ProviderAddress] = paWant{prefix: netip.PrefixFrom(pa.ProviderAddress, int(pa.PrefixLength)), on: u, vlan: pa.VlanID}
	}
	return want, refused
}

// reconcilePAs runs until ctx ends: whenever policy changes it starts the PAs
// that policy has and the host does not, and stops the others; a PA whose
// prefix, interface or VLAN changed starts again. On the way out it stops
// reading them, and leaves them configured (fail static).
func (h *Host) reconcilePAs(ctx context.Context) {
	h.kick()
	for {
		select {
		case <-ctx.Done():
			for a := range h.pas.m {
				h.stopPA(a)
			}
			return
		case <-h.reconcil:
		}
		want, refused := wantedPAs(h.store.ProviderAddresses(policy.ProviderAddressFilter{}), h.underlays)
		for a, why := range refused {
			if h.pas.refused[a] != why {
				h.log.Error("provider address not configured", "pa", a, "why", why)
			}
		}
		h.pas.refused = refused
		for a, run := range h.pas.m {
			if w, ok := want[a]; !ok || w != run.want {
				h.stopPA(a)
			}
		}
		for a, w := range want {
			if _, ok := h.pas.m[a]; !ok {
				h.startPA(ctx, w)
			}
		}
	}
}

// startPA brings PA w up. The underlay programs learn its VLAN first, so
// that everything it sends, DAD probes included, leaves tagged.
func (h *Host) startPA(ctx context.Context, w paWant) {
	if err := h.k.dp.SetPAVLAN(w.prefix.Addr(), w.vlan); err != nil {
		h.log.Error("provider address not configured: the underlay programs cannot learn its VLAN", "pa", w.prefix.Addr(), "err", err)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	run := &paRun{want: w, cancel: cancel, done: make(chan struct{})}
	h.pas.m[w.prefix.Addr()] = run
	go func() {
		defer close(run.done)
		h.runPA(ctx, w)
	}()
}

// stopPA takes PA a down; the underlay programs forget it, unless the host
// is stopping (fail static: it stays configured, tagged and decapsulated).
func (h *Host) stopPA(a netip.Addr) {
	run := h.pas.m[a]
	delete(h.pas.m, a)
	run.cancel()
	<-run.done
	if !h.stopping() {
		if err := h.k.dp.RemovePAVLAN(a); err != nil {
			h.log.Warn("forgetting the VLAN of a provider address", "pa", a, "err", err)
		}
	}
}

// configured reports whether PA w is on its underlay already.
func (h *Host) configured(w paWant) bool {
	have, err := dataplane.Addresses(w.on.name)
	return err == nil && slices.Contains(have, w.prefix)
}

// runPA brings one PA up on its underlay, or adopts it from an earlier
// wnvd: duplicate address detection on its VLAN (an ARP probe before an
// IPv4 address is configured; the kernel's DAD for IPv6), then a GRE
// socket and a VXLAN socket with their workers, bound to its interface. It
// reports each DAD state to policy and the notification hub, and undoes
// everything when ctx ends, except when the host is stopping.
func (h *Host) runPA(ctx context.Context, w paWant) {
	p, ul := w.prefix, w.on.name
	a := p.Addr()
	log := h.log.With("pa", a, "underlay", ul, "vlan", w.vlan)
	final := policy.AddressInvalid
	report := func(addr netip.Addr, st policy.AddressState) {
		final = st
		if err := h.store.SetAddressState(addr, st); err != nil {
			log.Debug("recording DAD state", "err", err)
		}
		if h.hub != nil {
			h.hub.ProviderAddressChange(addr, uint32(st))
		}
		log.Info("provider address state", "state", st.String())
	}
	added := false
	defer func() {
		// Fail static: a stopping wnvd leaves its PAs configured.
		if added && !h.stopping() {
			if err := dataplane.RemoveAddress(ul, p); err != nil {
				log.Warn("removing provider address", "err", err)
			}
		}
	}()
	// An earlier wnvd's PA, still in use by the kernel, is taken over as
	// it is: no DAD, no gap.
	adopt := h.k.adopted[a] && h.configured(w)
	// The VXLAN sockets are bound (IP_FREEBIND) before the address comes up,
	// so the first datagram to it finds a socket rather than an ICMP port
	// unreachable; they are closed on every way out.
	socks := &paSockets{ifindex: w.on.index, vlan: w.vlan}
	socks.vxlan, socks.vxlanSend = h.openVXLAN(a, w.on.index, log)
	vxlanOpen := true
	closeVXLAN := func() {
		if vxlanOpen {
			for _, vs := range append(socks.vxlan, socks.vxlanSend...) {
				vs.Close()
			}
			vxlanOpen = false
		}
	}
	defer closeVXLAN()
	switch {
	case adopt:
		added = true
		report(a, policy.AddressPreferred)
	case a.Is6():
		if err := dataplane.AddAddress(ul, p); err != nil {
			log.Error("configuring provider address", "err", err)
			return
		}
		added = true
	}
	if !adopt {
		if err := dataplane.DetectDuplicate(ctx, ul, p, w.vlan, report); err != nil {
			if ctx.Err() == nil {
				log.Error("duplicate address detection", "err", err)
			}
			return
		}
	}
	if final != policy.AddressPreferred && final != policy.AddressDeprecated {
		log.Warn("provider address not usable", "state", final.String())
		<-ctx.Done()
		return
	}
	if !added {
		if err := dataplane.AddAddress(ul, p); err != nil {
			log.Error("configuring provider address", "err", err)
			return
		}
		added = true
	}
	gre, err := dataplane.ListenGRE(a, w.on.index)
	if err != nil {
		log.Error("opening GRE socket", "err", err)
		<-ctx.Done()
		return
	}
	socks.gre = gre
	h.pas.setSocket(a, socks)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.underlayWorker(gre, h.sw.FromUnderlay)
	}()
	for _, vs := range socks.vxlan {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.underlayWorker(vs, h.sw.FromVXLAN)
		}()
	}
	<-ctx.Done()
	h.pas.setSocket(a, nil)
	gre.Close()
	closeVXLAN()
	wg.Wait()
}
