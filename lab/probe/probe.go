// Package probe is the lab's traffic tool: a responder that answers UDP echoes
// and sinks TCP streams with its own name, so a client learns not only that an
// address answered but which VM did. A TCP stream's bytes are pseudo-random
// and the responder confirms their SHA-256, so every byte is checked. It works
// for IPv4 and IPv6 alike.
package probe

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Port is the UDP and TCP port of the responder.
const Port = 7007

const magic = "WNVPROBE"

// Serve answers probes as name on UDP and TCP port (normally Port), on every
// address of the current network namespace, until ctx is done.
func Serve(ctx context.Context, name string, port int, log *slog.Logger) error {
	if name == "" || strings.ContainsAny(name, " \n") {
		return fmt.Errorf("responder name %q is invalid: use a non-empty name without spaces", name)
	}
	pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
	if err != nil {
		return fmt.Errorf("listen on UDP port %d: %w", port, err)
	}
	Deepen(pc.(*net.UDPConn))
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		pc.Close()
		return fmt.Errorf("listen on TCP port %d: %w", port, err)
	}
	go func() {
		<-ctx.Done()
		pc.Close()
		ln.Close()
	}()
	log.Info("probe responder listening", "name", name, "port", port)
	errc := make(chan error, 2)
	go func() { errc <- serveUDP(pc, name) }()
	go func() { errc <- serveTCP(ctx, ln, name, log) }()
	err = <-errc
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func serveUDP(pc net.PacketConn, name string) error {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		req := string(buf[:n])
		if !strings.HasPrefix(req, magic+" ") {
			continue
		}
		reply := strings.TrimRight(req, "\n") + " " + name + "\n"
		pc.WriteTo([]byte(reply), from)
	}
}

func serveTCP(ctx context.Context, ln net.Listener, name string, log *slog.Logger) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil {
				log.Warn("tcp probe stream failed", "from", c.RemoteAddr(), "bytes", n, "err", err)
				return
			}
			fmt.Fprintf(c, "%s %s %d %x\n", magic, name, n, h.Sum(nil))
			log.Info("tcp probe stream", "from", c.RemoteAddr(), "bytes", n)
		}()
	}
}

// Reply is one answered UDP probe.
type Reply struct {
	Seq       int
	Responder string
	From      netip.AddrPort
	RTT       time.Duration
}

// Answer is the outcome of probing one address: its reply, or nil when
// nothing answered. The guest's wnv-probe prints it for the lab.
type Answer struct {
	Addr  netip.Addr
	Reply *Reply
}

// UDPOptions tunes UDP: Count probes, each waiting up to Timeout for its
// answer; Source optionally binds the client to one of its addresses.
type UDPOptions struct {
	Count   int
	Timeout time.Duration
	Source  netip.Addr
}

// UDP sends opts.Count echo requests to the responder at to, one after the
// other, and returns the answered ones. Socket creation happens at the start
// of the call, so a caller may run it on a thread switched into a VM's network
// namespace.
func UDP(ctx context.Context, to netip.AddrPort, opts UDPOptions) ([]Reply, error) {
	if opts.Count <= 0 {
		opts.Count = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	var laddr *net.UDPAddr
	if opts.Source.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(opts.Source, 0))
	}
	c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(to))
	if err != nil {
		return nil, fmt.Errorf("probe %v: %w", to, err)
	}
	defer c.Close()
	nonce := make([]byte, 8)
	rand.Read(nonce)
	id := hex.EncodeToString(nonce)
	var replies []Reply
	buf := make([]byte, 2048)
	for seq := 1; seq <= opts.Count; seq++ {
		if ctx.Err() != nil {
			return replies, ctx.Err()
		}
		start := time.Now()
		if _, err := fmt.Fprintf(c, "%s %s %d\n", magic, id, seq); err != nil {
			// An unreachable answer (ICMP) surfaces here or on read: not answered.
			continue
		}
		deadline := start.Add(opts.Timeout)
		for {
			c.SetReadDeadline(deadline)
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				// ECONNREFUSED and friends from ICMP errors: wait out the slot so
				// the count paces the same way, but record no answer.
				time.Sleep(time.Until(deadline))
				break
			}
			f := strings.Fields(string(buf[:n]))
			if len(f) != 4 || f[0] != magic || f[1] != id || f[2] != strconv.Itoa(seq) {
				continue
			}
			replies = append(replies, Reply{Seq: seq, Responder: f[3], From: from, RTT: time.Since(start)})
			break
		}
	}
	return replies, nil
}

// Transfer is the result of one TCP stream.
type Transfer struct {
	Responder string
	Bytes     int64
	Elapsed   time.Duration
}

// Mbps is the goodput in megabits per second.
func (t Transfer) Mbps() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Bytes) * 8 / t.Elapsed.Seconds() / 1e6
}

// TCP streams n pseudo-random bytes to the responder at to and returns who
// received them; it fails unless the responder confirms all n bytes, with
// their SHA-256, within timeout.
func TCP(ctx context.Context, to netip.AddrPort, n int64, source netip.Addr, timeout time.Duration) (Transfer, error) {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{}
	if source.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(source, 0))
	}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", to.String())
	if err != nil {
		return Transfer{}, fmt.Errorf("tcp probe to %v: %w", to, err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	var seed [32]byte
	rand.Read(seed[:])
	src, h := mrand.NewChaCha8(seed), sha256.New()
	chunk := make([]byte, 64<<10)
	for left := n; left > 0; {
		m := min(left, int64(len(chunk)))
		src.Read(chunk[:m])
		h.Write(chunk[:m])
		w, err := c.Write(chunk[:m])
		left -= int64(w)
		if err != nil {
			return Transfer{}, fmt.Errorf("tcp probe to %v after %d of %d bytes: %w", to, n-left, n, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return Transfer{}, fmt.Errorf("tcp probe to %v: %w", to, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return Transfer{}, fmt.Errorf("tcp probe to %v: no confirmation from the responder: %w", to, err)
	}
	elapsed := time.Since(start)
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != magic {
		return Transfer{}, fmt.Errorf("tcp probe to %v: malformed confirmation %q", to, line)
	}
	got, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || got != n {
		return Transfer{}, fmt.Errorf("tcp probe to %v: responder %s confirmed %s of %d bytes", to, f[1], f[2], n)
	}
	if want := hex.EncodeToString(h.Sum(nil)); f[3] != want {
		return Transfer{}, fmt.Errorf("tcp probe to %v: responder %s received other bytes than were sent (SHA-256 %s, want %s)", to, f[1], f[3], want)
	}
	return Transfer{Responder: f[1], Bytes: n, Elapsed: elapsed}, nil
}
