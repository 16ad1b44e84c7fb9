package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
)

// VXLANSocket is a UDP socket of one provider address: bound to port 4789
// to receive (ListenVXLAN) or to an ephemeral port to send from
// (SendVXLAN). Packets carry the VXLAN header and the inner frame; the kernel
// adds UDP and IP. ReadBatch and WriteBatch are safe for concurrent use.
//
// RFC 7348 asks for a per-flow UDP source port, for ECMP entropy: a host
// keeps a few sending sockets, each on its own ephemeral port, and picks one
// by a hash of the inner flow. The same spread lets a receiver with several
// listening sockets (SO_REUSEPORT) share the flows among its cores.
type VXLANSocket struct {
	underlaySocket
	batches sync.Pool   // *udpBatch
	noGSO   atomic.Bool // the kernel refused a GSO send: send datagrams one by one
	port    uint16      // the local UDP port
}

// udpOOBLen holds one cmsg with a UDP_SEGMENT (uint16) or UDP_GRO (int)
// value.
const udpOOBLen = 24

// MaxGSOSegments is the most datagrams one UDP GSO send may carry (the
// kernel's UDP_MAX_SEGMENTS is 64 on older kernels), and MaxGSOBytes the most
// bytes (one UDP datagram).
const (
	MaxGSOSegments = 64
	MaxGSOBytes    = 65507
)

// vxlanPortBE is 4789 as a sockaddr's port field holds it: in network byte
// order.
var vxlanPortBE = func() uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], packet.VXLANPort)
	return *(*uint16)(unsafe.Pointer(&b))
}()

// udpBatch is a VXLAN socket's mmsgBatch, with room for a cmsg per message.
type udpBatch struct {
	mmsgBatch
	oob [][udpOOBLen]byte // per message: UDP_SEGMENT or UDP_GRO
}

// ListenVXLAN opens a UDP socket on pa port 4789, bound to the interface
// ifindex the PA is on (0: any). It may be opened before the address is
// configured. Several may listen on one PA (SO_REUSEPORT): the kernel
// spreads datagrams over them by addresses and ports.
func ListenVXLAN(pa netip.Addr, ifindex int) (*VXLANSocket, error) {
	return openVXLAN(pa, packet.VXLANPort, ifindex)
}

// SendVXLAN opens a UDP socket on pa and an ephemeral port, bound to
// interface ifindex (0: any), to send VXLAN from; nothing reads what
// arrives on it.
func SendVXLAN(pa netip.Addr, ifindex int) (*VXLANSocket, error) { return openVXLAN(pa, 0, ifindex) }

// Port is the socket's local UDP port: 4789, or the ephemeral one a
// SendVXLAN socket sends from.
func (s *VXLANSocket) Port() uint16 { return s.port }

func openVXLAN(pa netip.Addr, port, ifindex int) (*VXLANSocket, error) {
	if err := checkPA(pa, "VXLAN"); err != nil {
		return nil, err
	}
	family, sa := paSockaddr(pa, port)
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("open VXLAN socket for %s: %w", pa, err)
	}
	if err := freebind(fd, pa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("VXLAN socket for %s: %w", pa, err)
	}
	if err := bindDevice(fd, ifindex); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("VXLAN socket for %s: %w", pa, err)
	}
	if port != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("VXLAN socket for %s: SO_REUSEPORT: %w", pa, err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind VXLAN socket to provider address %s port %d: %w", pa, port, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("VXLAN socket for %s: getsockname: %w", pa, err)
	}
	setBuffers(fd)
	// Coalesced reads (UDP GRO): a peer's GSO send arrives whole. Kernels
	// before 5.0 lack it and deliver datagrams one by one.
	_ = unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1)
	s := &VXLANSocket{}
	switch sa := bound.(type) {
	case *unix.SockaddrInet4:
		s.port = uint16(sa.Port)
	case *unix.SockaddrInet6:
		s.port = uint16(sa.Port)
	}
	if err := s.init(fd, "vxlan:"+pa.String(), pa); err != nil {
		return nil, err
	}
	s.batches.New = func() any {
		b := &udpBatch{}
		b.init(&s.underlaySocket, &s.noGSO)
		return b
	}
	return s, nil
}

func (s *VXLANSocket) batch(n int) *udpBatch {
	b := s.batches.Get().(*udpBatch)
	b.reset(n)
	if len(b.oob) < len(b.v.msgs) {
		b.oob = make([][udpOOBLen]byte, len(b.v.msgs))
	}
	return b
}

// ReadBatch blocks until at least one datagram has arrived, then returns up
// to len(pkts) of them with one recvmmsg: Buf[:N] is the VXLAN header and
// inner frame, Src the sender's PA, Dst the bound PA. A coalesced read (see
// Packet.Segment) needs buffers of 64 KiB. Datagrams larger than their
// buffer are dropped and counted in Stats().Truncated; ReadBatch may swap
// entries of pkts to keep the first n valid.
func (s *VXLANSocket) ReadBatch(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	b := s.batch(len(pkts))
	defer s.batches.Put(b)
	for {
		v := &b.v
		for i := range pkts {
			m := &v.msgs[i].Hdr
			*m = unix.Msghdr{}
			v.iovs[i].Base = unsafe.SliceData(pkts[i].Buf)
			v.iovs[i].SetLen(len(pkts[i].Buf))
			m.Iov = &v.iovs[i]
			m.SetIovlen(1)
			m.Name = (*byte)(unsafe.Pointer(&v.names[i]))
			m.Namelen = unix.SizeofSockaddrInet6
			m.Control = &b.oob[i][0]
			m.SetControllen(udpOOBLen)
		}
		if err := b.recv(len(pkts)); err != nil {
			return 0, fmt.Errorf("read VXLAN on %s: %w", s.pa, err)
		}
		if n := b.unpack(pkts); n > 0 {
			return n, nil
		}
	}
}

