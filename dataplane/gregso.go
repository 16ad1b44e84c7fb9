package dataplane

import (
	"encoding/binary"
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

// GREGSO sends an NVGRE-encapsulated TCP super-frame as one GSO packet
// instead of a sendmmsg of wire-sized segments. A raw GRE socket has no GSO,
// so each of a 64 KiB super-frame's ~45 segments would cross the kernel's IP
// output alone; the kernel can segment GRE itself (SKB_GSO_GRE), but only a
// packet that carries the tunnel's GSO state, which no socket can set.
//
// So the super-frame, outer IP and GRE headers included, is written to a TAP
// of its own with a virtio-net TSO header, and a TC program at the TAP's
// ingress gives it the tunnel GSO state (bpf_skb_adjust_room with the
// GRE-encapsulation flags, whose room is the outer headers wnvd already
// wrote) and redirects it to the underlay interface through the kernel's
// neighbour table (bpf_redirect_neigh). The underlay's driver, or the
// kernel's software GSO in front of it, cuts it into wire packets with their
// checksums; a veth hands the whole packet to the next namespace, as it does
// for the kernel's own tunnels.
type GREGSO struct {
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

// OpenGREGSO creates the TAP name (in the caller's namespace) with its TC
// program, which redirects what is written to it to the underlay interface.
func OpenGREGSO(name, underlay string) (*GREGSO, error) {
	idx, err := LinkIndex(underlay)
	if err != nil {
		return nil, fmt.Errorf("GRE GSO: underlay %w", err)
	}
	counters, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: gsoCounters})
	if err != nil {
		return nil, fmt.Errorf("GRE GSO: create the counters map: %w", err)
	}
	g := &GREGSO{counters: counters}
	g.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "wnv_gre_gso",
		Type:         ebpf.SchedCLS,
		License:      "GPL", // bpf_redirect_neigh is GPL-only
		Instructions: greGSOProgram(idx, counters.FD()),
	})
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("GRE GSO: load the TC program: %w", err)
	}
	// The TAP carries nothing the kernel should answer or route: no IPv6
	// link-local address or router solicitations on it.
	if g.tap, err = OpenTAP(TAPConfig{Name: name, Offload: true}); err != nil {
		g.Close()
		return nil, fmt.Errorf("GRE GSO: %w", err)
	}
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
	tapIdx, err := LinkIndex(name)
	if err == nil {
		g.mac, err = LinkMAC(name)
	}
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("GRE GSO: %w", err)
	}
	if g.link, err = tclink.AttachTCX(tclink.TCXOptions{Interface: tapIdx, Program: g.prog, Attach: ebpf.AttachTCXIngress}); err != nil {
		g.Close()
		return nil, fmt.Errorf("GRE GSO: attach the TC program to %s: %w", name, err)
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
	adjRoomEncapL2Eth = 1 << 6
	adjRoomL2Shift    = 56
	tcActShot         = 2
)

