package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// IPv4 probe timing, shortened from RFC 5227 (random PROBE_WAIT up to 1 s,
// then 3 probes 1-2 s apart and a 2 s ANNOUNCE_WAIT) to about 1 s in total so
// hosts and labs come up quickly.
const (
	arpProbes        = 3
	arpProbeInterval = 250 * time.Millisecond
	arpProbeTotal    = time.Second
)

// DetectDuplicate reports the DAD state of provider address p on the
// interface as it changes: AddressTentative first, then one final state,
// after which it returns nil. It returns ctx's error if ctx ends first.
//
// IPv6 follows the kernel's own DAD through netlink address updates: start it
// before or after AddAddress; the final state is AddressPreferred (or
// AddressDeprecated), AddressDuplicate (IFA_F_DADFAILED), or AddressInvalid if
// the address is removed meanwhile.
//
// IPv4 has no kernel DAD, so it sends RFC 5227 ARP probes (sender IP 0.0.0.0)
// over about a second and reports AddressDuplicate if another MAC answers,
// claims the address, or probes for it too, else AddressPreferred. Run it
// before AddAddress, on an interface that is up. The PA is on VLAN vlan (0:
// untagged): only ARP of that VLAN counts. The probes are sent untagged:
// the underlay's egress program tags them (fastpath.SetPAVLAN).
func DetectDuplicate(ctx context.Context, ifname string, p netip.Prefix, vlan uint16, report func(netip.Addr, policy.AddressState)) error {
	if err := checkPrefix(p); err != nil {
		return err
	}
	if p.Addr().Is4() {
		return probeARP(ctx, ifname, p.Addr(), vlan, report)
	}
	return watchKernelDAD(ctx, ifname, p.Addr(), report)
}

func watchKernelDAD(ctx context.Context, ifname string, a netip.Addr, report func(netip.Addr, policy.AddressState)) error {
	idx, err := LinkIndex(ifname)
	if err != nil {
		return err
	}
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	failed := make(chan error, 1)
	// The subscription lists existing addresses first, so an address whose DAD
	// finished before we subscribed is still seen.
	err = netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case failed <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watch addresses of %s: %w", ifname, err)
	}
	defer func() {
		close(done)
		for range updates {
		}
	}()
	report(a, policy.AddressTentative)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u, ok := <-updates:
			if !ok {
				var cause error
				select {
				case cause = <-failed:
				default:
				}
				return fmt.Errorf("watching addresses of %s stopped before DAD of %s finished: %v", ifname, a, cause)
			}
			if got, _ := netip.AddrFromSlice(u.LinkAddress.IP); u.LinkIndex != idx || got.Unmap() != a {
				continue
			}
			switch {
			case !u.NewAddr:
				report(a, policy.AddressInvalid)
			case u.Flags&unix.IFA_F_DADFAILED != 0:
				report(a, policy.AddressDuplicate)
			case u.Flags&unix.IFA_F_TENTATIVE != 0:
				continue
			case u.Flags&unix.IFA_F_DEPRECATED != 0:
				report(a, policy.AddressDeprecated)
			default:
				report(a, policy.AddressPreferred)
			}
			return nil
		}
	}
}

const (
	ethHeaderLen = 14
	arpLen       = 28
	ethTypeARP   = 0x0806
)

func probeARP(ctx context.Context, ifname string, a netip.Addr, vlan uint16, report func(netip.Addr, policy.AddressState)) error {
	idx, err := LinkIndex(ifname)
	if err != nil {
		return err
	}
	mac, err := LinkMAC(ifname)
	if err != nil {
		return err
	}
	// Protocol 0 at creation and ARP at bind: no frame from another interface
	// can slip in between.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open ARP socket on %s: %w", ifname, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethTypeARP), Ifindex: idx}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("bind ARP socket to %s: %w", ifname, err)
	}
	// The kernel takes a frame's 802.1Q tag off before packet sockets see
	// it and reports it beside the frame.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		unix.Close(fd)
		return fmt.Errorf("ARP socket on %s: PACKET_AUXDATA: %w", ifname, err)
	}
	f := os.NewFile(uintptr(fd), "arp:"+ifname)
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()

	probe := arpProbe(mac, a)
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(tpacketAuxdataLen))
	start := time.Now()
	report(a, policy.AddressTentative)
	for i := range arpProbes {
		if _, err := f.Write(probe); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("send ARP probe for %s on %s: %w", a, ifname, err)
		}
		until := start.Add(time.Duration(i+1) * arpProbeInterval)
		if i == arpProbes-1 {
			until = start.Add(arpProbeTotal)
		}
		if err := f.SetReadDeadline(until); err != nil {
			return err
		}
		for {
			var n, oobn int
			var rerr error
			err := rc.Read(func(fd uintptr) bool {
				n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
				return rerr != unix.EAGAIN
			})
			if err == nil {
				err = rerr
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("read ARP on %s: %w", ifname, err)
			}
			if frameVLAN(oob[:oobn]) == vlan && arpConflict(buf[:n], mac, a) {
				report(a, policy.AddressDuplicate)
				return nil
			}
		}
	}
	report(a, policy.AddressPreferred)
	return nil
}

// tpacketAuxdataLen is the size of struct tpacket_auxdata.
const tpacketAuxdataLen = 20

// frameVLAN is the VLAN ID of a frame a packet socket read, from the
// auxiliary data that came with it; 0 if it was untagged.
func frameVLAN(oob []byte) uint16 {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA || len(m.Data) < tpacketAuxdataLen {
			continue
		}
		// struct tpacket_auxdata: tp_status at 0, tp_vlan_tci at 16.
		if binary.NativeEndian.Uint32(m.Data[0:4])&unix.TP_STATUS_VLAN_VALID != 0 {
			return binary.NativeEndian.Uint16(m.Data[16:18]) & 0x0fff
		}
	}
	return 0
}

// arpProbe builds an RFC 5227 probe: a broadcast ARP request for a with
// sender IP 0.0.0.0, so that no neighbour cache learns the address yet.
func arpProbe(mac packet.MAC, a netip.Addr) []byte {
	b := make([]byte, ethHeaderLen+arpLen)
	copy(b[0:6], packet.Broadcast[:])
	copy(b[6:12], mac[:])
	binary.BigEndian.PutUint16(b[12:14], ethTypeARP)
	arp := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(arp[0:2], 1)      // Ethernet
	binary.BigEndian.PutUint16(arp[2:4], 0x0800) // IPv4
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:8], 1) // request
	copy(arp[8:14], mac[:])
	t := a.As4()
	copy(arp[24:28], t[:])
	return b
}

// arpConflict reports whether frame shows another host using a (any ARP
// with a as the sender IP) or probing for it at the same time (sender IP
// 0.0.0.0, target a).
func arpConflict(frame []byte, own packet.MAC, a netip.Addr) bool {
	if len(frame) < ethHeaderLen+arpLen || binary.BigEndian.Uint16(frame[12:14]) != ethTypeARP {
		return false
	}
	arp := frame[ethHeaderLen:]
	if binary.BigEndian.Uint16(arp[0:2]) != 1 || binary.BigEndian.Uint16(arp[2:4]) != 0x0800 || arp[4] != 6 || arp[5] != 4 {
		return false
	}
	if packet.MAC(arp[8:14]) == own {
		return false
	}
	sender := netip.AddrFrom4([4]byte(arp[14:18]))
	target := netip.AddrFrom4([4]byte(arp[24:28]))
	op := binary.BigEndian.Uint16(arp[6:8])
	return sender == a || (op == 1 && sender.IsUnspecified() && target == a)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
