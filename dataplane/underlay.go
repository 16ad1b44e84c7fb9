package dataplane

import (
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// underlaySocket is what GRE and VXLAN sockets share: the non-blocking fd
// of one provider address, registered with Go's poller, and its counters.
type underlaySocket struct {
	f  *os.File
	rc syscall.RawConn
	pa netip.Addr

	dropped, truncated atomic.Uint64
	closed             atomic.Bool
}

// checkPA rejects addresses a provider socket cannot be bound to; proto
// names the encapsulation in the error.
func checkPA(pa netip.Addr, proto string) error {
	if !pa.IsValid() || pa.IsUnspecified() || pa.IsMulticast() || pa.Is4In6() || pa.Zone() != "" {
		return fmt.Errorf("provider address %s cannot carry %s: use a unicast IPv4 or global IPv6 address without a zone", pa, proto)
	}
	return nil
}

// paSockaddr is pa and port as a socket address, with its family.
func paSockaddr(pa netip.Addr, port int) (int, unix.Sockaddr) {
	if pa.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Addr: pa.As4(), Port: port}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Addr: pa.As16(), Port: port}
}

// freebind lets fd bind to pa before pa is on an interface, or while it is
// tentative (IPv6 DAD): the socket then receives from the moment the
// address comes up, without a bind that fails and is never retried.
func freebind(fd int, pa netip.Addr) error {
	level, opt, name := unix.SOL_IP, unix.IP_FREEBIND, "IP_FREEBIND"
	if pa.Is6() {
		level, opt, name = unix.SOL_IPV6, unix.IPV6_FREEBIND, "IPV6_FREEBIND"
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// bindDevice binds fd to interface ifindex, unless it is 0: what it sends
// leaves by that interface (routes by others do not apply), and it
// receives only what arrived there. A host with several underlay
// interfaces keeps each PA's traffic on the PA's own.
func bindDevice(fd, ifindex int) error {
	if ifindex == 0 {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, ifindex); err != nil {
		return fmt.Errorf("SO_BINDTOIFINDEX %d: %w", ifindex, err)
	}
	return nil
}

// setBuffers deepens fd's buffers to absorb bursts between batches; FORCE
// needs CAP_NET_ADMIN, so it falls back to the sysctl-capped size without it.
func setBuffers(fd int) {
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], socketBuffer) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], socketBuffer)
		}
	}
}

// init takes ownership of the bound fd and registers it with the poller; on
// failure the fd is closed.
func (s *underlaySocket) init(fd int, name string, pa netip.Addr) error {
	s.f, s.pa = os.NewFile(uintptr(fd), name), pa
	var err error
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return err
	}
	return nil
}

// LocalAddr is the provider address the socket is bound to.
func (s *underlaySocket) LocalAddr() netip.Addr { return s.pa }

// Stats returns the socket's drop counters.
func (s *underlaySocket) Stats() Stats {
	return Stats{Dropped: s.dropped.Load(), Truncated: s.truncated.Load()}
}

// Close closes the socket and wakes a ReadBatch blocked on it.
func (s *underlaySocket) Close() error {
	s.closed.Store(true)
	return s.f.Close()
}

// mmsgVec is a recvmmsg/sendmmsg vector. Names have room for either family.
// IPv4 receives scatter the fixed IP header into hdr so the payload lands at
// the start of the caller's buffer without a copy.
type mmsgVec struct {
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	hdr   [][ipv4HeaderLen]byte
}

func (v *mmsgVec) grow(n int) {
	if n <= len(v.msgs) {
		return
	}
	v.msgs = make([]unix.Mmsghdr, n)
	v.iovs = make([]unix.Iovec, 2*n)
	v.names = make([]unix.RawSockaddrInet6, n)
	v.hdr = make([][ipv4HeaderLen]byte, n)
}

// mmsgBatch carries one ReadBatch or WriteBatch call through RawConn, whose
// callback may run several times before the batch is done. Calls take one
// from the socket's pool, so concurrent calls do not share vectors and steady
// state does not allocate.
type mmsgBatch struct {
	s          *underlaySocket
	v          mmsgVec
	want       int // messages in the vector
	next, done int // send progress; messages done
	err        error
	gsoOff     *atomic.Bool       // set when the kernel refuses a GSO send; nil on GRE
	recvFn     func(uintptr) bool // bound once so batches do not allocate closures
	sendFn     func(uintptr) bool
}

func (b *mmsgBatch) init(s *underlaySocket, gsoOff *atomic.Bool) {
	b.s, b.gsoOff = s, gsoOff
	b.recvFn, b.sendFn = b.recvReady, b.sendReady
	b.v.grow(defaultBatch)
}

// reset readies a pooled batch for a call of up to n messages.
func (b *mmsgBatch) reset(n int) {
	b.v.grow(n)
	b.want, b.next, b.done, b.err = 0, 0, 0, nil
}

// recv waits until the socket is readable and receives into the first want
// messages of the vector with one recvmmsg.
func (b *mmsgBatch) recv(want int) error {
	b.want, b.done, b.err = want, 0, nil
	err := b.s.rc.Read(b.recvFn)
	if err == nil {
		err = b.err
	}
	if err != nil {
		return closedErr(&b.s.closed, err)
	}
	return nil
}

// send sends the b.want messages of the vector with sendmmsg, waiting while
// the socket's buffer is full.
func (b *mmsgBatch) send() error {
	err := b.s.rc.Write(b.sendFn)
	if err == nil {
		err = b.err
	}
	if err != nil {
		return closedErr(&b.s.closed, err)
	}
	return nil
}

func (b *mmsgBatch) recvReady(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.v.msgs[0])), uintptr(b.want), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.done = int(n)
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			b.err = e
			return true
		}
	}
}

func (b *mmsgBatch) sendReady(fd uintptr) bool {
	for b.next < b.want {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.v.msgs[b.next])), uintptr(b.want-b.next), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.next += int(n)
			b.done += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		case unix.EBADF, unix.ENOTSOCK:
			b.err = e
			return true
		default:
			// sendmmsg reports an error only for the first message it could
			// not send: drop that one and carry on with the rest. A
			// message with control data is a UDP GSO send (VXLAN only);
			// EIO or EINVAL for it means the underlay cannot segment.
			if b.gsoOff != nil && (e == unix.EIO || e == unix.EINVAL) && b.v.msgs[b.next].Hdr.Controllen > 0 {
				b.gsoOff.Store(true)
			}
			b.s.dropped.Add(1)
			b.next++
		}
	}
	return true
}
