package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nvgre builds an NVGRE payload: the 8-byte GRE header with the VSID in the
// key, then a filler inner frame of n bytes marked with seq.
func nvgre(vsid uint32, seq byte, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint16(b[0:2], 0x2000)
	binary.BigEndian.PutUint16(b[2:4], 0x6558)
	binary.BigEndian.PutUint32(b[4:8], vsid<<8)
	for i := 8; i < len(b); i++ {
		b[i] = seq + byte(i)
	}
	return b
}

func packets(n, size int) []Packet {
	p := make([]Packet, n)
	for i := range p {
		p[i].Buf = make([]byte, size)
	}
	return p
}

// readAll reads until want packets arrived, failing after a few seconds.
func readAll(t *testing.T, s *GRESocket, want int, size int) []Packet {
	t.Helper()
	timer := time.AfterFunc(5*time.Second, func() { s.Close() })
	defer timer.Stop()
	var got []Packet
	for len(got) < want {
		in := packets(want, size)
		n, err := s.ReadBatch(in)
		if err != nil {
			t.Fatalf("ReadBatch on %s after %d of %d packets: %v", s.LocalAddr(), len(got), want, err)
		}
		got = append(got, in[:n]...)
	}
	return got
}

func listenPair(t *testing.T, l *lab, pa, pb netip.Prefix) (sa, sb *GRESocket) {
	t.Helper()
	addNoDAD(t, l.ha, l.ifA, pa)
	addNoDAD(t, l.hb, l.ifB, pb)
	inNS(t, l.a, func() (err error) { sa, err = ListenGRE(pa.Addr(), 0); return })
	t.Cleanup(func() { sa.Close() })
	inNS(t, l.b, func() (err error) { sb, err = ListenGRE(pb.Addr(), 0); return })
	t.Cleanup(func() { sb.Close() })
	return sa, sb
}

func TestGREBatchesBothWays(t *testing.T) {
	for _, tc := range []struct{ name, a, b string }{
		{"IPv4", "198.18.0.1/24", "198.18.0.2/24"},
		{"IPv6", "fd00:47::1/64", "fd00:47::2/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			// Reception must not depend on the kernel's GRE stack: note what
			// this kernel put in a fresh namespace.
			_, err := l.ha.LinkByName("gre0")
			t.Logf("fallback device gre0 in a fresh namespace: %v", err == nil)
			sa, sb := listenPair(t, l, netip.MustParsePrefix(tc.a), netip.MustParsePrefix(tc.b))
			for _, dir := range []struct {
				name     string
				from, to *GRESocket
			}{{"a->b", sa, sb}, {"b->a", sb, sa}} {
				out := make([]Packet, 5)
				for i := range out {
					out[i] = Packet{Buf: nvgre(0x1000+uint32(i), byte(i), 60+100*i), Dst: dir.to.LocalAddr()}
					out[i].N = len(out[i].Buf)
				}
				n, err := dir.from.WriteBatch(out)
				if err != nil || n != len(out) {
					t.Fatalf("%s: WriteBatch = %d, %v; want %d, nil", dir.name, n, err, len(out))
				}
				got := readAll(t, dir.to, len(out), 2048)
				for i, p := range got {
					if p.Src != dir.from.LocalAddr() || p.Dst != dir.to.LocalAddr() {
						t.Errorf("%s: packet %d Src/Dst = %s/%s, want %s/%s", dir.name, i, p.Src, p.Dst, dir.from.LocalAddr(), dir.to.LocalAddr())
					}
					if !bytes.Equal(p.Buf[:p.N], out[i].Buf) {
						t.Errorf("%s: packet %d payload = % x..., want % x...", dir.name, i, p.Buf[:min(p.N, 16)], out[i].Buf[:16])
					}
				}
			}
			if st := sa.Stats(); st != (Stats{}) {
				t.Errorf("sender stats = %+v, want zero", st)
			}
		})
	}
}

// IPv4 options make the header longer than the 20 bytes ReadBatch scatters
// aside; the payload must still start at Buf[0].
func TestGREStripsIPv4Options(t *testing.T) {
	l := newLab(t)
	sa, sb := listenPair(t, l, netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24"))
	var serr error
	sa.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x00") // NOP NOP NOP EOL
	})
	if serr != nil {
		t.Fatal(serr)
	}
	// A second, plain raw socket shows the header really carries options.
	var spy int
	inNS(t, l.b, func() (err error) {
		spy, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_GRE)
		return err
	})
	defer unix.Close(spy)
	want := nvgre(4096, 7, 100)
	if n, err := sa.WriteBatch([]Packet{{Buf: want, N: len(want), Dst: sb.LocalAddr()}}); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	raw := make([]byte, 2048)
	if n, _, err := unix.Recvfrom(spy, raw, 0); err != nil || n < 1 || raw[0]&0x0f != 6 {
		t.Fatalf("spy socket read %d bytes (IHL %d), %v; want a 24-byte header", n, raw[0]&0x0f, err)
	}
	got := readAll(t, sb, 1, 2048)[0]
	if !bytes.Equal(got.Buf[:got.N], want) || got.Src != sa.LocalAddr() {
		t.Fatalf("got %d bytes from %s starting % x, want %d bytes from %s starting % x", got.N, got.Src, got.Buf[:8], len(want), sa.LocalAddr(), want[:8])
	}
}

