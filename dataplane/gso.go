package dataplane

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	tclink "github.com/cilium/ebpf/link"

	"github.com/wnv/wnv/offload"
	"github.com/wnv/wnv/packet"
)

// TunnelGSO sends an encapsulated TCP super-frame as one GSO packet. A raw
// GRE socket has no GSO, so each of a 64 KiB super-frame's ~45 segments
// would cross the kernel's IP output alone; a VXLAN socket has UDP GSO, but
// only for datagrams wnvd has already cut and checksummed. The kernel can
// segment a tunnel packet itself (SKB_GSO_GRE, SKB_GSO_UDP_TUNNEL), but only
// one that carries the tunnel's GSO state, which no socket can set.
//
// So the super-frame, outer headers included, is written to a TAP of its own
// with a virtio-net TSO header, and a TC program at the TAP's ingress gives
// it the tunnel GSO state (bpf_skb_adjust_room with the encapsulation flags,
// whose room is the outer headers wnvd already wrote) and redirects it to
// the underlay interface through the kernel's neighbour table
// (bpf_redirect_neigh). The underlay's driver, or the kernel's software GSO
// in front of it, cuts it into wire packets with their checksums; a veth
// hands the whole packet to the next namespace, as it does for the kernel's
// own tunnels, where a raw GRE or UDP socket reads it whole.
type TunnelGSO struct {
	tap      *TAP
	prog     *ebpf.Program
	link     tclink.Link
	counters *ebpf.Map
	mac      packet.MAC // the TAP's; the redirect refuses multicast destinations
}

// Frames the TC program counts, by index in its counters map.
const (
	gsoRedirected = iota
	gsoDropped
	gsoCounters
)

// OpenTunnelGSO creates the TAP name (in the caller's namespace) with its TC
// program, which redirects what is written to it to the underlay interface.
func OpenTunnelGSO(name, underlay string) (*TunnelGSO, error) {
	idx, err := LinkIndex(underlay)
	if err != nil {
		return nil, fmt.Errorf("tunnel GSO: underlay %w", err)
	}
	counters, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: gsoCounters})
	if err != nil {
		return nil, fmt.Errorf("tunnel GSO: create the counters map: %w", err)
	}
	g := &TunnelGSO{counters: counters}
	g.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "wnv_tunnel_gso",
		Type:         ebpf.SchedCLS,
		License:      "GPL", // bpf_redirect_neigh is GPL-only
		Instructions: gsoProgram(idx, counters.FD()),
	})
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("tunnel GSO: load the TC program: %w", err)
	}
	// The TAP carries nothing the kernel should answer or route: no IPv6
	// link-local address or router solicitations on it.
	if g.tap, err = OpenTAP(name, true); err != nil {
		g.Close()
		return nil, fmt.Errorf("tunnel GSO: %w", err)
	}
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
	tapIdx, err := LinkIndex(name)
	if err == nil {
		g.mac, err = LinkMAC(name)
	}
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("tunnel GSO: %w", err)
	}
	if g.link, err = tclink.AttachTCX(tclink.TCXOptions{Interface: tapIdx, Program: g.prog, Attach: ebpf.AttachTCXIngress}); err != nil {
		g.Close()
		return nil, fmt.Errorf("tunnel GSO: attach the TC program to %s: %w", name, err)
	}
	return g, nil
}

// Flags of bpf_skb_adjust_room (include/uapi/linux/bpf.h).
const (
	adjRoomMAC        = 1
	adjRoomFixedGSO   = 1 << 0
	adjRoomEncapIPv4  = 1 << 1
	adjRoomEncapIPv6  = 1 << 2
	adjRoomEncapGRE   = 1 << 3
	adjRoomEncapUDP   = 1 << 4
	adjRoomEncapL2Eth = 1 << 6
	adjRoomL2Shift    = 56
	tcActShot         = 2
)

