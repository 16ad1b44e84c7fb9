package fastpath

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// Port is what the port program knows of a port.
type Port struct {
	Index  int    // the Go switch's port index, for counters; < MaxPorts
	VSID   uint32 // the port's virtual subnet
	MAC    packet.MAC
	CAs    []netip.Addr // the addresses it may send from
	L2Only bool         // any source CA: the port's CAs are learned (L2Only records)
}

// Egress is a decision for the frames from port Ifindex to CA Dst: deliver
// them to the local port OutIfindex, or encapsulate them (or rewrite them,
// IP Rewrite) and send them out of the underlay OutIfindex.
type Egress struct {
	Ifindex int
	Dst     netip.Addr // IPv4 as a 4-byte address: its family is the packet's
	Gen     uint64     // the generation it was decided in
	Local   bool
	// OutIfindex is the local port's interface, or the underlay's.
	OutIfindex int
	DstMAC     packet.MAC // the destination's: the new destination MAC
	// Routed: source MAC := SrcMAC, the gateway's, and TTL (hop limit) − 1;
	// a frame with TTL 1 goes to the slow path for the ICMP error.
	Routed bool
	SrcMAC packet.MAC
	Encap  policy.Encapsulation
	// Rewrite: IP Rewrite instead of Encap: the source CA (one of the
	// port's own) becomes SrcPA and the destination CA DstPA, nothing is
	// added, and the frame leaves towards the next hop the kernel's FIB
	// gives for DstPA.
	Rewrite bool
	VSID    uint32     // the destination's: NVGRE key or VXLAN VNI, and counters
	SrcPA   netip.Addr // outer source, a local PA
	DstPA   netip.Addr
	// MaxLen is the longest inner frame, Ethernet header included, whose
	// encapsulation fits the underlay MTU (see MaxLen); a longer one goes
	// to the slow path, which answers "fragmentation needed" or "packet
	// too big". For a GSO frame each segment is checked.
	MaxLen int
}

// RewriteIngress is a delivery for IP Rewrite packets from SrcPA to DstPA
// (a local VM's own PA) that the slow path validated: their addresses go
// back to SrcCA and DstCA, their MACs become SrcMAC and DstMAC, and they go
// to the port at Ifindex, while the generation is Gen.
type RewriteIngress struct {
	SrcPA, DstPA   netip.Addr // of one family
	SrcCA, DstCA   netip.Addr // of the PAs' family
	SrcMAC, DstMAC packet.MAC
	Gen            uint64
	Ifindex        int
}

// ForwardedSource lets port Ifindex send from Src, an address outside its
// subnet, while the generation is Gen: the slow path found the port to be
// its subnet's gateway (vswitch.ForwardedSource).
type ForwardedSource struct {
	Ifindex int
	Src     netip.Addr // IPv4 as a 4-byte address
	Gen     uint64
}

// EgressKey names an egress decision.
type EgressKey struct {
	Ifindex int
	Dst     netip.Addr
}

// Key returns e's key.
func (e *Egress) Key() EgressKey { return EgressKey{e.Ifindex, e.Dst} }

// Ingress is a decision for NVGRE or VXLAN packets of VSID from SrcPA
// whose inner frame goes from (SrcMAC, SrcCA) to (DstMAC, DstCA): deliver
// it to the port at Ifindex. What the Go switch validates on arrival is in
// the key.
type Ingress struct {
	VSID   uint32
	SrcPA  netip.Addr
	SrcCA  netip.Addr
	SrcMAC packet.MAC
	DstCA  netip.Addr // of SrcCA's family
	DstMAC packet.MAC
	Gen    uint64
	// Ifindex is the local port's interface.
	Ifindex int
}

// IngressKey names an ingress decision.
type IngressKey struct {
	VSID   uint32
	SrcPA  netip.Addr
	SrcCA  netip.Addr
	SrcMAC packet.MAC
	DstCA  netip.Addr
	DstMAC packet.MAC
}

