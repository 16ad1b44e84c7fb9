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

// paSet is the actual state of the provider addresses on the underlay: the
// reconciler moves it towards the PAs in policy.
type paSet struct {
	m     map[netip.Addr]*paRun
	socks atomic.Pointer[map[netip.Addr]*paSockets] // for the workers
	mu    sync.Mutex                                // guards socks updates from DAD goroutines
	// changed, if set, learns the PAs with sockets after every change.
	changed func(pas []netip.Addr)
}

// paSockets are the underlay sockets of one PA: raw GRE for NVGRE; for
// VXLAN, sockets on UDP 4789 with a reader each, one per core (none if the
// port could not be bound), and sockets on ephemeral ports to send from, one
// picked per flow.
type paSockets struct {
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

// openVXLAN opens the VXLAN sockets of PA a; any it cannot open it logs and
// goes without: without listeners (port 4789 taken, e.g. by a kernel vxlan
// device bound to the wildcard address) NVGRE still works.
func (h *Host) openVXLAN(a netip.Addr, log *slog.Logger) (listen, send []*dataplane.VXLANSocket) {
	for range runtime.GOMAXPROCS(0) {
		s, err := dataplane.ListenVXLAN(a)
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
		s, err := dataplane.SendVXLAN(a)
		if err != nil {
			log.Warn("opening a VXLAN sending socket: fewer source ports", "err", err)
			break
		}
		send = append(send, s)
	}
	return listen, send
}

// paRun is one PA being brought up or in use.
type paRun struct {
	prefix netip.Prefix
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *paSet) init() {
	s.m = map[netip.Addr]*paRun{}
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

// reconcilePAs runs until ctx ends: whenever policy changes it starts the PAs
// that policy has and the host does not, and stops the others. On the way out
// it removes every PA it configured.
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
		want := map[netip.Addr]netip.Prefix{}
		for _, pa := range h.store.ProviderAddresses(policy.ProviderAddressFilter{}) {
			want[pa.ProviderAddress] = netip.PrefixFrom(pa.ProviderAddress, int(pa.PrefixLength))
		}
		for a, run := range h.pas.m {
			if p, ok := want[a]; !ok || p != run.prefix {
				h.stopPA(a)
			}
		}
		for a, p := range want {
			if _, ok := h.pas.m[a]; !ok {
				h.startPA(ctx, p)
			}
		}
	}
}

func (h *Host) startPA(ctx context.Context, p netip.Prefix) {
	ctx, cancel := context.WithCancel(ctx)
	run := &paRun{prefix: p, cancel: cancel, done: make(chan struct{})}
	h.pas.m[p.Addr()] = run
	go func() {
		defer close(run.done)
		h.runPA(ctx, p)
	}()
}

func (h *Host) stopPA(a netip.Addr) {
	run := h.pas.m[a]
	delete(h.pas.m, a)
	run.cancel()
	<-run.done
}

// configured reports whether p is on the underlay already.
func (h *Host) configured(p netip.Prefix) bool {
	have, err := dataplane.Addresses(h.cfg.Underlay)
	return err == nil && slices.Contains(have, p)
}

// runPA brings one PA up, or adopts it from an earlier wnvd: duplicate
// address detection (an ARP probe before an IPv4 address is configured; the
// kernel's DAD for IPv6), then a GRE socket and a VXLAN socket with their
// workers. It reports each DAD state to policy and the notification hub,
// and undoes everything when ctx ends, except when the host is stopping.
func (h *Host) runPA(ctx context.Context, p netip.Prefix) {
	a := p.Addr()
	log := h.log.With("pa", a)
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
			if err := dataplane.RemoveAddress(h.cfg.Underlay, p); err != nil {
				log.Warn("removing provider address", "err", err)
			}
		}
	}()
	// An earlier wnvd's PA, still in use by the kernel, is taken over as
	// it is: no DAD, no gap.
	adopt := h.k.adopted[a] && h.configured(p)
	// The VXLAN sockets are bound (IP_FREEBIND) before the address comes up,
	// so the first datagram to it finds a socket rather than an ICMP port
	// unreachable; they are closed on every way out.
	socks := &paSockets{}
	socks.vxlan, socks.vxlanSend = h.openVXLAN(a, log)
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
		if err := dataplane.AddAddress(h.cfg.Underlay, p); err != nil {
			log.Error("configuring provider address", "err", err)
			return
		}
		added = true
	}
	if !adopt {
		if err := dataplane.DetectDuplicate(ctx, h.cfg.Underlay, p, report); err != nil {
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
		if err := dataplane.AddAddress(h.cfg.Underlay, p); err != nil {
			log.Error("configuring provider address", "err", err)
			return
		}
		added = true
	}
	gre, err := dataplane.ListenGRE(a)
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