// gsoProgram is the TC program: it takes the outer IP header, the GRE or
// UDP and VXLAN header and the inner Ethernet header off the frame and puts
// them back as encapsulation room (which is what sets the tunnel GSO state),
// then redirects the packet to the underlay's egress, resolving the next
// hop's MAC. The segment size wnvd set is kept (FIXED_GSO): it already
// accounts for the encapsulation.
func gsoProgram(underlay, counters int) asm.Instructions {
	const (
		eth    = packet.EthernetHeaderLen
		tunnel = packet.EthernetHeaderLen // inner Ethernet, plus the GRE or UDP+VXLAN header
		maxHdr = 40 + packet.UDPHeaderLen + packet.VXLANHeaderLen + packet.EthernetHeaderLen
		stack  = -72 // room for maxHdr
		key    = stack - 4
		encap  = adjRoomFixedGSO | adjRoomEncapL2Eth | packet.EthernetHeaderLen<<adjRoomL2Shift
		ctx    = asm.R6
		hdrLen = asm.R8
		flags  = asm.R9
	)
	count := func(index int32, label string) asm.Instructions {
		return asm.Instructions{
			asm.StoreImm(asm.RFP, key, int64(index), asm.Word).WithSymbol(label),
			asm.LoadMapPtr(asm.R1, counters),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, key),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, label+"_done"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		}
	}
	insns := asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Imm(asm.R2, eth),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stack),
		asm.Mov.Imm(asm.R4, maxHdr),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
		// The IP version gives the outer header's length and where its
		// protocol is.
		asm.LoadMem(asm.R7, asm.RFP, stack, asm.Byte),
		asm.RSh.Imm(asm.R7, 4),
		asm.Mov.Imm(hdrLen, 20),
		asm.LoadImm(flags, encap|adjRoomEncapIPv4, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, stack+9, asm.Byte),
		asm.JEq.Imm(asm.R7, 4, "proto"),
		asm.Mov.Imm(hdrLen, 40),
		asm.LoadImm(flags, encap|adjRoomEncapIPv6, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, stack+6, asm.Byte),
		asm.JNE.Imm(asm.R7, 6, "drop"),
		asm.Add.Imm(hdrLen, tunnel+packet.NVGREHeaderLen).WithSymbol("proto"),
		asm.Or.Imm(flags, adjRoomEncapGRE),
		asm.JEq.Imm(asm.R1, packet.ProtoGRE, "adjust"),
		asm.Add.Imm(hdrLen, packet.UDPHeaderLen+packet.VXLANHeaderLen-packet.NVGREHeaderLen),
		asm.Xor.Imm(flags, adjRoomEncapGRE|adjRoomEncapUDP),
		asm.JNE.Imm(asm.R1, packet.ProtoUDP, "drop"),

		asm.Mov.Reg(asm.R1, ctx).WithSymbol("adjust"),
		asm.Mov.Imm(asm.R2, 0),
		asm.Sub.Reg(asm.R2, hdrLen),
		asm.Mov.Imm(asm.R3, adjRoomMAC),
		asm.Mov.Imm(asm.R4, adjRoomFixedGSO),
		asm.FnSkbAdjustRoom.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Reg(asm.R2, hdrLen),
		asm.Mov.Imm(asm.R3, adjRoomMAC),
		asm.Mov.Reg(asm.R4, flags),
		asm.FnSkbAdjustRoom.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Imm(asm.R2, eth),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stack),
		asm.Mov.Reg(asm.R4, hdrLen),
		asm.Mov.Imm(asm.R5, 0),
		asm.FnSkbStoreBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
	}
	insns = append(insns, count(gsoRedirected, "redirect")...)
	insns = append(insns,
		asm.Mov.Imm(asm.R1, int32(underlay)).WithSymbol("redirect_done"),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),
	)
	insns = append(insns, count(gsoDropped, "drop")...)
	return append(insns,
		asm.Mov.Imm(asm.R0, tcActShot).WithSymbol("drop_done"),
		asm.Return(),
	)
}

// GSOPacket is one encapsulated super-frame for Send.
type GSOPacket struct {
	Src, Dst netip.Addr // outer addresses: a local PA and the destination's
	// VXLANPort is the UDP source port of a VXLAN packet; 0 for NVGRE.
	VXLANPort uint16
	// Hdr is the VM's TSO header, its offsets relative to the inner frame.
	Hdr offload.VirtioNetHdr
	// Data is the GRE or VXLAN header and the inner frame.
	Data []byte
}

// gsoBatch carries one Send through the TAP.
type gsoBatch struct {
	frames [1]OffloadFrame
	tails  [1][]byte
	hdr    [packet.EthernetHeaderLen + packet.IPv6HeaderLen + packet.UDPHeaderLen]byte
}

var gsoBatches = sync.Pool{New: func() any { return new(gsoBatch) }}