// Key returns in's key.
func (in *Ingress) Key() IngressKey {
	return IngressKey{in.VSID, in.SrcPA, in.SrcCA, in.SrcMAC, in.DstCA, in.DstMAC}
}

// Encapsulation overheads in bytes (outer IP header and tunnel header; the
// inner Ethernet header is part of the frame).
const (
	overheadNVGRE4 = 20 + 8
	overheadVXLAN4 = 20 + 8 + 8
	overheadNVGRE6 = 40 + 8
	overheadVXLAN6 = 40 + 8 + 8
)

// MaxLen is Egress.MaxLen for an underlay of MTU mtu: the longest inner
// frame whose encapsulation in e over IPv6 (outer6) or IPv4 fits.
func MaxLen(mtu int, e policy.Encapsulation, outer6 bool) int {
	over := overheadNVGRE4
	switch {
	case outer6 && e == policy.EncapVXLAN:
		over = overheadVXLAN6
	case outer6:
		over = overheadNVGRE6
	case e == policy.EncapVXLAN:
		over = overheadVXLAN4
	}
	return mtu - over
}

// family and addr16 are how the maps hold an address: its family (4 or
// 6) and 16 bytes, IPv4 in the first 4.
func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

func addr16(a netip.Addr) (b [16]byte) {
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
		return b
	}
	return a.As16()
}