func (b *udpBatch) unpack(pkts []Packet) int {
	v, s := &b.v, b.s
	valid := 0
	for i := 0; i < b.done; i++ {
		mh := &v.msgs[i]
		if mh.Hdr.Flags&unix.MSG_TRUNC != 0 {
			s.truncated.Add(1)
			continue
		}
		p := &pkts[i]
		p.N = int(mh.Len)
		p.Src = sockaddrAddr(&v.names[i])
		p.Dst = s.pa
		p.Segment = groSize(b.oob[i][:mh.Hdr.Controllen])
		if p.Segment >= p.N {
			p.Segment = 0
		}
		if valid != i {
			pkts[valid], pkts[i] = pkts[i], pkts[valid]
		}
		valid++
	}
	return valid
}

// groSize returns the segment size of a UDP_GRO cmsg, or 0.
func groSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && int(h.Len) >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])))
		}
		oob = oob[unix.CmsgSpace(int(h.Len)-unix.CmsgLen(0)):]
	}
	return 0
}

// sockaddrAddr reads the address of a sockaddr_in or sockaddr_in6.
func sockaddrAddr(n *unix.RawSockaddrInet6) netip.Addr {
	if n.Family == unix.AF_INET {
		return netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(n)).Addr)
	}
	return netip.AddrFrom16(n.Addr)
}

// WriteBatch sends each Buf[:N] to port 4789 of Dst with sendmmsg, as
// several datagrams with UDP GSO when Segment > 0 (at most MaxGSOSegments
// and MaxGSOBytes). If the kernel refuses GSO (an underlay device without
// checksum offload), that batch is dropped and later ones go out one
// datagram per message. Packets the kernel refuses or whose Dst is not of the socket's family are counted
// in Stats().Dropped and skipped. It returns the packets sent; the error is
// nil unless the socket itself failed.
func (s *VXLANSocket) WriteBatch(pkts []Packet) (int, error) {
	gso := !s.noGSO.Load()
	msgs := len(pkts)
	if !gso {
		msgs = 0
		for i := range pkts {
			msgs += max(1, datagrams(&pkts[i]))
		}
	}
	b := s.batch(msgs)
	defer s.batches.Put(b)
	v4 := s.pa.Is4()
	for i := range pkts {
		p := &pkts[i]
		if p.Dst.Is4() != v4 || !p.Dst.IsValid() || p.N < 0 || p.N > len(p.Buf) {
			s.dropped.Add(1)
			continue
		}
		switch {
		case p.Segment <= 0 || p.N <= p.Segment:
			b.add(p.Buf[:p.N], p.Dst, 0)
		case gso:
			b.add(p.Buf[:p.N], p.Dst, p.Segment)
		default:
			for off := 0; off < p.N; off += p.Segment {
				b.add(p.Buf[off:min(off+p.Segment, p.N)], p.Dst, 0)
			}
		}
	}
	if b.want == 0 {
		return 0, nil
	}
	if err := b.send(); err != nil {
		return b.done, fmt.Errorf("write VXLAN from %s: %w", s.pa, err)
	}
	return b.done, nil
}

// datagrams is how many datagrams p carries.
func datagrams(p *Packet) int {
	if p.Segment <= 0 {
		return 1
	}
	return (p.N + p.Segment - 1) / p.Segment
}

// add appends a message sending data to port 4789 of dst, as datagrams of
// segment bytes with UDP GSO when segment > 0.
func (b *udpBatch) add(data []byte, dst netip.Addr, segment int) {
	v, k := &b.v, b.want
	m := &v.msgs[k].Hdr
	*m = unix.Msghdr{}
	v.iovs[k].Base = unsafe.SliceData(data)
	v.iovs[k].SetLen(len(data))
	m.Iov = &v.iovs[k]
	m.SetIovlen(1)
	name := &v.names[k]
	m.Name = (*byte)(unsafe.Pointer(name))
	if segment > 0 {
		putSegmentCmsg(b.oob[k][:], uint16(segment))
		m.Control = &b.oob[k][0]
		m.SetControllen(unix.CmsgSpace(2))
	}
	if dst.Is4() {
		*(*unix.RawSockaddrInet4)(unsafe.Pointer(name)) = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: vxlanPortBE, Addr: dst.As4()}
		m.Namelen = unix.SizeofSockaddrInet4
	} else {
		*name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: vxlanPortBE, Addr: dst.As16()}
		m.Namelen = unix.SizeofSockaddrInet6
	}
	b.want++
}

// putSegmentCmsg writes a UDP_SEGMENT cmsg for datagrams of size bytes.
func putSegmentCmsg(oob []byte, size uint16) {
	clear(oob[:unix.CmsgSpace(2)])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = size
}
