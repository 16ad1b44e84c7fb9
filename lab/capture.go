package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/wnv/wnv/packet"
	"golang.org/x/sys/unix"
)

// Frame is one NVGRE frame seen on the underlay, decoded with the packet
// package, or (Plain) an IP packet that is no tunnel's: IP Rewrite's
// traffic between two VMs' PAs, or the hosts' own (with the policy server).
// A plain frame has only the outer addresses, InnerProto and the ports.
type Frame struct {
	Plain              bool
	OuterSrc, OuterDst netip.Addr // PAs
	Protocol           uint16     // GRE protocol type; 0x6558 for NVGRE
	Key                uint32     // VSID<<8 | FlowID
	VSID               uint32
	FlowID             uint8
	InnerSrcMAC        packet.MAC
	InnerDstMAC        packet.MAC
	InnerType          uint16     // EtherType of the inner frame
	InnerSrc, InnerDst netip.Addr // CAs; invalid when the inner frame is not IP
	InnerProto         uint8      // IP protocol of the inner packet
	InnerSrcPort       uint16     // TCP/UDP ports of the inner packet, else 0
	InnerDstPort       uint16
	Len                int // bytes on the wire, outer Ethernet included
}

func (f Frame) String() string {
	inner := fmt.Sprintf("%s > %s type %#04x", f.InnerSrcMAC, f.InnerDstMAC, f.InnerType)
	if f.InnerSrc.IsValid() {
		inner = fmt.Sprintf("%v > %v", f.InnerSrc, f.InnerDst)
	}
	return fmt.Sprintf("PA %v > %v GRE %#04x key %#08x (VSID %d FlowID %d) CA %s",
		f.OuterSrc, f.OuterDst, f.Protocol, f.Key, f.VSID, f.FlowID, inner)
}

// DecodeUnderlay decodes an underlay Ethernet frame. ok is false for frames
// that are not GRE (ARP, ND between hosts, ...); err is set for GRE that is
// not well-formed NVGRE.
func DecodeUnderlay(b []byte) (f Frame, ok bool, err error) {
	eth, err := packet.ParseEthernet(b)
	if err != nil {
		return f, false, nil
	}
	var gre []byte
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil || ip.Protocol() != packet.ProtoGRE {
			return f, false, nil
		}
		f.OuterSrc, f.OuterDst, gre = ip.Src(), ip.Dst(), ip.Payload()
	case packet.EtherTypeIPv6:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil || ip.NextHeader() != packet.ProtoGRE {
			return f, false, nil
		}
		f.OuterSrc, f.OuterDst, gre = ip.Src(), ip.Dst(), ip.Payload()
	default:
		return f, false, nil
	}
	f.Len = len(b)
	if len(gre) >= 4 {
		f.Protocol = binary.BigEndian.Uint16(gre[2:4])
	}
	g, err := packet.ParseNVGRE(gre)
	if err != nil {
		return f, true, fmt.Errorf("GRE from %v to %v is not NVGRE: %w", f.OuterSrc, f.OuterDst, err)
	}
	f.Key, f.VSID, f.FlowID = g.Key(), g.VSID(), g.FlowID()
	in, err := packet.ParseEthernet(g.Payload())
	if err != nil {
		return f, true, fmt.Errorf("NVGRE from %v to %v carries no Ethernet frame: %w", f.OuterSrc, f.OuterDst, err)
	}
	f.InnerSrcMAC, f.InnerDstMAC, f.InnerType = in.Src(), in.Dst(), in.Type()
	switch f.InnerType {
	case packet.EtherTypeIPv4:
		if ip, err := packet.ParseIPv4(in.Payload()); err == nil {
			f.InnerSrc, f.InnerDst, f.InnerProto = ip.Src(), ip.Dst(), ip.Protocol()
			f.InnerSrcPort, f.InnerDstPort = packet.FlowPorts(ip.Protocol(), ip.Payload())
		}
	case packet.EtherTypeIPv6:
		if ip, err := packet.ParseIPv6(in.Payload()); err == nil {
			f.InnerSrc, f.InnerDst, f.InnerProto = ip.Src(), ip.Dst(), ip.NextHeader()
			f.InnerSrcPort, f.InnerDstPort = packet.FlowPorts(ip.NextHeader(), ip.Payload())
		}
	}
	return f, true, nil
}

