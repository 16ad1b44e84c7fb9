package dataplane

import (
	"fmt"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Packet is one underlay packet: Buf[:N] holds the GRE or VXLAN header and
// the inner frame; Src and Dst are the outer provider addresses. On a VXLAN
// socket, Segment > 0 means Buf[:N] is several datagrams of Segment bytes
// back to back (the last may be shorter), sent with one UDP GSO send or
// received as one UDP GRO read; the GRE socket ignores it and never sets it.
type Packet struct {
	Buf      []byte
	N        int
	Src, Dst netip.Addr
	Segment  int
}

const (
	ipv4HeaderLen = 20
	// defaultBatch sizes the preallocated vectors; a larger batch grows them
	// once.
	defaultBatch = 64
	socketBuffer = 4 << 20
)

// GRESocket is a raw IP protocol 47 socket bound to one provider address.
// ReadBatch and WriteBatch are safe for concurrent use.
type GRESocket struct {
	underlaySocket
	batches sync.Pool // *greBatch
}

// greBatch is a GRE socket's mmsgBatch.
type greBatch struct{ mmsgBatch }

func (s *GRESocket) batch(n int) *greBatch {
	b := s.batches.Get().(*greBatch)
	b.reset(n)
	return b
}

// ListenGRE opens a raw GRE socket bound to pa, IPv4 or IPv6, and to the
// interface ifindex the PA is on (0: any). The address must already be
// configured and, for IPv6, past DAD.
func ListenGRE(pa netip.Addr, ifindex int) (*GRESocket, error) {
	if err := checkPA(pa, "GRE"); err != nil {
		return nil, err
	}
	family, sa := paSockaddr(pa, 0)
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_GRE)
	if err != nil {
		return nil, fmt.Errorf("open GRE socket for %s: %w", pa, err)
	}
	if err := bindDevice(fd, ifindex); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("GRE socket for %s: %w", pa, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind GRE socket to provider address %s: %w", pa, err)
	}
	setBuffers(fd)
	s := &GRESocket{}
	if err := s.init(fd, "gre:"+pa.String(), pa); err != nil {
		return nil, err
	}
	s.batches.New = func() any {
		b := &greBatch{}
		b.init(&s.underlaySocket, nil)
		return b
	}
	return s, nil
}

// ReadBatch blocks until at least one packet has arrived, then returns up to
// len(pkts) of them with one recvmmsg: Buf[:N] is the GRE header and inner
// frame, Src the sender's PA, Dst the bound PA. Packets larger than their
// buffer are dropped and counted in Stats().Truncated; to keep the first n
// entries valid, ReadBatch may swap entries of pkts (buffers included). It
// returns at least one packet unless it fails.
func (s *GRESocket) ReadBatch(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	b := s.batch(len(pkts))
	defer s.batches.Put(b)
	for {
		b.prepareRecv(pkts)
		if err := b.recv(len(pkts)); err != nil {
			return 0, fmt.Errorf("read GRE on %s: %w", s.pa, err)
		}
		if n := b.unpack(pkts); n > 0 {
			return n, nil
		}
	}
}

func (b *greBatch) prepareRecv(pkts []Packet) {
	v := &b.v
	v4 := b.s.pa.Is4()
	for i := range pkts {
		m := &v.msgs[i].Hdr
		*m = unix.Msghdr{}
		buf := pkts[i].Buf
		if v4 {
			iov := v.iovs[2*i : 2*i+2]
			iov[0].Base = &v.hdr[i][0]
			iov[0].SetLen(ipv4HeaderLen)
			iov[1].Base = unsafe.SliceData(buf)
			iov[1].SetLen(len(buf))
			m.Iov = &iov[0]
			m.SetIovlen(2)
		} else {
			v.iovs[i].Base = unsafe.SliceData(buf)
			v.iovs[i].SetLen(len(buf))
			m.Iov = &v.iovs[i]
			m.SetIovlen(1)
			m.Name = (*byte)(unsafe.Pointer(&v.names[i]))
			m.Namelen = unix.SizeofSockaddrInet6
		}
	}
}

// unpack fills N, Src and Dst of the received packets, moving truncated or
// malformed ones behind the valid ones, and returns how many are valid.
func (b *greBatch) unpack(pkts []Packet) int {
	v, s := &b.v, b.s
	valid := 0
	for i := 0; i < b.done; i++ {
		p := &pkts[i]
		mh := &v.msgs[i]
		ok := mh.Hdr.Flags&unix.MSG_TRUNC == 0
		if s.pa.Is4() {
			h := &v.hdr[i]
			ihl := int(h[0]&0x0f) * 4
			size := int(mh.Len) - ipv4HeaderLen
			// IP options spill into the buffer ahead of the payload.
			if ok = ok && h[0]>>4 == 4 && ihl >= ipv4HeaderLen && size >= ihl-ipv4HeaderLen; ok {
				if opt := ihl - ipv4HeaderLen; opt > 0 {
					size = copy(p.Buf, p.Buf[opt:size])
				}
				p.N = size
				p.Src = netip.AddrFrom4([4]byte(h[12:16]))
				p.Dst = netip.AddrFrom4([4]byte(h[16:20]))
			}
		} else {
			p.N = int(mh.Len)
			p.Src = netip.AddrFrom16(v.names[i].Addr)
			p.Dst = s.pa
		}
		if !ok {
			s.truncated.Add(1)
			continue
		}
		if valid != i {
			pkts[valid], pkts[i] = pkts[i], pkts[valid]
		}
		valid++
	}
	return valid
}

// WriteBatch sends each Buf[:N] to Dst from the bound PA with sendmmsg; the
// kernel builds the outer IP header. Packets the kernel refuses (no route,
// too big, no buffers) or whose Dst is not of the socket's family are counted
// in Stats().Dropped and skipped. It returns the packets sent; the error is
// nil unless the socket itself failed.
func (s *GRESocket) WriteBatch(pkts []Packet) (int, error) {
	b := s.batch(len(pkts))
	defer s.batches.Put(b)
	v := &b.v
	v4 := s.pa.Is4()
	for i := range pkts {
		p := &pkts[i]
		if p.Dst.Is4() != v4 || !p.Dst.IsValid() || p.N < 0 || p.N > len(p.Buf) {
			s.dropped.Add(1)
			continue
		}
		k := b.want
		m := &v.msgs[k].Hdr
		*m = unix.Msghdr{}
		v.iovs[k].Base = unsafe.SliceData(p.Buf)
		v.iovs[k].SetLen(p.N)
		m.Iov = &v.iovs[k]
		m.SetIovlen(1)
		name := &v.names[k]
		m.Name = (*byte)(unsafe.Pointer(name))
		if v4 {
			*(*unix.RawSockaddrInet4)(unsafe.Pointer(name)) = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: p.Dst.As4()}
			m.Namelen = unix.SizeofSockaddrInet4
		} else {
			*name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: p.Dst.As16()}
			m.Namelen = unix.SizeofSockaddrInet6
		}
		b.want++
	}
	if b.want == 0 {
		return 0, nil
	}
	if err := b.send(); err != nil {
		return b.done, fmt.Errorf("write GRE from %s: %w", s.pa, err)
	}
	return b.done, nil
}