func TestGRETruncatedPacketsAreDroppedAndCounted(t *testing.T) {
	l := newLab(t)
	sa, sb := listenPair(t, l, netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24"))
	sizes := []int{100, 400, 120}
	out := make([]Packet, len(sizes))
	for i, n := range sizes {
		out[i] = Packet{Buf: nvgre(4096, byte(i), n), Dst: sb.LocalAddr()}
		out[i].N = len(out[i].Buf)
	}
	if n, err := sa.WriteBatch(out); n != 3 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := readAll(t, sb, 2, 256)
	if !bytes.Equal(got[0].Buf[:got[0].N], out[0].Buf) || !bytes.Equal(got[1].Buf[:got[1].N], out[2].Buf) {
		t.Errorf("got lengths %d, %d; want %d, %d", got[0].N, got[1].N, len(out[0].Buf), len(out[2].Buf))
	}
	if st := sb.Stats(); st.Truncated != 1 {
		t.Errorf("Truncated = %d, want 1", st.Truncated)
	}
}

func TestGREWriteCountsRefusedPackets(t *testing.T) {
	l := newLab(t)
	sa, sb := listenPair(t, l, netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24"))
	buf := nvgre(4096, 1, 50)
	out := []Packet{
		{Buf: buf, N: len(buf), Dst: netip.MustParseAddr("203.0.113.9")}, // no route in the lab namespace
		{Buf: buf, N: len(buf), Dst: netip.MustParseAddr("fd00::9")},     // wrong family
		{Buf: buf, N: len(buf), Dst: sb.LocalAddr()},
	}
	n, err := sa.WriteBatch(out)
	if n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want 1, nil", n, err)
	}
	if st := sa.Stats(); st.Dropped != 2 {
		t.Errorf("Dropped = %d, want 2", st.Dropped)
	}
	if got := readAll(t, sb, 1, 2048)[0]; !bytes.Equal(got.Buf[:got.N], buf) {
		t.Errorf("the packet after the refused ones arrived as % x", got.Buf[:got.N])
	}
}

func TestGRECloseUnblocksRead(t *testing.T) {
	l := newLab(t)
	_, sb := listenPair(t, l, netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24"))
	pkts := packets(4, 2048)
	wantCloseUnblocks(t, func() error { _, err := sb.ReadBatch(pkts); return err }, sb.Close)
}

func TestGREBatchesDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items, so allocations are not representative")
	}
	l := newLab(t)
	sa, sb := listenPair(t, l, netip.MustParsePrefix("fd00:47::1/64"), netip.MustParsePrefix("fd00:47::2/64"))
	sa4, sb4 := listenPair(t, l, netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24"))
	for _, p := range [][2]*GRESocket{{sa, sb}, {sa4, sb4}} {
		out := make([]Packet, 8)
		for i := range out {
			out[i] = Packet{Buf: nvgre(4096, byte(i), 200), Dst: p[1].LocalAddr()}
			out[i].N = len(out[i].Buf)
		}
		in := packets(8, 2048)
		roundTrip := func() {
			if n, err := p[0].WriteBatch(out); n != len(out) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			for got := 0; got < len(out); {
				n, err := p[1].ReadBatch(in)
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
		}
		roundTrip() // resolves the neighbour
		if allocs := testing.AllocsPerRun(50, roundTrip); allocs != 0 {
			t.Errorf("%s: %.1f allocations per 8-packet round trip, want 0", p[0].LocalAddr(), allocs)
		}
	}
}

func TestListenGRERejectsUnusableAddresses(t *testing.T) {
	for _, a := range []string{"0.0.0.0", "::", "224.0.0.1", "fe80::1%eth0", "::ffff:198.18.0.1"} {
		if _, err := ListenGRE(netip.MustParseAddr(a), 0); err == nil {
			t.Errorf("ListenGRE(%s) succeeded, want an error", a)
		}
	}
}

// Workers share sockets: concurrent batches must not mix their vectors.
func TestGREConcurrentWriters(t *testing.T) {
	l := newLab(t)
	sa, sb := listenPair(t, l, netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24"))
	const writers, batches, perBatch = 4, 20, 8
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			out := make([]Packet, perBatch)
			for i := range out {
				out[i] = Packet{Buf: nvgre(4096+uint32(w), byte(w), 100+w*50), Dst: sb.LocalAddr()}
				out[i].N = len(out[i].Buf)
			}
			for range batches {
				if n, err := sa.WriteBatch(out); n != perBatch || err != nil {
					done <- fmt.Errorf("writer %d: WriteBatch = %d, %v", w, n, err)
					return
				}
				time.Sleep(time.Millisecond) // stay within the receive buffer
			}
			done <- nil
		}()
	}
	for range writers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, sb, writers*batches*perBatch, 2048)
	count := make(map[uint32]int)
	for _, p := range got {
		w := binary.BigEndian.Uint32(p.Buf[4:8])>>8 - 4096
		if !bytes.Equal(p.Buf[:p.N], nvgre(4096+w, byte(w), 100+int(w)*50)) {
			t.Fatalf("a packet of writer %d arrived altered: %d bytes", w, p.N)
		}
		count[w]++
	}
	for w := range uint32(writers) {
		if count[w] != batches*perBatch {
			t.Errorf("writer %d: %d packets arrived, want %d", w, count[w], batches*perBatch)
		}
	}
}
