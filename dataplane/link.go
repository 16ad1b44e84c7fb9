package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
)

func link(ifname string) (netlink.Link, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", ifname, err)
	}
	return l, nil
}

// IPNet is p as netlink takes it.
func IPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// AddAddrNoDAD adds a customer-side address (a lab VM's, a gateway's) with
// its prefix length through h; IPv6 ones skip duplicate address detection
// so they are usable at once, and one that is there already is fine.
func AddAddrNoDAD(h *netlink.Handle, l netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: IPNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() || p.Addr().IsUnspecified() {
		return fmt.Errorf("provider address %s is not usable: use a unicast IPv4 or IPv6 address with a prefix length", p)
	}
	return nil
}

// AddAddress configures provider address p on the interface. IPv6 addresses
// are added without IFA_F_NODAD, so the kernel runs DAD and the address stays
// tentative (unbindable) until it passes; watch it with DetectDuplicate.
func AddAddress(ifname string, p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return err
	}
	l, err := link(ifname)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: IPNet(p)}); err != nil {
		return fmt.Errorf("add provider address %s to %s: %w", p, ifname, err)
	}
	return nil
}

// RemoveAddress removes provider address p from the interface.
func RemoveAddress(ifname string, p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return err
	}
	l, err := link(ifname)
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(l, &netlink.Addr{IPNet: IPNet(p)}); err != nil {
		return fmt.Errorf("remove provider address %s from %s: %w", p, ifname, err)
	}
	return nil
}

// Addresses lists the usable addresses configured on the interface, with
// their prefix lengths; tentative and DAD-failed IPv6 addresses are left out.
func Addresses(ifname string) ([]netip.Prefix, error) {
	l, err := link(ifname)
	if err != nil {
		return nil, err
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list the addresses of %s: %w", ifname, err)
	}
	var out []netip.Prefix
	for _, a := range as {
		if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out, nil
}

// LinkIndex returns the interface's index.
func LinkIndex(ifname string) (int, error) {
	l, err := link(ifname)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// LinkMAC returns the interface's hardware address.
func LinkMAC(ifname string) (packet.MAC, error) {
	l, err := link(ifname)
	if err != nil {
		return packet.MAC{}, err
	}
	var m packet.MAC
	if hw := l.Attrs().HardwareAddr; len(hw) != len(m) {
		return m, fmt.Errorf("interface %q has a %d-byte hardware address: only Ethernet (6 bytes) is supported", ifname, len(hw))
	}
	copy(m[:], l.Attrs().HardwareAddr)
	return m, nil
}

// LinkMTU returns the interface's MTU.
func LinkMTU(ifname string) (int, error) {
	l, err := link(ifname)
	if err != nil {
		return 0, err
	}
	return l.Attrs().MTU, nil
}

// WatchLinks signals on the returned channel whenever an interface is added
// or changes in the caller's network namespace, until ctx ends. Signals
// coalesce: one pending signal stands for any number of changes.
func WatchLinks(ctx context.Context) (<-chan struct{}, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		return nil, fmt.Errorf("subscribe to link updates: %w", err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer func() {
			// The subscription closes updates once it sees done; drain it so
			// its goroutine never blocks on a send.
			close(done)
			for range updates {
			}
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				if u.Header.Type != unix.RTM_NEWLINK {
					continue
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}
