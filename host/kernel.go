package host

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/fastpath"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// kernel is the host's side of the kernel fast path: it installs what the
// switch decided, keeps the kernel's generation in step with the switch's
// (so no decision outlives the policy or ports it was made from), tells
// the programs the slow path is alive, and reads their counters.
type kernel struct {
	dp *fastpath.Datapath
	// base maps the switch's generation, which starts again with every
	// wnvd, to the kernel's, which outlives it and which the datapath also
	// bumps itself (when a port goes): kernel = base + switch. Both only
	// grow, so a decision of an older switch generation never maps to the
	// current kernel one.
	base atomic.Uint64
	// live is false until the slow path is ready to take frames (Run):
	// until then the kernel keeps the generation it had, so what an earlier
	// wnvd installed goes on forwarding while this one restores its state.
	live atomic.Bool
	mu   sync.Mutex // serialises sync and goLive
	// adopted are the PAs an earlier wnvd left decapsulating: this one
	// takes them over as they are, without DAD or a gap.
	adopted map[netip.Addr]bool
}

// slowPathLease is how long the programs keep handing frames to the slow
// path after wnvd's last heartbeat; after it they drop them as
// slow-path-down (wnvd is gone).
const slowPathLease = time.Second

func openKernel(cfg Config, underlays []int) (*kernel, error) {
	dp, err := fastpath.Open(fastpath.Config{PinDir: cfg.PinDir, Underlays: underlays, FastPath: !cfg.SlowPathOnly})
	if err != nil {
		return nil, err
	}
	k := &kernel{dp: dp, adopted: map[netip.Addr]bool{}}
	k.base.Store(dp.Generation() + 1)
	if dp.Adopted() {
		pas, err := dp.LocalPAs()
		if err != nil {
			dp.Close()
			return nil, err
		}
		for _, a := range pas {
			k.adopted[a] = true
		}
	}
	return k, nil
}

// sync makes the switch's current generation the kernel's: every decision
// made before is stale from now on. Before goLive it does nothing.
func (k *kernel) sync(sw *vswitch.Switch) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.live.Load() {
		return nil
	}
	return k.syncLocked(sw)
}

func (k *kernel) syncLocked(sw *vswitch.Switch) error {
	gen := k.base.Load() + sw.Generation()
	if cur := k.dp.Generation(); gen <= cur {
		k.base.Add(cur + 1 - gen)
		gen = cur + 1
	}
	return k.dp.SetGeneration(gen)
}

// goLive is called once the slow path reads its ports and PAs: from now on
// the programs hand it frames, and the kernel's generation follows the
// switch's. With keep, the decisions found in the kernel stay current (this
// wnvd restored no policy that could supersede them, so the next change of
// policy invalidates them); otherwise they are stale at once and the slow
// path decides every flow afresh.
func (k *kernel) goLive(sw *vswitch.Switch, keep bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.live.Store(true)
	if cur, g := k.dp.Generation(), sw.Generation(); keep && cur >= g {
		k.base.Store(cur - g)
	} else if err := k.syncLocked(sw); err != nil {
		return err
	}
	return k.dp.SlowPathAlive(time.Now().Add(slowPathLease))
}

// heartbeat renews the slow path's lease until ctx ends.
func (k *kernel) heartbeat(ctx context.Context) {
	t := time.NewTicker(slowPathLease / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = k.dp.SlowPathAlive(time.Now().Add(slowPathLease))
		}
	}
}

// installer turns one worker's decisions into kernel entries; its slices
// are reused batch after batch.
type installer struct {
	egress    []fastpath.Egress
	ingress   []fastpath.Ingress
	rewrite   []fastpath.RewriteIngress
	forwarded []fastpath.ForwardedSource
}

// addEgress queues the decisions of a batch; ports are the ports' sockets
// by index, for their interfaces, and pas the PAs' sockets, for the
// underlay interface an encapsulated or rewritten frame leaves by. A
// decision from a PA without sockets (going down) is not installed.
func (in *installer) addEgress(k *kernel, ds []vswitch.Decision, ports []*dataplane.Port, pas map[netip.Addr]*paSockets) {
	for _, d := range ds {
		if d.Port >= len(ports) || ports[d.Port] == nil {
			continue
		}
		e := fastpath.Egress{Ifindex: ports[d.Port].Ifindex(), Dst: d.Dst.Unmap(), Gen: k.base.Load() + d.Gen, DstMAC: d.MAC, Routed: d.Routed,
			SrcMAC: d.SrcMAC, VSID: uint32(d.VSID)}
		if d.Local >= 0 {
			if d.Local >= len(ports) || ports[d.Local] == nil {
				continue
			}
			e.Local, e.OutIfindex = true, ports[d.Local].Ifindex()
		} else {
			s := pas[d.SrcPA]
			if s == nil {
				continue
			}
			e.OutIfindex, e.Encap, e.Rewrite, e.SrcPA, e.DstPA, e.MaxLen = s.ifindex, d.Encap, d.Rewrite, d.SrcPA, d.DstPA, d.MaxLen
		}
		in.egress = append(in.egress, e)
	}
}

