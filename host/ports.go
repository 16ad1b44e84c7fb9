package host

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/fastpath"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// port is an attached VM port: an existing interface and the slow path's
// socket on it.
type port struct {
	spec  provider.PortSpec
	index int
	sock  *dataplane.Port
	done  chan struct{} // closed when the reader has stopped
	// busy is true while the reader works on a batch it read, batches
	// counts the batches it finished: settlePorts waits on them.
	busy    atomic.Bool
	batches atomic.Uint64
}

// AttachPort opens the slow path's socket on the port's existing interface,
// installs the port in the switch and starts its reader; the checkpoint, if
// any, has the port before AttachPort returns.
func (h *Host) AttachPort(spec provider.PortSpec) (provider.Port, error) {
	p, err := h.attachPort(spec)
	if err == nil {
		h.saveCheckpoint()
	}
	return p, err
}

func (h *Host) attachPort(spec provider.PortSpec) (provider.Port, error) {
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
		if p.spec.Interface == spec.Interface {
			return provider.Port{}, kindErr(policy.ErrExists, "Interface %q is already used by port %q", spec.Interface, p.spec.Name)
		}
	}
	sock, err := dataplane.OpenPort(dataplane.PortConfig{Interface: spec.Interface, Mark: fastpath.SlowMark})
	if err != nil {
		var nf *dataplane.LinkNotFoundError
		if errors.As(err, &nf) {
			return provider.Port{}, &policy.Error{Kind: policy.ErrNotFound, Msg: err.Error()}
		}
		return provider.Port{}, fmt.Errorf("attach port %q: %w", spec.Name, err)
	}
	p := &port{spec: spec, index: h.freeIndexLocked(), sock: sock, done: make(chan struct{})}
	h.ports[spec.Name] = p
	if err := h.publishPortsLocked(); err != nil {
		delete(h.ports, spec.Name)
		sock.Close()
		return provider.Port{}, &policy.Error{Kind: policy.ErrInvalid, Msg: err.Error()}
	}
	// The port program keeps the VM's frames from the host's own stack and
	// hands what it does not forward to the socket.
	if err := h.k.attachPort(sock.Ifindex(), spec, p.index); err != nil {
		delete(h.ports, spec.Name)
		h.publishPortsLocked()
		h.k.dp.DetachPort(sock.Ifindex())
		sock.Close()
		return provider.Port{}, fmt.Errorf("attach port %q: %w", spec.Name, err)
	}
	h.sw.Counters.ResetPort(p.index)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(p.done)
		h.portWorker(p)
	}()
	h.caEvents(p, notify.CustomerAddressAdded)
	h.log.Info("port attached", "name", spec.Name, "interface", spec.Interface, "vsid", spec.VirtualSubnetID, "mac", spec.MACAddress)
	return h.portInfo(p), nil
}

// DetachPort stops and removes a port; its interface stays as it is.
func (h *Host) DetachPort(name string) error {
	return h.detachPort(name, false)
}

// DetachMigratedPort detaches the port of a VM that live-migrated to another
// host. For a grace period, packets still arriving for the VM are forwarded
// to wherever policy maps it next.
func (h *Host) DetachMigratedPort(name string) error {
	return h.detachPort(name, true)
}

func (h *Host) detachPort(name string, migrated bool) error {
	h.mu.Lock()
	if _, ok := h.ports[name]; !ok {
		h.mu.Unlock()
		return kindErr(policy.ErrNotFound, "port %q is not attached", name)
	}
	h.detachPortLocked(name, migrated)
	h.mu.Unlock()
	h.saveCheckpoint()
	return nil
}

func (h *Host) detachLocked(name string) { h.detachPortLocked(name, false) }

func (h *Host) detachPortLocked(name string, migrated bool) {
	p := h.ports[name]
	delete(h.ports, name)
	if err := h.publishPortsLocked(); err != nil {
		h.log.Error("port table rebuild after detach", "err", err)
	}
	if err := h.k.dp.DetachPort(p.sock.Ifindex()); err != nil {
		h.log.Warn("detaching the port program", "port", name, "err", err)
	}
	h.syncKernel()
	if err := p.sock.Close(); err != nil {
		h.log.Warn("closing port", "port", name, "err", err)
	}
	<-p.done
	h.caEvents(p, notify.CustomerAddressDeleted)
	if migrated {
		h.depart(portSpecKey{vsid: p.spec.VirtualSubnetID, mac: p.spec.MACAddress, cas: p.spec.CustomerAddresses})
	}
	h.log.Info("port detached", "name", name, "migrated", migrated)
}

// relinkPorts moves each port whose interface was deleted and created again
// (a restarted VM or container) to the new interface: the socket and the
// port program stay with the old one, which is gone.
func (h *Host) relinkPorts() {
	h.mu.Lock()
	var again []provider.PortSpec
	for name, p := range h.ports {
		if idx, err := dataplane.LinkIndex(p.spec.Interface); err == nil && idx != p.sock.Ifindex() {
			again = append(again, p.spec)
			h.detachPortLocked(name, false)
		}
	}
	h.mu.Unlock()
	for _, spec := range again {
		if _, err := h.AttachPort(spec); err != nil {
			h.log.Warn("port not attached to its interface created again", "name", spec.Name, "interface", spec.Interface, "err", err)
			continue
		}
		h.log.Info("port follows its interface, created again", "name", spec.Name, "interface", spec.Interface)
	}
}

// Ports lists the attached ports with their counters, both paths merged.
func (h *Host) Ports() []provider.Port {
	kc, err := h.k.dp.Counters()
	if err != nil {
		h.log.Warn("fast path counters", "err", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]provider.Port, 0, len(h.ports))
	for _, p := range h.ports {
		info := h.portInfo(p)
		if pc, ok := kc.Ports[p.index]; ok {
			addPortCounters(&info.Counters, pc)
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b provider.Port) int { return a.Index - b.Index })
	return out
}

func (h *Host) portInfo(p *port) provider.Port {
	c := h.sw.Counters.Port(p.index)
	info := provider.Port{PortSpec: p.spec, Index: p.index, Ifindex: p.sock.Ifindex()}
	if mtu, err := dataplane.LinkMTU(p.spec.Interface); err == nil {
		info.MTU = mtu
	}
	info.Counters = provider.PortCounters{
		RxFrames: c.RxFrames.Load(), RxBytes: c.RxBytes.Load(), TxFrames: c.TxFrames.Load(), TxBytes: c.TxBytes.Load(), Drops: c.Drops.Load()}
	return info
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
	socks := make([]*dataplane.Port, 0, len(h.ports))
	for _, p := range h.ports {
		if p.index >= len(socks) {
			socks = append(socks, make([]*dataplane.Port, p.index+1-len(socks))...)
		}
		socks[p.index] = p.sock
	}
	h.socks.Store(&socks)
	readers := make([]*port, 0, len(h.ports))
	for _, p := range h.ports {
		readers = append(readers, p)
	}
	h.readers.Store(&readers)
	h.sw.SetPorts(pt)
	h.syncKernel()
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