// greGSOProgram is the TC program: it takes the outer IP and GRE headers and
// the inner Ethernet header off the frame and puts them back as
// encapsulation room (which is what sets the tunnel GSO state), then
// redirects the packet to the underlay's egress, resolving the next hop's
// MAC. The segment size wnvd set is kept (FIXED_GSO): it already accounts
// for the encapsulation.
func greGSOProgram(underlay, counters int) asm.Instructions {
	const (
		stack  = -64 // room for the largest header block, IPv6's 62 bytes
		hdrs4  = 20 + packet.NVGREHeaderLen + packet.EthernetHeaderLen
		hdrs6  = 40 + packet.NVGREHeaderLen + packet.EthernetHeaderLen
		encap  = adjRoomFixedGSO | adjRoomEncapGRE | adjRoomEncapL2Eth | packet.EthernetHeaderLen<<adjRoomL2Shift
		eth    = packet.EthernetHeaderLen
		ctx    = asm.R6
		hdrLen = asm.R8
		flags  = asm.R9
	)
	count := func(key int32, label string) asm.Instructions {
		return asm.Instructions{
			asm.StoreImm(asm.RFP, -68, int64(key), asm.Word).WithSymbol(label),
			asm.LoadMapPtr(asm.R1, counters),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -68),
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
		asm.Mov.Imm(asm.R4, hdrs6),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R7, asm.RFP, stack, asm.Byte),
		asm.RSh.Imm(asm.R7, 4),
		asm.Mov.Imm(hdrLen, hdrs4),
		asm.LoadImm(flags, encap|adjRoomEncapIPv4, asm.DWord),
		asm.JEq.Imm(asm.R7, 4, "adjust"),
		asm.Mov.Imm(hdrLen, hdrs6),
		asm.LoadImm(flags, encap|adjRoomEncapIPv6, asm.DWord),
		asm.JNE.Imm(asm.R7, 6, "drop"),

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

// GSOPacket is one NVGRE super-frame for Send.
type GSOPacket struct {
	Src, Dst netip.Addr // outer addresses: a local PA and the destination's
	// Hdr is the VM's TSO header, its offsets relative to the inner frame.
	Hdr offload.VirtioNetHdr
	// Data is the GRE header and the inner frame.
	Data []byte
}

// gsoBatch carries one Send through the TAP.
type gsoBatch struct {
	frames [1]OffloadFrame
	tails  [1][]byte
	hdr    [packet.EthernetHeaderLen + 40]byte
}

var gsoBatches = sync.Pool{New: func() any { return new(gsoBatch) }}

// errGSOTooLong: an IPv4 or IPv6 length field cannot describe the packet.
var errGSOTooLong = errors.New("GRE GSO: the packet is longer than 65535 bytes")

// Send writes p as one GSO packet. It returns an error, and sends nothing,
// for a packet too long for one IP header (segment it instead); packets
// the kernel refuses are counted in Stats().Dropped.
func (g *GREGSO) Send(p GSOPacket) error {
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
	_, err = g.tap.WriteOffload(b.frames[:])
	return err
}

// gsoHeaders writes into b the Ethernet header (to mac, which only has to
// be unicast) and the outer IP header in front of p.Data, and returns their
// length and the virtio-net header of the whole packet: p.Hdr with its
// offsets moved behind the outer headers.
func gsoHeaders(b []byte, mac packet.MAC, p GSOPacket) (int, offload.VirtioNetHdr, error) {
	ipLen := 20
	if p.Dst.Is6() {
		ipLen = 40
	}
	n := packet.EthernetHeaderLen + ipLen
	if ipLen+len(p.Data) > 0xffff {
		return 0, offload.VirtioNetHdr{}, errGSOTooLong
	}
	copy(b[0:6], mac[:])
	copy(b[6:12], mac[:])
	ip := b[packet.EthernetHeaderLen:n]
	if p.Dst.Is6() {
		binary.BigEndian.PutUint16(b[12:14], packet.EtherTypeIPv6)
		clear(ip)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(p.Data)))
		ip[6], ip[7] = packet.ProtoGRE, 64
		src, dst := p.Src.As16(), p.Dst.As16()
		copy(ip[8:24], src[:])
		copy(ip[24:40], dst[:])
	} else {
		binary.BigEndian.PutUint16(b[12:14], packet.EtherTypeIPv4)
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:4], uint16(ipLen+len(p.Data)))
		binary.BigEndian.PutUint32(ip[4:8], 0x4000) // ID 0, DF: the VM's MTU leaves room for the headers
		ip[8], ip[9] = 64, packet.ProtoGRE
		ip[10], ip[11] = 0, 0
		src, dst := p.Src.As4(), p.Dst.As4()
		copy(ip[12:16], src[:])
		copy(ip[16:20], dst[:])
		binary.BigEndian.PutUint16(ip[10:12], packet.Checksum(ip, 0))
	}
	h := p.Hdr
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
func (g *GREGSO) Stats() GSOStats {
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
func (g *GREGSO) Close() error {
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
