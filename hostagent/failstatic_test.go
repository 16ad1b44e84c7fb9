package hostagent_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wnv/wnv/lab"
)

// pattern is the byte at offset off of the TCP transfer: every byte is
// checked on arrival.
func pattern(off uint64) byte { return byte(off*7 + off>>11) }

// transfer is a TCP transfer from one VM to another, paced so that it spans
// the whole test, with every byte checked by the receiver.
type transfer struct {
	sent, received atomic.Uint64
	stop           chan struct{}
	done           chan error // the receiver's verdict
	sender         chan error
}

func (tb *testbed) startTransfer(from, to string, addr netip.Addr) *transfer {
	tb.t.Helper()
	x := &transfer{stop: make(chan struct{}), done: make(chan error, 1), sender: make(chan error, 1)}
	var ln net.Listener
	must(tb.t, lab.InNamespace(tb.ns("v-"+to), func() (err error) {
		ln, err = net.Listen("tcp4", ":9000")
		return err
	}))
	tb.t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			x.done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			off := x.received.Load()
			for i := range n {
				if buf[i] != pattern(off+uint64(i)) {
					x.done <- errors.New("a byte of the transfer arrived corrupted")
					return
				}
			}
			x.received.Add(uint64(n))
			if errors.Is(err, io.EOF) {
				x.done <- nil
				return
			}
			if err != nil {
				x.done <- err
				return
			}
		}
	}()
	var c net.Conn
	must(tb.t, lab.InNamespace(tb.ns("v-"+from), func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(addr, 9000).String(), 5*time.Second)
		return err
	}))
	go func() {
		defer c.Close()
		// 32 KiB every millisecond: about 32 MB/s, a load that leaves the
		// two CPUs to the daemons.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		buf := make([]byte, 32<<10)
		for {
			select {
			case <-x.stop:
				x.sender <- nil
				return
			case <-tick.C:
			}
			off := x.sent.Load()
			for i := range buf {
				buf[i] = pattern(off + uint64(i))
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(buf); err != nil {
				x.sender <- err
				return
			}
			x.sent.Add(uint64(len(buf)))
		}
	}()
	return x
}

// stream sends a probe every millisecond until stop closes and returns how
// many it sent.
func (p *prober) stream(stop <-chan struct{}) (sent <-chan uint64) {
	out := make(chan uint64, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				p.mu.Lock()
				out <- p.last
				p.mu.Unlock()
				return
			case <-tick.C:
			}
			p.mu.Lock()
			p.last++
			seq := p.last
			p.mu.Unlock()
			p.send(seq)
		}
	}()
	return out
}

func (p *prober) echoed(from, to uint64) (n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := from; s <= to; s++ {
		if _, ok := p.seen[s]; ok {
			n++
		}
	}
	return n
}

// missing lists up to n sequence numbers from..to without an echo.
func (p *prober) missing(from, to uint64, n int) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for s := from; s <= to && len(out) < n; s++ {
		if _, ok := p.seen[s]; !ok {
			out = append(out, s)
		}
	}
	return out
}