func addrFrom(fam uint8, b [16]byte) netip.Addr {
	if fam == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

func unicastMAC(m packet.MAC) bool { return !m.IsZero() && !m.IsMulticast() }

const maxVSID = 1<<24 - 1

func egressKey(k EgressKey) (datapathAddrKey, error) {
	if k.Ifindex <= 0 || !k.Dst.IsValid() {
		return datapathAddrKey{}, fmt.Errorf("fast path: egress key (ifindex %d, destination %v) needs a positive ifindex and a valid address", k.Ifindex, k.Dst)
	}
	return datapathAddrKey{Ifindex: uint32(k.Ifindex), Family: family(k.Dst), Addr: addr16(k.Dst)}, nil
}

func (e *Egress) marshal() (datapathAddrKey, datapathEgress, error) {
	k, err := egressKey(e.Key())
	if err != nil {
		return k, datapathEgress{}, err
	}
	v := datapathEgress{Gen: e.Gen, OutIfindex: uint32(e.OutIfindex), Vsid: e.VSID, DstMac: e.DstMAC, Encap: uint8(e.Encap)}
	if e.Routed {
		v.Routed, v.SrcMac = 1, e.SrcMAC
	}
	switch {
	case e.OutIfindex <= 0:
		err = fmt.Errorf("fast path: egress to %v from interface %d: out ifindex %d is not positive", e.Dst, e.Ifindex, e.OutIfindex)
	case !unicastMAC(e.DstMAC):
		err = fmt.Errorf("fast path: egress to %v from interface %d: destination MAC %v is not unicast", e.Dst, e.Ifindex, e.DstMAC)
	case e.Routed && !unicastMAC(e.SrcMAC):
		err = fmt.Errorf("fast path: routed egress to %v from interface %d: source MAC %v is not unicast", e.Dst, e.Ifindex, e.SrcMAC)
	case e.VSID > maxVSID:
		err = fmt.Errorf("fast path: egress to %v from interface %d: VSID %d is longer than 24 bits", e.Dst, e.Ifindex, e.VSID)
	case e.Local:
		v.Kind = 1
	case !e.SrcPA.IsValid() || !e.DstPA.IsValid() || e.SrcPA.Is4() != e.DstPA.Is4():
		err = fmt.Errorf("fast path: egress to %v from interface %d: PAs %v and %v must be valid and of one family", e.Dst, e.Ifindex, e.SrcPA, e.DstPA)
	case e.Rewrite && e.DstPA.Is4() != e.Dst.Is4():
		err = fmt.Errorf("fast path: rewrite egress to %v from interface %d: PA %v is of another family than the CA", e.Dst, e.Ifindex, e.DstPA)
	case !e.Rewrite && e.Encap != policy.EncapNVGRE && e.Encap != policy.EncapVXLAN:
		err = fmt.Errorf("fast path: egress to %v from interface %d: encapsulation %d is neither NVGRE nor VXLAN", e.Dst, e.Ifindex, e.Encap)
	case e.MaxLen <= 0:
		err = fmt.Errorf("fast path: egress to %v from interface %d: max length %d is not positive", e.Dst, e.Ifindex, e.MaxLen)
	default:
		v.Kind = 2
		if e.Rewrite {
			v.Kind, v.Encap = 3, 0
		}
		v.OuterFamily = family(e.DstPA)
		v.SrcPa, v.DstPa = addr16(e.SrcPA), addr16(e.DstPA)
		v.MaxLen = uint32(e.MaxLen)
	}
	return k, v, err
}

func unmarshalEgress(k datapathAddrKey, v datapathEgress) Egress {
	e := Egress{
		Ifindex: int(k.Ifindex), Dst: addrFrom(k.Family, k.Addr), Gen: v.Gen, Local: v.Kind == 1, Rewrite: v.Kind == 3,
		OutIfindex: int(v.OutIfindex), DstMAC: v.DstMac, Routed: v.Routed != 0, VSID: v.Vsid,
	}
	if e.Routed {
		e.SrcMAC = v.SrcMac
	}
	if !e.Local && !e.Rewrite {
		e.Encap = policy.Encapsulation(v.Encap)
	}
	if !e.Local {
		e.SrcPA, e.DstPA = addrFrom(v.OuterFamily, v.SrcPa), addrFrom(v.OuterFamily, v.DstPa)
		e.MaxLen = int(v.MaxLen)
	}
	return e
}

func ingressKey(k IngressKey) (datapathIngressKey, error) {
	switch {
	case k.VSID > maxVSID:
		return datapathIngressKey{}, fmt.Errorf("fast path: ingress key: VSID %d is longer than 24 bits", k.VSID)
	case !k.SrcPA.IsValid():
		return datapathIngressKey{}, fmt.Errorf("fast path: ingress key for VSID %d: source PA is not valid", k.VSID)
	case !k.SrcCA.IsValid() || !k.DstCA.IsValid() || k.SrcCA.Is4() != k.DstCA.Is4():
		return datapathIngressKey{}, fmt.Errorf("fast path: ingress key for VSID %d: CAs %v and %v must be valid and of one family", k.VSID, k.SrcCA, k.DstCA)
	}
	return datapathIngressKey{
		Vsid: k.VSID, Family: family(k.SrcCA), PaFamily: family(k.SrcPA), SrcMac: k.SrcMAC, DstMac: k.DstMAC,
		SrcPa: addr16(k.SrcPA), SrcCa: addr16(k.SrcCA), DstCa: addr16(k.DstCA),
	}, nil
}

// InstallEgress installs decisions, replacing those with the same keys.
// Nothing is installed if one of them is invalid.
func (d *Datapath) InstallEgress(es []Egress) error {
	keys := make([]datapathAddrKey, len(es))
	vals := make([]datapathEgress, len(es))
	for i := range es {
		var err error
		if keys[i], vals[i], err = es[i].marshal(); err != nil {
			return err
		}
	}
	return batchPut(d.objs.WnvEgress, keys, vals)
}

// InstallForwardedSources installs sources, replacing those with the same
// port and address. Nothing is installed if one of them is invalid.
func (d *Datapath) InstallForwardedSources(fs []ForwardedSource) error {
	keys := make([]datapathAddrKey, len(fs))
	gens := make([]uint64, len(fs))
	for i, f := range fs {
		if f.Ifindex <= 0 || !f.Src.IsValid() {
			return fmt.Errorf("fast path: forwarded source %v of interface %d needs a positive ifindex and a valid address", f.Src, f.Ifindex)
		}
		keys[i], gens[i] = datapathAddrKey{Ifindex: uint32(f.Ifindex), Family: family(f.Src), Addr: addr16(f.Src)}, f.Gen
	}
	return batchPut(d.objs.WnvFwdSrcs, keys, gens)
}

// ForwardedSources lists the installed forwarded sources, of every
// generation.
func (d *Datapath) ForwardedSources() ([]ForwardedSource, error) {
	var (
		k   datapathAddrKey
		gen uint64
		out []ForwardedSource
	)
	it := d.objs.WnvFwdSrcs.Iterate()
	for it.Next(&k, &gen) {
		out = append(out, ForwardedSource{Ifindex: int(k.Ifindex), Src: addrFrom(k.Family, k.Addr), Gen: gen})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fast path: list the forwarded sources: %w", err)
	}
	return out, nil
}

// InstallIngress installs decisions, replacing those with the same keys.
// Nothing is installed if one of them is invalid.
func (d *Datapath) InstallIngress(ins []Ingress) error {
	keys := make([]datapathIngressKey, len(ins))
	vals := make([]datapathIngress, len(ins))
	for i := range ins {
		k, err := ingressKey(ins[i].Key())
		if err != nil {
			return err
		}
		if ins[i].Ifindex <= 0 {
			return fmt.Errorf("fast path: ingress decision for VSID %d to %v: ifindex %d is not positive", ins[i].VSID, ins[i].DstCA, ins[i].Ifindex)
		}
		keys[i], vals[i] = k, datapathIngress{Gen: ins[i].Gen, Ifindex: uint32(ins[i].Ifindex)}
	}
	return batchPut(d.objs.WnvIngress, keys, vals)
}

// InstallRewriteIngress installs IP Rewrite deliveries, replacing those
// with the same PA pairs. Nothing is installed if one of them is invalid.
func (d *Datapath) InstallRewriteIngress(rs []RewriteIngress) error {
	keys := make([]datapathRewriteKey, len(rs))
	vals := make([]datapathRewriteIn, len(rs))
	for i, r := range rs {
		switch {
		case !r.SrcPA.IsValid() || !r.DstPA.IsValid() || r.SrcPA.Is4() != r.DstPA.Is4():
			return fmt.Errorf("fast path: rewrite ingress from %v to %v: PAs must be valid and of one family", r.SrcPA, r.DstPA)
		case !r.SrcCA.IsValid() || !r.DstCA.IsValid() || r.SrcCA.Is4() != r.SrcPA.Is4() || r.DstCA.Is4() != r.SrcPA.Is4():
			return fmt.Errorf("fast path: rewrite ingress from %v to %v: CAs %v and %v must be valid and of the PAs' family", r.SrcPA, r.DstPA, r.SrcCA, r.DstCA)
		case !unicastMAC(r.SrcMAC) || !unicastMAC(r.DstMAC):
			return fmt.Errorf("fast path: rewrite ingress from %v to %v: MACs %v and %v must be unicast", r.SrcPA, r.DstPA, r.SrcMAC, r.DstMAC)
		case r.Ifindex <= 0:
			return fmt.Errorf("fast path: rewrite ingress from %v to %v: ifindex %d is not positive", r.SrcPA, r.DstPA, r.Ifindex)
		}
		keys[i] = datapathRewriteKey{Family: family(r.SrcPA), SrcPa: addr16(r.SrcPA), DstPa: addr16(r.DstPA)}
		vals[i] = datapathRewriteIn{Gen: r.Gen, Ifindex: uint32(r.Ifindex), SrcMac: r.SrcMAC, DstMac: r.DstMAC, SrcCa: addr16(r.SrcCA), DstCa: addr16(r.DstCA)}
	}
	return batchPut(d.objs.WnvRewriteIn, keys, vals)
}

// RewriteIngresses lists the installed IP Rewrite deliveries, of every
// generation.
func (d *Datapath) RewriteIngresses() ([]RewriteIngress, error) {
	var (
		k   datapathRewriteKey
		v   datapathRewriteIn
		out []RewriteIngress
	)
	it := d.objs.WnvRewriteIn.Iterate()
	for it.Next(&k, &v) {
		out = append(out, RewriteIngress{SrcPA: addrFrom(k.Family, k.SrcPa), DstPA: addrFrom(k.Family, k.DstPa), SrcCA: addrFrom(k.Family, v.SrcCa),
			DstCA: addrFrom(k.Family, v.DstCa), SrcMAC: v.SrcMac, DstMAC: v.DstMac, Gen: v.Gen, Ifindex: int(v.Ifindex)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fast path: list the rewrite ingress decisions: %w", err)
	}
	return out, nil
}

// batchPut writes keys and values in one batch where the kernel has batch
// updates, else one by one.
func batchPut[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, vals, nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		err = nil
		for i := range keys {
			if err = m.Put(&keys[i], &vals[i]); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("fast path: install %d decisions in %s: %w", len(keys), m, err)
	}
	return nil
}

// Egresses lists the installed egress decisions, of every generation.
func (d *Datapath) Egresses() ([]Egress, error) {
	var (
		k   datapathAddrKey
		v   datapathEgress
		out []Egress
	)
	it := d.objs.WnvEgress.Iterate()
	for it.Next(&k, &v) {
		out = append(out, unmarshalEgress(k, v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fast path: list the egress decisions: %w", err)
	}
	return out, nil
}

// Ingresses lists the installed ingress decisions, of every generation.
func (d *Datapath) Ingresses() ([]Ingress, error) {
	var (
		k   datapathIngressKey
		v   datapathIngress
		out []Ingress
	)
	it := d.objs.WnvIngress.Iterate()
	for it.Next(&k, &v) {
		out = append(out, Ingress{
			VSID: k.Vsid, SrcPA: addrFrom(k.PaFamily, k.SrcPa), SrcCA: addrFrom(k.Family, k.SrcCa), SrcMAC: k.SrcMac,
			DstCA: addrFrom(k.Family, k.DstCa), DstMAC: k.DstMac, Gen: v.Gen, Ifindex: int(v.Ifindex),
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fast path: list the ingress decisions: %w", err)
	}
	return out, nil
}

// DeleteEgress removes decisions; missing ones are no error.
func (d *Datapath) DeleteEgress(keys ...EgressKey) error {
	for _, k := range keys {
		mk, err := egressKey(k)
		if err != nil {
			return err
		}
		if err := d.objs.WnvEgress.Delete(&mk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("fast path: delete the egress decision for %v from interface %d: %w", k.Dst, k.Ifindex, err)
		}
	}
	return nil
}

// DeleteIngress removes decisions; missing ones are no error.
func (d *Datapath) DeleteIngress(keys ...IngressKey) error {
	for _, k := range keys {
		mk, err := ingressKey(k)
		if err != nil {
			return err
		}
		if err := d.objs.WnvIngress.Delete(&mk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("fast path: delete the ingress decision for VSID %d to %v: %w", k.VSID, k.DstCA, err)
		}
	}
	return nil
}

// AttachPort makes ifindex a port and attaches the port program to it, or
// replaces the program an earlier wnvd attached. Changing an attached
// port's VSID, MAC or L2Only bumps the generation.
func (d *Datapath) AttachPort(ifindex int, p Port) error {
	if err := d.setPort(ifindex, p, peerElsewhere(ifindex)); err != nil {
		return err
	}
	return d.attach(d.objs.WnvPort, kindPort, ifindex)
}

// peerElsewhere says whether ifindex is a veth whose peer is in another
// network namespace: the programs deliver to it with bpf_redirect_peer,
// which drops a frame for a peer in the same namespace.
func peerElsewhere(ifindex int) bool {
	l, err := netlink.LinkByIndex(ifindex)
	return err == nil && l.Type() == "veth" && l.Attrs().NetNsID >= 0
}

// setPort writes the port's entries in the maps; peer sets PORT_PEER.
func (d *Datapath) setPort(ifindex int, p Port, peer bool) error {
	v := datapathPort{Index: uint32(p.Index), Vsid: p.VSID, Mac: p.MAC}
	if p.L2Only {
		v.Flags |= portL2Only
	}
	if peer {
		v.Flags |= portPeer
	}
	switch {
	case ifindex <= 0:
		return fmt.Errorf("fast path: port ifindex %d is not positive", ifindex)
	case p.Index < 0 || p.Index >= MaxPorts:
		return fmt.Errorf("fast path: port %d: index %d is not in [0, %d)", ifindex, p.Index, MaxPorts)
	case p.VSID > maxVSID:
		return fmt.Errorf("fast path: port %d: VSID %d is longer than 24 bits", ifindex, p.VSID)
	case !unicastMAC(p.MAC):
		return fmt.Errorf("fast path: port %d: MAC %v is not unicast", ifindex, p.MAC)
	}
	cas := make(map[datapathAddrKey]bool, len(p.CAs))
	for _, ca := range p.CAs {
		if !ca.IsValid() {
			return fmt.Errorf("fast path: port %d: a CA is not a valid address", ifindex)
		}
		cas[datapathAddrKey{Ifindex: uint32(ifindex), Family: family(ca), Addr: addr16(ca)}] = true
	}

	d.mu.Lock()
	var old datapathPort
	changed := d.objs.WnvPorts.Lookup(uint32(ifindex), &old) == nil && old != v
	err := d.objs.WnvPorts.Put(uint32(ifindex), &v)
	if err == nil {
		err = d.syncCAs(uint32(ifindex), cas)
	}
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fast path: port %d: %w", ifindex, err)
	}
	if changed {
		if _, err := d.BumpGeneration(); err != nil {
			return err
		}
	}
	return nil
}

// syncCAs makes want the CAs of port ifindex.
func (d *Datapath) syncCAs(ifindex uint32, want map[datapathAddrKey]bool) error {
	var (
		k     datapathAddrKey
		v     uint8
		stale []datapathAddrKey
	)
	it := d.objs.WnvPortCas.Iterate()
	for it.Next(&k, &v) {
		if k.Ifindex == ifindex && !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for i := range stale {
		if err := d.objs.WnvPortCas.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	one := uint8(1)
	for k := range want {
		if err := d.objs.WnvPortCas.Put(&k, &one); err != nil {
			return err
		}
	}
	return nil
}

// DetachPort detaches the port program from ifindex, forgets the port and
// bumps the generation, so no decision delivers to it or from it.
func (d *Datapath) DetachPort(ifindex int) error {
	err := unpinLink(d.linkPath(kindPort, ifindex))
	d.mu.Lock()
	if e := d.objs.WnvPorts.Delete(uint32(ifindex)); e != nil && !errors.Is(e, ebpf.ErrKeyNotExist) {
		err = errors.Join(err, e)
	}
	err = errors.Join(err, d.syncCAs(uint32(ifindex), nil))
	d.mu.Unlock()
	_, e := d.BumpGeneration()
	if err = errors.Join(err, e); err != nil {
		return fmt.Errorf("fast path: detach port %d: %w", ifindex, err)
	}
	return nil
}

// Ports lists the ports by ifindex, as installed (by an earlier wnvd, too).
func (d *Datapath) Ports() (map[int]Port, error) {
	ports := map[int]Port{}
	var (
		ifindex uint32
		v       datapathPort
	)
	it := d.objs.WnvPorts.Iterate()
	for it.Next(&ifindex, &v) {
		ports[int(ifindex)] = Port{Index: int(v.Index), VSID: v.Vsid, MAC: v.Mac, L2Only: v.Flags&portL2Only != 0}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fast path: list the ports: %w", err)
	}
	var (
		k datapathAddrKey
		b uint8
	)
	ci := d.objs.WnvPortCas.Iterate()
	for ci.Next(&k, &b) {
		if p, ok := ports[int(k.Ifindex)]; ok {
			p.CAs = append(p.CAs, addrFrom(k.Family, k.Addr))
			ports[int(k.Ifindex)] = p
		}
	}
	if err := ci.Err(); err != nil {
		return nil, fmt.Errorf("fast path: list the ports' CAs: %w", err)
	}
	for i, p := range ports {
		slices.SortFunc(p.CAs, netip.Addr.Compare)
		ports[i] = p
	}
	return ports, nil
}

// SetLocalPAs makes pas the provider addresses the underlay program
// decapsulates for.
func (d *Datapath) SetLocalPAs(pas []netip.Addr) error {
	return d.setPAs(d.objs.WnvLocalPas, "local PA", pas)
}

// SetRewritePAs makes pas the rewrite PAs (policy.Table.RewritePAs): the
// underlay program hands every packet to them to the slow path, but for
// tunnel packets, and the host's stack never sees one.
func (d *Datapath) SetRewritePAs(pas []netip.Addr) error {
	return d.setPAs(d.objs.WnvRewritePas, "rewrite PA", pas)
}

// SetVMMACs makes macs the rewrite PAs whose frames leave with a VM's MAC
// as source (UseVmMACAddress, policy.Table.VMMACPAs), fast path on or off.
func (d *Datapath) SetVMMACs(macs map[netip.Addr]packet.MAC) error {
	want := map[datapathPaKey]datapathVmMac{}
	for a, m := range macs {
		if !a.IsValid() || !unicastMAC(m) {
			return fmt.Errorf("fast path: VM MAC %v of PA %v: the PA must be valid and the MAC unicast", m, a)
		}
		a = a.Unmap()
		want[datapathPaKey{Family: family(a), Addr: addr16(a)}] = datapathVmMac{Mac: m}
	}
	if len(want) > 64 {
		return fmt.Errorf("fast path: %d PAs with a VM's MAC are more than 64", len(want))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		k     datapathPaKey
		v     datapathVmMac
		stale []datapathPaKey
	)
	it := d.objs.WnvVmMacs.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("fast path: list the VM MACs: %w", err)
	}
	for i := range stale {
		if err := d.objs.WnvVmMacs.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("fast path: remove a VM MAC: %w", err)
		}
	}
	for k, v := range want {
		if err := d.objs.WnvVmMacs.Put(&k, &v); err != nil {
			return fmt.Errorf("fast path: add the VM MAC of %v: %w", addrFrom(k.Family, k.Addr), err)
		}
	}
	return nil
}

// setPAs makes pas the keys of m, a set of PAs.
func (d *Datapath) setPAs(m *ebpf.Map, what string, pas []netip.Addr) error {
	want := map[datapathPaKey]bool{}
	for _, a := range pas {
		if !a.IsValid() {
			return fmt.Errorf("fast path: a %s is not a valid address", what)
		}
		want[datapathPaKey{Family: family(a), Addr: addr16(a)}] = true
	}
	if len(want) > 64 {
		return fmt.Errorf("fast path: %d %ss are more than 64", len(want), what)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		k     datapathPaKey
		v     uint8
		stale []datapathPaKey
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("fast path: list the %ss: %w", what, err)
	}
	for i := range stale {
		if err := m.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("fast path: remove a %s: %w", what, err)
		}
	}
	one := uint8(1)
	for k := range want {
		if err := m.Put(&k, &one); err != nil {
			return fmt.Errorf("fast path: add %s %v: %w", what, addrFrom(k.Family, k.Addr), err)
		}
	}
	return nil
}
