package dataplane

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TAP is a TAP interface of wnvd's own (the GSO TAP): frames written to it
// are received by the interface, and frames the interface transmits are read
// from it. VM ports are not TAPs wnvd opens: see Port.
type TAP struct {
	frameFile
	reattached bool
}

// tapFlags: a multi-queue TAP without packet information, so that a
// restarted wnvd can attach a queue to the persistent interface it left.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE

// OpenTAP opens a queue of the TAP name in the caller's namespace. If the
// interface does not exist it creates a persistent one and brings it up; if
// it does (left by a wnvd that was killed), it attaches a queue to it and
// Reattached reports true. With offload, every frame read or written carries
// a virtio-net header (IFF_VNET_HDR with checksum and TSO offload).
func OpenTAP(name string, offload bool) (*TAP, error) {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("TAP name %q is invalid: use 1..%d bytes", name, unix.IFNAMSIZ-1)
	}
	_, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return nil, fmt.Errorf("look for TAP %s: %w", name, err)
	}
	exists := err == nil
	fd, err := tunSetIff(name, offload)
	if err != nil {
		if exists {
			return nil, fmt.Errorf("attach a queue to the existing interface %s (it must be a multi-queue TAP): %w", name, err)
		}
		return nil, fmt.Errorf("create TAP %q: %w", name, err)
	}
	t := &TAP{reattached: exists}
	if err := t.init(fd, "TAP", name, offload); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if exists {
		return t, nil
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		t.closeFile()
		return nil, fmt.Errorf("make TAP %s persistent: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("bring up TAP %s: %w", name, err)
	}
	return t, nil
}

// RemoveTAP deletes the persistent TAP name a killed wnvd left; removed is
// false when there is none. An interface of that name that is not a TAP is
// left alone, with an error.
func RemoveTAP(name string) (removed bool, err error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for TAP %s: %w", name, err)
	}
	if l.Type() != "tuntap" {
		return false, fmt.Errorf("interface %s is a %s, not the TAP wnvd creates: left alone", name, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil {
		return false, fmt.Errorf("delete TAP %s: %w", name, err)
	}
	return true, nil
}

// tunSetIff opens /dev/net/tun and attaches it to the TAP name, creating it
// if there is none.
func tunSetIff(name string, offload bool) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TAP name %q: %w", name, err)
	}
	flags := uint16(tapFlags)
	if offload {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if offload {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("TUNSETOFFLOAD: %w", err)
		}
	}
	return fd, nil
}

// Reattached reports whether OpenTAP attached to an interface that already
// existed instead of creating it.
func (t *TAP) Reattached() bool { return t.reattached }

// Close deletes the interface (it is persistent only while wnvd runs) and
// closes the queue, waking a ReadBatch blocked on it.
func (t *TAP) Close() error {
	var err error
	if cerr := t.rc.Control(func(fd uintptr) {
		err = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, 0)
	}); cerr != nil {
		err = cerr
	}
	if cerr := t.closeFile(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close TAP %s: %w", t.name, err)
	}
	return nil
}
