package host

import (
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// port is an attached VM port and its readers: one per queue of its
// multi-queue TAP, so the VM's flows spread over the cores.
type port struct {
	spec   provider.PortSpec
	index  int
	tap    *dataplane.TAP   // the first queue; frames to the VM are written here
	queues []*dataplane.TAP // the other queues
	done   chan struct{}    // closed when every reader has stopped
}

// AttachPort creates the port's TAP (moving it into spec.Netns if set),
// installs it in the switch and starts its reader.
func (h *Host) AttachPort(spec provider.PortSpec) (provider.Port, error) {
	spec, err := spec.Normalized()
	if err != nil {
		return provider.Port{}, &policy.Error{Kind: policy.ErrInvalid, Msg: err.Error()}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ports[spec.Name]; ok {
		return provider.Port{}, kindErr(policy.ErrExists, "port %q is already attached: detach it first", spec.Name)
	}
	for _, p := range h.ports {
		if p.spec.VirtualSubnetID == spec.VirtualSubnetID && p.spec.MACAddress == spec.MACAddress {
			return provider.Port{}, kindErr(policy.ErrExists, "MACAddress %s is already used by port %q in VirtualSubnetID %d", spec.MACAddress, p.spec.Name, spec.VirtualSubnetID)
		}
		if p.spec.TAP == spec.TAP {
			return provider.Port{}, kindErr(policy.ErrExists, "TAP %q is already used by port %q", spec.TAP, p.spec.Name)
		}
	}
	mtu := spec.MTU
	if mtu == 0 {
		mtu = h.underlayMTU - vswitch.Overhead(h.store.Table().Encapsulation(spec.VirtualSubnetID), false)
		spec.MTU = mtu
	}
	tap, err := dataplane.OpenTAP(dataplane.TAPConfig{Name: spec.TAP, Netns: spec.Netns, IfName: spec.IfName, MAC: spec.MACAddress, MTU: mtu, Offload: true})
	if err != nil {
		return provider.Port{}, fmt.Errorf("attach port %q: %w", spec.Name, err)
	}
	p := &port{spec: spec, index: h.freeIndexLocked(), tap: tap, done: make(chan struct{})}
	h.ports[spec.Name] = p
	if err := h.publishPortsLocked(); err != nil {
		delete(h.ports, spec.Name)
		tap.Close()
		return provider.Port{}, &policy.Error{Kind: policy.ErrInvalid, Msg: err.Error()}
	}
	h.sw.Counters.ResetPort(p.index)
	p.queues = h.openQueues(tap, spec)
	var readers sync.WaitGroup
	for _, q := range append([]*dataplane.TAP{tap}, p.queues...) {
		readers.Add(1)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer readers.Done()
			h.portWorker(p, q)
		}()
	}
	go func() {
		readers.Wait()
		close(p.done)
	}()
	h.caEvents(p, notify.CustomerAddressAdded)
	h.log.Info("port attached", "name", spec.Name, "tap", spec.TAP, "netns", spec.Netns, "vsid", spec.VirtualSubnetID, "mac", spec.MACAddress, "reattached", tap.Reattached())
	return h.portInfo(p), nil
}

// openQueues attaches one more queue to the port's TAP per core beyond the
// first. A port without them still works, on one core.
func (h *Host) openQueues(tap *dataplane.TAP, spec provider.PortSpec) []*dataplane.TAP {
	var qs []*dataplane.TAP
	for range runtime.GOMAXPROCS(0) - 1 {
		q, err := dataplane.OpenTAP(dataplane.TAPConfig{Name: tap.Name(), Netns: tap.Netns(), MAC: spec.MACAddress, Offload: tap.Offload()})
		if err != nil {
			h.log.Warn("opening another TAP queue: the port uses fewer cores", "port", spec.Name, "err", err)
			break
		}
		qs = append(qs, q)
	}
	return qs
}

// DetachPort stops and removes a port and deletes its TAP.
func (h *Host) DetachPort(name string) error {
	return h.detachPort(name, false)
}

// DetachPortKeepInterface stops and removes a port but leaves its TAP
// interface, with its state, for another host (a live migration's
// destination) or a later attach to take over. For a grace period, packets
// still arriving for the VM are forwarded to wherever policy maps it next.
func (h *Host) DetachPortKeepInterface(name string) error {
	return h.detachPort(name, true)
}

func (h *Host) detachPort(name string, keep bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ports[name]; !ok {
		return kindErr(policy.ErrNotFound, "port %q is not attached", name)
	}
	h.detachPortLocked(name, keep)
	return nil
}

func (h *Host) detachLocked(name string) { h.detachPortLocked(name, false) }

func (h *Host) detachPortLocked(name string, keep bool) {
	p := h.ports[name]
	delete(h.ports, name)
	if err := h.publishPortsLocked(); err != nil {
		h.log.Error("port table rebuild after detach", "err", err)
	}
	for _, q := range p.queues {
		if err := q.CloseQueue(); err != nil {
			h.log.Warn("closing TAP queue", "port", name, "err", err)
		}
	}
	closeTAP := p.tap.Close
	if keep {
		closeTAP = p.tap.CloseQueue
	}
	if err := closeTAP(); err != nil {
		h.log.Warn("closing TAP", "port", name, "err", err)
	}
	<-p.done
	h.caEvents(p, notify.CustomerAddressDeleted)
	if keep {
		h.depart(portSpecKey{vsid: p.spec.VirtualSubnetID, mac: p.spec.MACAddress, cas: p.spec.CustomerAddresses})
	}
	h.log.Info("port detached", "name", name, "keepInterface", keep)
}

// Ports lists the attached ports with their counters.
func (h *Host) Ports() []provider.Port {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]provider.Port, 0, len(h.ports))
	for _, p := range h.ports {
		out = append(out, h.portInfo(p))
	}
	slices.SortFunc(out, func(a, b provider.Port) int { return a.Index - b.Index })
	return out
}

