package dataplane

import (
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"

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