// addForwarded queues the sources a gateway port was allowed to forward
// from; ports are the ports' sockets by index, for their interfaces.
func (in *installer) addForwarded(k *kernel, fs []vswitch.ForwardedSource, ports []*dataplane.Port) {
	for _, f := range fs {
		if f.Port < len(ports) && ports[f.Port] != nil {
			in.forwarded = append(in.forwarded, fastpath.ForwardedSource{Ifindex: ports[f.Port].Ifindex(), Src: f.Src.Unmap(), Gen: k.base.Load() + f.Gen})
		}
	}
}

// addIngress queues the delivery the switch validated for payload (a GRE
// or VXLAN header and the inner frame) from srcPA, made in generation gen.
func (in *installer) addIngress(k *kernel, gen uint64, srcPA netip.Addr, payload []byte, r *vswitch.Result, ports []*dataplane.Port) {
	if r.Port >= len(ports) || ports[r.Port] == nil || len(payload) < vswitch.EncapHeaderLen {
		return
	}
	// NVGRE's key and VXLAN's VNI both carry the VSID in bytes 4..6.
	vsid := binary.BigEndian.Uint32(payload[4:8]) >> 8
	eth, err := packet.ParseEthernet(r.Data)
	if err != nil {
		return
	}
	var src, dst netip.Addr
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			return
		}
		src, dst = ip.Src(), ip.Dst()
	case packet.EtherTypeIPv6:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil {
			return
		}
		src, dst = ip.Src(), ip.Dst()
	default:
		return
	}
	in.ingress = append(in.ingress, fastpath.Ingress{VSID: vsid, SrcPA: srcPA.Unmap(), SrcCA: src, SrcMAC: eth.Src(), DstCA: dst, DstMAC: eth.Dst(),
		Gen: k.base.Load() + gen, Ifindex: ports[r.Port].Ifindex()})
}

// addRewriteIngress queues the IP Rewrite delivery the switch validated.
func (in *installer) addRewriteIngress(k *kernel, d vswitch.RewriteIngressDecision, ports []*dataplane.Port) {
	if d.Port < len(ports) && ports[d.Port] != nil {
		in.rewrite = append(in.rewrite, fastpath.RewriteIngress{SrcPA: d.SrcPA.Unmap(), DstPA: d.DstPA.Unmap(), SrcCA: d.SrcCA.Unmap(), DstCA: d.DstCA.Unmap(),
			SrcMAC: d.SrcMAC, DstMAC: d.DstMAC, Gen: k.base.Load() + d.Gen, Ifindex: ports[d.Port].Ifindex()})
	}
}

// flush installs what was queued. A decision the kernel refuses only
// leaves its flow on the slow path.
func (in *installer) flush(k *kernel) error {
	var err error
	if len(in.egress) > 0 {
		err = k.dp.InstallEgress(in.egress)
		in.egress = in.egress[:0]
	}
	if len(in.ingress) > 0 {
		if e := k.dp.InstallIngress(in.ingress); err == nil {
			err = e
		}
		in.ingress = in.ingress[:0]
	}
	if len(in.rewrite) > 0 {
		if e := k.dp.InstallRewriteIngress(in.rewrite); err == nil {
			err = e
		}
		in.rewrite = in.rewrite[:0]
	}
	if len(in.forwarded) > 0 {
		if e := k.dp.InstallForwardedSources(in.forwarded); err == nil {
			err = e
		}
		in.forwarded = in.forwarded[:0]
	}
	return err
}

// attachPort installs the port program on the port's interface.
func (k *kernel) attachPort(ifindex int, spec provider.PortSpec, index int) error {
	if err := k.dp.EnsureVSID(uint32(spec.VirtualSubnetID)); err != nil {
		return err
	}
	return k.dp.AttachPort(ifindex, fastpath.Port{Index: index, VSID: uint32(spec.VirtualSubnetID), MAC: spec.MACAddress, CAs: spec.CustomerAddresses})
}