// Capture records the GRE frames crossing a bridge through an AF_PACKET
// socket in promiscuous mode (without it, a bridge device sees only frames
// addressed to itself, not those it forwards between ports).
type Capture struct {
	fd   int
	done chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	frames    []Frame
	plain     []Frame
	malformed []error
}

// maxFrames bounds what a capture keeps; a demo's bulk transfers exceed it.
const maxFrames = 50000

// captureBuffer is the capture socket's receive buffer.
const captureBuffer = 32 << 20

// StartCapture opens the capture on ifname inside namespace ns.
func StartCapture(ns, ifname string) (*Capture, error) {
	c := &Capture{fd: -1, done: make(chan struct{})}
	err := InNamespace(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		c.fd = fd
		idx, err := ifIndex(ifname)
		if err != nil {
			return err
		}
		if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
			return fmt.Errorf("bind packet socket to %s: %w", ifname, err)
		}
		mr := unix.PacketMreq{Ifindex: int32(idx), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(c.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
			return fmt.Errorf("promiscuous mode on %s: %w", ifname, err)
		}
		// Super-frames cross a veth whole, up to 64 KiB each: the default
		// buffer holds only a few, and a burst of them would be lost to
		// the capture (not to the traffic).
		if unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, captureBuffer) != nil {
			_ = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, captureBuffer)
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("capture on %s in %s: %w", ifname, ns, err)
	}
	c.wg.Add(1)
	go c.run()
	return c, nil
}

func ifIndex(name string) (int, error) {
	ifs, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(ifs)
	req, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(ifs, unix.SIOCGIFINDEX, req); err != nil {
		return 0, fmt.Errorf("interface %s: %w", name, err)
	}
	return int(req.Uint32()), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) run() {
	defer c.wg.Done()
	// A GSO super-frame crosses a veth whole: an IP packet of up to 64 KiB.
	buf := make([]byte, 65535+packet.EthernetHeaderLen)
	stopping := false
	for {
		flags := 0
		if !stopping {
			select {
			case <-c.done:
				// Frames already queued were on the wire before Stop: read
				// them too, without waiting for more.
				stopping = true
			default:
			}
		}
		if stopping {
			flags = unix.MSG_DONTWAIT
		}
		n, _, err := unix.Recvfrom(c.fd, buf, flags)
		if err != nil {
			if stopping {
				return
			}
			continue // timeout: check for Stop
		}
		f, ok, err := DecodeUnderlay(buf[:n])
		if !ok {
			if p, ok := decodePlain(buf[:n]); ok {
				c.mu.Lock()
				if len(c.plain) < maxFrames {
					c.plain = append(c.plain, p)
				}
				c.mu.Unlock()
			}
			continue
		}
		c.mu.Lock()
		if err != nil {
			c.malformed = append(c.malformed, err)
		} else if len(c.frames) < maxFrames {
			c.frames = append(c.frames, f)
		}
		c.mu.Unlock()
	}
}

// Stop ends the capture and returns the NVGRE frames seen and the errors of
// GRE frames that were not well-formed NVGRE.
func (c *Capture) Stop() ([]Frame, []error) {
	close(c.done)
	c.wg.Wait()
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames, c.malformed
}

// Plain returns the plain IP frames the capture saw (Frame.Plain); call it
// after Stop.
func (c *Capture) Plain() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.plain
}

// decodePlain decodes an IP packet on the underlay that is neither GRE nor
// VXLAN (UDP to port 4789): what IP Rewrite sends.
func decodePlain(b []byte) (f Frame, ok bool) {
	eth, err := packet.ParseEthernet(b)
	if err != nil {
		return f, false
	}
	var payload []byte
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			return f, false
		}
		f.OuterSrc, f.OuterDst, f.InnerProto, payload = ip.Src(), ip.Dst(), ip.Protocol(), ip.Payload()
	case packet.EtherTypeIPv6:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil {
			return f, false
		}
		f.OuterSrc, f.OuterDst, f.InnerProto, payload = ip.Src(), ip.Dst(), ip.NextHeader(), ip.Payload()
	default:
		return f, false
	}
	f.InnerSrcPort, f.InnerDstPort = packet.FlowPorts(f.InnerProto, payload)
	if f.InnerProto == packet.ProtoGRE || f.InnerProto == packet.ProtoUDP && f.InnerDstPort == 4789 {
		return f, false
	}
	f.Plain, f.Len = true, len(b)
	return f, true
}