var (
	// errGSOTooLong: an IPv4 or IPv6 length field cannot describe the packet.
	errGSOTooLong = errors.New("tunnel GSO: the packet is longer than 65535 bytes")
	// errGSOVXLAN6: the kernel's UDP tunnel GSO leaves the outer checksum
	// zero, which IPv6 receivers drop.
	errGSOVXLAN6 = errors.New("tunnel GSO: VXLAN over IPv6 needs outer UDP checksums")
	// errGSORefused: the kernel refused the TAP write.
	errGSORefused = errors.New("tunnel GSO: the TAP refused the packet")
)

// Send writes p as one GSO packet. It returns an error, and sends nothing,
// for a packet it cannot describe (too long for one IP header, or VXLAN
// over IPv6) or the TAP refused (counted in Stats().Refused, e.g. while
// someone has set it down): segment that one instead.
func (g *TunnelGSO) Send(p GSOPacket) error {
	b := gsoBatches.Get().(*gsoBatch)
	defer func() {
		b.tails[0], b.frames[0] = nil, OffloadFrame{}
		gsoBatches.Put(b)
	}()
	n, hdr, err := gsoHeaders(b.hdr[:], g.mac, p)
	if err != nil {
		return err
	}
	b.tails[0] = p.Data
	b.frames[0] = OffloadFrame{Hdr: hdr, Head: b.hdr[:n], Tail: b.tails[:]}
	if n, err := g.tap.WriteOffload(b.frames[:]); err != nil || n == 0 {
		return cmp.Or(err, errGSORefused)
	}
	return nil
}

// gsoHeaders writes into b the Ethernet header (to mac, which only has to
// be unicast), the outer IP header and, for VXLAN, the UDP header in front
// of p.Data, and returns their length and the virtio-net header of the
// whole packet: p.Hdr with its offsets moved behind the outer headers.
func gsoHeaders(b []byte, mac packet.MAC, p GSOPacket) (int, offload.VirtioNetHdr, error) {
	et, ipLen, proto, l4 := uint16(packet.EtherTypeIPv4), packet.IPv4HeaderLen, uint8(packet.ProtoGRE), 0
	if p.Dst.Is6() {
		et, ipLen = packet.EtherTypeIPv6, packet.IPv6HeaderLen
	}
	if p.VXLANPort != 0 {
		if p.Dst.Is6() {
			return 0, offload.VirtioNetHdr{}, errGSOVXLAN6
		}
		proto, l4 = packet.ProtoUDP, packet.UDPHeaderLen
	}
	if ipLen+l4+len(p.Data) > 0xffff {
		return 0, offload.VirtioNetHdr{}, errGSOTooLong
	}
	n := packet.PutEthernet(b, mac, mac, et)
	if p.Dst.Is6() {
		n += packet.PutIPv6(b[n:], p.Src, p.Dst, proto, 64, l4+len(p.Data))
	} else {
		// DF: the VM's MTU leaves room for the headers.
		n += packet.PutIPv4(b[n:], p.Src, p.Dst, proto, 64, l4+len(p.Data), 0, true)
	}
	if l4 != 0 {
		n += packet.PutUDP(b[n:], p.VXLANPort, packet.VXLANPort, len(p.Data))
	}
	h := p.Hdr
	// The tunnel header (GRE's and VXLAN's are both 8 bytes) sits in Data.
	off := uint16(n + packet.NVGREHeaderLen)
	h.HdrLen += off
	h.CsumStart += off
	return n, h, nil
}

// GSOStats counts what the TC program did.
type GSOStats struct {
	Redirected uint64 // packets handed to the underlay
	Dropped    uint64 // packets it could not re-encapsulate or redirect
	Refused    uint64 // writes the TAP refused
}

// Stats sums the TC program's per-CPU counters.
func (g *TunnelGSO) Stats() GSOStats {
	s := GSOStats{Refused: g.tap.Stats().Dropped}
	for k, dst := range []*uint64{gsoRedirected: &s.Redirected, gsoDropped: &s.Dropped} {
		var per []uint64
		if g.counters.Lookup(uint32(k), &per) == nil {
			for _, v := range per {
				*dst += v
			}
		}
	}
	return s
}

// Close detaches the program and deletes the TAP.
func (g *TunnelGSO) Close() error {
	var errs []error
	if g.link != nil {
		errs = append(errs, g.link.Close())
	}
	if g.tap != nil {
		errs = append(errs, g.tap.Close())
	}
	if g.prog != nil {
		errs = append(errs, g.prog.Close())
	}
	errs = append(errs, g.counters.Close())
	return errors.Join(errs...)
}
