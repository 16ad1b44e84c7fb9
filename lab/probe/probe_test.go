package probe

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort finds a port that is free for both UDP and TCP on loopback.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port for both UDP and TCP")
	return 0
}

func startServer(t *testing.T, name string) int {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, name, port, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	})
	// Wait until the TCP listener accepts, which implies UDP is bound too.
	for range 100 {
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			c.Close()
			return port
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("responder did not start")
	return 0
}

func TestUDPNamesTheResponderOverIPv4AndIPv6(t *testing.T) {
	port := startServer(t, "blue2")
	for _, a := range []string{"127.0.0.1", "::1"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port))
		replies, err := UDP(context.Background(), to, UDPOptions{Count: 3, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 3 {
			t.Fatalf("%v: %d replies, want 3", to, len(replies))
		}
		for i, r := range replies {
			if r.Responder != "blue2" || r.Seq != i+1 || r.RTT <= 0 || r.From.Addr().Unmap() != to.Addr() {
				t.Errorf("%v: reply %d = %+v, want blue2 seq %d from %v", to, i, r, i+1, to.Addr())
			}
		}
	}
}

func TestUDPWithoutResponderGetsNoReplies(t *testing.T) {
	port := freePort(t)
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	start := time.Now()
	replies, err := UDP(context.Background(), to, UDPOptions{Count: 2, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 0 {
		t.Fatalf("got %d replies from a closed port, want 0", len(replies))
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("two probes with 100ms timeouts took %v", time.Since(start))
	}
}

func TestUDPIgnoresForeignAnswers(t *testing.T) {
	// A responder that answers with the wrong nonce must not count.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(magic+" 0000000000000000 1 impostor\n"), from)
		}
	}()
	to := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	replies, err := UDP(context.Background(), to, UDPOptions{Count: 1, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 0 {
		t.Fatalf("accepted %+v, want no replies", replies)
	}
}

func TestTCPMovesEveryByteToTheNamedResponder(t *testing.T) {
	port := startServer(t, "blue3")
	for _, a := range []string{"127.0.0.1", "::1"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port))
		const n = 5<<20 + 17
		tr, err := TCP(context.Background(), to, n, netip.Addr{}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Responder != "blue3" || tr.Bytes != n || tr.Mbps() <= 0 {
			t.Errorf("%v: transfer = %+v, want blue3 with %d bytes", to, tr, n)
		}
	}
}

func TestTCPFailsWhenTheBytesDiffer(t *testing.T) {
	// A sink that counts right but received other bytes, as a stream
	// corrupted on the way would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "%s liar %d %x\n", magic, n, sha256.Sum256(make([]byte, n)))
			c.Close()
		}
	}()
	to := ln.Addr().(*net.TCPAddr).AddrPort()
	_, err = TCP(context.Background(), to, 100000, netip.Addr{}, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "other bytes") {
		t.Fatalf("TCP to a sink whose SHA-256 differs = %v, want an error saying it received other bytes", err)
	}
}

func TestTCPToClosedPortFails(t *testing.T) {
	port := freePort(t)
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	if _, err := TCP(context.Background(), to, 10, netip.Addr{}, time.Second); err == nil {
		t.Fatal("TCP to a closed port succeeded")
	}
}

func TestServeRejectsBadName(t *testing.T) {
	if err := Serve(context.Background(), "two words", 0, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Fatal("Serve accepted a name with a space")
	}
}
