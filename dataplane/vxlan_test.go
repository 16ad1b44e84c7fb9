package dataplane

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// vxlanLoopback runs fn in a fresh namespace with VXLAN sockets listening on
// a = 127.0.0.1 and b = 127.0.0.2.
func vxlanLoopback(t *testing.T, fn func(a, b netip.Addr, sa, sb *VXLANSocket) error) {
	t.Helper()
	needRoot(t)
	ns := newNamedNS(t, "wnvdpx"+suffix())
	inNS(t, ns, func() error {
		a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
		sa, err := ListenVXLAN(a, 0)
		if err != nil {
			return err
		}
		defer sa.Close()
		sb, err := ListenVXLAN(b, 0)
		if err != nil {
			return err
		}
		defer sb.Close()
		return fn(a, b, sa, sb)
	})
}

// TestVXLANSocketGSOAndGRO sends single datagrams and a UDP GSO batch over
// loopback and reads them back, coalesced or not.
func TestVXLANSocketGSOAndGRO(t *testing.T) {
	vxlanLoopback(t, func(a, b netip.Addr, sa, sb *VXLANSocket) error {

		msg := []byte("\x08\x00\x00\x00\x00\x13\x89\x00inner frame")
		if n, err := sa.WriteBatch([]Packet{{Buf: msg, N: len(msg), Dst: b}, {Buf: msg, N: len(msg), Dst: b}}); n != 2 || err != nil {
			t.Fatalf("WriteBatch: %d %v", n, err)
		}
		pkts := packets(4, 64<<10)
		got := 0
		for got < 2 {
			n, err := sb.ReadBatch(pkts)
			if err != nil {
				return err
			}
			for _, p := range pkts[:n] {
				if p.Src != a || p.Dst != b || !bytes.Equal(p.Buf[:p.N], msg) || p.Segment != 0 {
					t.Fatalf("got %q from %s to %s segment %d", p.Buf[:p.N], p.Src, p.Dst, p.Segment)
				}
			}
			got += n
		}

		// Five datagrams of 1000 bytes and one of 300 in one GSO send.
		big := make([]byte, 5*1000+300)
		for i := range big {
			big[i] = byte(i / 1000)
		}
		if n, err := sa.WriteBatch([]Packet{{Buf: big, N: len(big), Dst: b, Segment: 1000}}); n != 1 || err != nil {
			t.Fatalf("GSO WriteBatch: %d %v (stats %+v)", n, err, sa.Stats())
		}
		var recv []byte
		for len(recv) < len(big) {
			n, err := sb.ReadBatch(pkts)
			if err != nil {
				return err
			}
			for _, p := range pkts[:n] {
				if p.Segment != 0 && p.Segment != 1000 {
					t.Fatalf("coalesced read with segment size %d, want 1000", p.Segment)
				}
				recv = append(recv, p.Buf[:p.N]...)
			}
		}
		if !bytes.Equal(recv, big) {
			t.Fatal("the GSO datagrams came back different")
		}
		return nil
	})
}

// Without GSO (as after the kernel refused it) a GSO packet goes out as one
// message per datagram.
func TestVXLANSocketWithoutGSO(t *testing.T) {
	vxlanLoopback(t, func(a, b netip.Addr, sa, sb *VXLANSocket) error {
		sa.noGSO.Store(true)
		big := make([]byte, 3*1000+10)
		if n, err := sa.WriteBatch([]Packet{{Buf: big, N: len(big), Dst: b, Segment: 1000}}); n != 4 || err != nil {
			t.Fatalf("WriteBatch without GSO: %d messages, %v; want 4", n, err)
		}
		pkts := packets(8, 64<<10)
		var sizes []int
		for len(sizes) < 4 {
			n, err := sb.ReadBatch(pkts)
			if err != nil {
				return err
			}
			for _, p := range pkts[:n] {
				if p.Segment != 0 {
					t.Fatalf("datagrams sent one by one were read coalesced (segment %d)", p.Segment)
				}
				sizes = append(sizes, p.N)
			}
		}
		if sizes[0] != 1000 || sizes[3] != 10 {
			t.Fatalf("datagram sizes %v, want 1000, 1000, 1000, 10", sizes)
		}
		return nil
	})
}

// Several sockets listen on one PA's port 4789, and a sending socket on an
// ephemeral port reaches them.
func TestVXLANListenGroupAndSender(t *testing.T) {
	needRoot(t)
	ns := newNamedNS(t, "wnvdpz"+suffix())
	inNS(t, ns, func() error {
		a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
		var group []*VXLANSocket
		for range 2 {
			s, err := ListenVXLAN(b, 0)
			if err != nil {
				return err
			}
			defer s.Close()
			group = append(group, s)
		}
		send, err := SendVXLAN(a, 0)
		if err != nil {
			return err
		}
		defer send.Close()
		msg := []byte("\x08\x00\x00\x00\x00\x13\x89\x00frame")
		if n, err := send.WriteBatch([]Packet{{Buf: msg, N: len(msg), Dst: b}}); n != 1 || err != nil {
			t.Fatalf("WriteBatch: %d %v", n, err)
		}
		got := make(chan Packet, 2)
		for _, s := range group {
			go func() {
				pkts := []Packet{{Buf: make([]byte, 2048)}}
				if n, err := s.ReadBatch(pkts); err == nil && n == 1 {
					got <- pkts[0]
				}
			}()
		}
		select {
		case p := <-got:
			if p.Src != a || string(p.Buf[:p.N]) != string(msg) {
				t.Fatalf("got %q from %s", p.Buf[:p.N], p.Src)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no listener of the group got the datagram")
		}
		return nil
	})
}