// setLocalPAs tells the underlay program which PAs are this host's.
func (k *kernel) setLocalPAs(pas []netip.Addr) error { return k.dp.SetLocalPAs(pas) }

// setRewritePAs tells the underlay programs which PAs are local VMs' own
// (IP Rewrite), whose packets they rewrite back or hand to the slow path,
// and which of them put their VM's MAC on the wire (UseVmMACAddress).
func (k *kernel) setRewritePAs(t *policy.Table) error {
	return errors.Join(k.dp.SetRewritePAs(t.RewritePAs()), k.dp.SetVMMACs(t.VMMACPAs()))
}

// close tells the programs the slow path is gone (what they would hand it
// they drop and count from now on) and releases the file descriptors;
// programs, maps and decisions stay pinned, and forwarding goes on.
func (k *kernel) close() error {
	err := k.dp.SlowPathAlive(time.Time{})
	return errors.Join(err, k.dp.Close())
}

// addPortCounters adds a port's kernel counts to its switch counts.
func addPortCounters(c *provider.PortCounters, k fastpath.PortCounters) {
	c.RxFrames += k.RxFrames
	c.RxBytes += k.RxBytes
	c.TxFrames += k.TxFrames
	c.TxBytes += k.TxBytes
	c.Drops += k.Drops
}

// counters adds the kernel's counts to c: per port (by index) and VSID,
// per drop reason, and which path carried how many frames.
func (k *kernel) counters(c *provider.Counters, names map[int]string) error {
	kc, err := k.dp.Counters()
	if err != nil {
		return err
	}
	byName := make(map[string]int, len(names))
	for idx, name := range names {
		byName[name] = idx
	}
	for i := range c.Ports {
		idx, ok := byName[c.Ports[i].Name]
		if pc, found := kc.Ports[idx]; ok && found {
			addPortCounters(&c.Ports[i].PortCounters, pc)
		}
	}
	for i := range c.VSIDs {
		v := &c.VSIDs[i]
		if kv, ok := kc.VSIDs[uint32(v.VirtualSubnetID)]; ok {
			v.Encapsulated += kv.Encapsulated
			v.Decapsulated += kv.Decapsulated
			v.Local += kv.Local
			v.TxFrames += kv.Decapsulated + kv.Local
			v.RxFrames += kv.Encapsulated + kv.Local
			v.Drops += kv.Drops
			delete(kc.VSIDs, uint32(v.VirtualSubnetID))
		}
	}
	for vsid, kv := range kc.VSIDs {
		if kv != (fastpath.VSIDCounters{}) {
			c.VSIDs = append(c.VSIDs, provider.VSIDCounters{VirtualSubnetID: policy.VSID(vsid), Encapsulated: kv.Encapsulated, Decapsulated: kv.Decapsulated, Local: kv.Local,
				TxFrames: kv.Decapsulated + kv.Local, RxFrames: kv.Encapsulated + kv.Local, Drops: kv.Drops})
		}
	}
	for _, r := range vswitch.Reasons() {
		if n := kc.Reasons[r]; n > 0 {
			found := false
			for i := range c.Drops {
				if c.Drops[i].Reason == r.String() {
					c.Drops[i].Count += n
					found = true
				}
			}
			if !found {
				c.Drops = append(c.Drops, provider.DropCount{Reason: r.String(), Count: n})
			}
		}
	}
	c.Paths = &provider.PathCounters{KernelFromPorts: kc.Path.PortFast, KernelFromUnderlay: kc.Path.UnderlayFast,
		SlowFromPorts: kc.Path.PortSlow, SlowFromUnderlay: kc.Path.UnderlaySlow}
	return nil
}

// underlayCounters reads the 802.1Q counters of the underlays us.
func (k *kernel) underlayCounters(us underlays) ([]provider.UnderlayCounters, error) {
	kc, err := k.dp.UnderlayCounters()
	if err != nil {
		return nil, err
	}
	out := make([]provider.UnderlayCounters, 0, len(us))
	for _, u := range us {
		c := kc[u.index]
		out = append(out, provider.UnderlayCounters{Name: u.name, InterfaceIndex: u.index, TxTagged: c.TxTagged, RxTagged: c.RxTagged, WrongVLAN: c.WrongVLAN})
	}
	return out, nil
}
