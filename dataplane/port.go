package dataplane

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Port is the slow path's view of a VM port: an existing interface in wnvd's
// network namespace (the TAP a hypervisor created, or the host end of a
// container's veth) that wnvd never owns. Frames the VM sends are read from
// an AF_PACKET socket bound to it, and frames for the VM are sent on that
// socket, out of the interface towards the VM. Every frame carries a
// virtio-net header (PACKET_VNET_HDR), so TCP super-frames cross whole in
// both directions, as with an offload TAP.
//
// With Mark set, the socket takes only the frames the fast path's TC program
// handed to the slow path (re-injected with that skb mark): packet taps see
// a frame before TC ingress does, so without the filter the socket would
// also copy every frame the kernel forwards itself.
type Port struct {
	frameFile
	ifindex int
}

// PortConfig says which interface to open and which frames to take.
type PortConfig struct {
	Interface string
	Mark      uint32 // 0 takes every frame
}

// LinkNotFoundError is returned by OpenPort for an interface that does not
// exist (yet: a hypervisor may create it later).
type LinkNotFoundError struct{ Name string }

func (e *LinkNotFoundError) Error() string {
	return fmt.Sprintf("interface %s does not exist in wnvd's network namespace: create it first (the hypervisor's TAP, or the host end of a veth pair)", e.Name)
}

// OpenPort opens the slow path's socket on an existing interface and brings
// the interface up if it is down. Closing the Port leaves the interface as
// it is.
func OpenPort(cfg PortConfig) (*Port, error) {
	l, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, &LinkNotFoundError{cfg.Interface}
		}
		return nil, fmt.Errorf("look up interface %s: %w", cfg.Interface, err)
	}
	if t := l.Type(); t != "tuntap" && t != "veth" && t != "tun" {
		return nil, fmt.Errorf("interface %s is a %s: a port must be a TAP or the host end of a veth pair", cfg.Interface, t)
	}
	if tt, ok := l.(*netlink.Tuntap); ok && tt.Mode == netlink.TUNTAP_MODE_TUN {
		return nil, fmt.Errorf("interface %s is a TUN device, which carries IP packets without Ethernet headers: a port must be a TAP (mode tap) or the host end of a veth pair", cfg.Interface)
	}
	if l.Attrs().Flags&unix.IFF_UP == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("bring up interface %s: %w", cfg.Interface, err)
		}
	}
	idx := l.Attrs().Index
	// Protocol 0 receives nothing until bind, so no frame arrives before the
	// filter is in place.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open a packet socket on %s: %w", cfg.Interface, err)
	}
	if err := setupPortSocket(fd, idx, cfg.Mark); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on %s: %w", cfg.Interface, err)
	}
	p := &Port{ifindex: idx}
	if err := p.init(fd, "port", cfg.Interface, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return p, nil
}

func setupPortSocket(fd, ifindex int, mark uint32) error {
	for _, o := range []struct {
		name     string
		opt, val int
	}{
		{"PACKET_VNET_HDR", unix.PACKET_VNET_HDR, 1},
		// Frames wnvd sends to the VM are not read back.
		{"PACKET_IGNORE_OUTGOING", unix.PACKET_IGNORE_OUTGOING, 1},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, o.val); err != nil {
			return fmt.Errorf("%s: %w", o.name, err)
		}
	}
	setBuffers(fd)
	if mark != 0 {
		prog, err := bpf.Assemble([]bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtMark},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: mark, SkipFalse: 1},
			bpf.RetConstant{Val: 0x40000},
			bpf.RetConstant{Val: 0},
		})
		if err != nil {
			return err
		}
		f := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &f); err != nil {
			return fmt.Errorf("attach the mark filter: %w", err)
		}
	}
	return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex})
}

// Ifindex is the interface's index.
func (p *Port) Ifindex() int { return p.ifindex }

// Close closes the socket, waking a ReadBatch blocked on it, and leaves the
// interface alone.
func (p *Port) Close() error {
	if err := p.closeFile(); err != nil {
		return fmt.Errorf("close port %s: %w", p.name, err)
	}
	return nil
}

// OpenRewriteTap opens the slow path's socket for IP Rewrite packets on
// the underlay interface: it takes only the frames the fast path's
// underlay program handed to the slow path (skb mark mark), with a
// virtio-net header like a port's. Frames are never sent on it.
func OpenRewriteTap(underlay string, mark uint32) (*Port, error) {
	l, err := netlink.LinkByName(underlay)
	if err != nil {
		return nil, fmt.Errorf("look up underlay interface %s: %w", underlay, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open a packet socket on %s: %w", underlay, err)
	}
	if err := setupPortSocket(fd, l.Attrs().Index, mark); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on %s: %w", underlay, err)
	}
	p := &Port{ifindex: l.Attrs().Index}
	if err := p.init(fd, "rewrite", underlay, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return p, nil
}