func (h *Host) portInfo(p *port) provider.Port {
	c := h.sw.Counters.Port(p.index)
	return provider.Port{PortSpec: p.spec, Index: p.index, Counters: provider.PortCounters{
		RxFrames: c.RxFrames.Load(), RxBytes: c.RxBytes.Load(), TxFrames: c.TxFrames.Load(), TxBytes: c.TxBytes.Load(), Drops: c.Drops.Load()}}
}

func (h *Host) freeIndexLocked() int {
	used := map[int]bool{}
	for _, p := range h.ports {
		used[p.index] = true
	}
	for i := 0; ; i++ {
		if !used[i] {
			return i
		}
	}
}

func (h *Host) publishPortsLocked() error {
	cfgs := make([]vswitch.PortConfig, 0, len(h.ports))
	for _, p := range h.ports {
		cfgs = append(cfgs, vswitch.PortConfig{Index: p.index, Name: p.spec.Name, MAC: p.spec.MACAddress, VSID: p.spec.VirtualSubnetID, CAs: p.spec.CustomerAddresses})
	}
	pt, err := vswitch.NewPortTable(cfgs)
	if err != nil {
		return err
	}
	taps := make([]*dataplane.TAP, 0, len(h.ports))
	for _, p := range h.ports {
		if p.index >= len(taps) {
			taps = append(taps, make([]*dataplane.TAP, p.index+1-len(taps))...)
		}
		taps[p.index] = p.tap
	}
	h.taps.Store(&taps)
	h.sw.SetPorts(pt)
	h.checkpointChanged()
	return nil
}

// caEvents raises a customer-address change for each CA of the port, with
// the local PA of the CA's family.
func (h *Host) caEvents(p *port, reason notify.CAReason) {
	if h.hub == nil {
		return
	}
	t := h.store.Table()
	for _, ca := range p.spec.CustomerAddresses {
		pa, _ := t.LocalPA(ca.Is6())
		if !pa.IsValid() {
			pa, _ = t.LocalPA(!ca.Is6())
		}
		h.hub.CustomerAddressChange(p.spec.MACAddress, ca, uint32(p.spec.VirtualSubnetID), pa, uint32(reason))
	}
}

// kindErr is a one-sentence error of a policy error kind, so the provider API
// answers with the right status and without a kind prefix.
func kindErr(kind error, format string, a ...any) error {
	return &policy.Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}