func (p *prober) lastSent() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// TestKill9OfBothHostsLosesNothing kills both hosts' wnvd with SIGKILL while
// a 1 kHz UDP stream and a TCP transfer run between their VMs: the kernel
// goes on forwarding what was decided, so no probe is lost and every byte
// arrives; the restarted daemons adopt the pinned fast path (its counters go
// on from where they were), and a policy change afterwards takes effect.
func TestKill9OfBothHostsLosesNothing(t *testing.T) {
	if os.Getenv("WNV_FAST_PATH") == "off" {
		t.Skip("fail static is the kernel fast path's: WNV_FAST_PATH=off")
	}
	ctx := t.Context()
	tb, p := hostsAB(t, ctx, 2, false)
	x := tb.startTransfer("a", "b", netip.MustParseAddr("10.0.0.11"))
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop); close(x.stop) }) }
	defer halt()
	first := p.lastSent() + 1
	sentc := p.stream(stop)

	waitFor := func(what string, timeout time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, timeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Let both flows settle in the kernel (and the checkpoints be saved).
	waitFor("300 echoes before the kill", 15*time.Second, func() bool { return p.echoed(first, p.lastSent()) >= 300 })
	kernelBefore := map[string]uint64{}
	for _, h := range []string{"h1", "h2"} {
		cs, err := tb.provider(h).Counters(ctx)
		if err != nil || cs.Paths == nil {
			t.Fatalf("%s counters: %+v, %v", h, cs, err)
		}
		kernelBefore[h] = cs.Paths.KernelFromPorts
	}

	tb.kill("h1", syscall.SIGKILL)
	tb.kill("h2", syscall.SIGKILL)
	killed, bytesAtKill := p.lastSent(), x.received.Load()
	// Both daemons are gone for a while, past the slow path's lease: the
	// kernel alone carries the stream and the transfer.
	waitFor("1500 probes sent with both daemons dead", 20*time.Second, func() bool { return p.lastSent() >= killed+1500 })
	dead := p.echoed(killed+1, killed+1500)
	bytesDead := x.received.Load() - bytesAtKill
	t.Logf("with both wnvd dead: %d of 1500 probes echoed, %d bytes of the transfer arrived", dead, bytesDead)
	if dead < 1400 || bytesDead == 0 {
		t.Errorf("with both wnvd dead the kernel forwarded %d of 1500 probes and %d bytes, want (nearly) all", dead, bytesDead)
	}

	tb.startHost("h1", "198.18.0.1/15")
	tb.startHost("h2", "198.18.0.2/15")
	for _, h := range []string{"h1", "h2"} {
		tb.eventually(h+" restarted with its port", 20*time.Second, func() error {
			ports, err := tb.provider(h).Ports(ctx)
			if err != nil {
				return err
			}
			if len(ports) != 1 {
				return errors.New("no port yet")
			}
			return nil
		})
	}
	restarted := p.lastSent()
	waitFor("500 echoes after the restart", 20*time.Second, func() bool { return p.echoed(restarted+1, p.lastSent()) >= 500 })
	halt()
	last := <-sentc
	if err := <-x.sender; err != nil {
		t.Fatalf("TCP sender: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.echoed(first, last) != int(last-first+1) {
		if time.Now().After(deadline) {
			t.Fatalf("probes %d..%d (killed after %d, restarted after %d): not echoed: %v", first, last, killed, restarted, p.missing(first, last, 20))
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-x.done:
		if err != nil {
			t.Fatalf("TCP receiver: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the transfer did not end: %d of %d bytes arrived", x.received.Load(), x.sent.Load())
	}
	if x.received.Load() != x.sent.Load() {
		t.Fatalf("the transfer delivered %d of %d bytes", x.received.Load(), x.sent.Load())
	}
	t.Logf("%d probes, none lost; %d bytes transferred and checked", last-first+1, x.sent.Load())

	for _, h := range []string{"h1", "h2"} {
		cs, err := tb.provider(h).Counters(ctx)
		if err != nil || cs.Paths == nil {
			t.Fatalf("%s counters: %+v, %v", h, cs, err)
		}
		if cs.Paths.KernelFromPorts <= kernelBefore[h] {
			t.Errorf("%s: the kernel carried %d frames from ports after the restart, %d before the kill: the pinned fast path was not adopted",
				h, cs.Paths.KernelFromPorts, kernelBefore[h])
		}
	}

	// A policy change after the restart takes effect: a new VM is reachable.
	tb.addVM("c", "h1", 0x0c)
	tb.createVM(ctx, "c", "h1", 0x0c, "10.0.0.12")
	tb.configureVM("c", netip.MustParsePrefix("10.0.0.12/24"))
	tb.echo("c")
	tb.waitEcho("b reaches the new VM c after the restarts", tb.prober("b", netip.MustParseAddr("10.0.0.12")))
}
