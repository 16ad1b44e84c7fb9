package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// StreamOptions tunes Stream: one probe every Interval (default 1 ms, a
// 1 kHz stream) for Duration, or until Stop is closed if that comes first,
// then Linger (default 200 ms) for late answers.
type StreamOptions struct {
	Interval time.Duration
	Duration time.Duration
	Stop     <-chan struct{}
	Linger   time.Duration
	Source   netip.Addr
}

// Echo is one probe of a stream: when it was sent and, if answered, when the
// answer arrived and who sent it.
type Echo struct {
	Seq       int
	Sent      time.Time
	At        time.Time // zero when unanswered
	Responder string
}

// Answered reports whether the probe got its answer.
func (e Echo) Answered() bool { return !e.At.IsZero() }

// StreamResult is every probe of a stream, in sending order.
type StreamResult struct {
	Interval time.Duration
	Echoes   []Echo
}

// Stream sends numbered echo requests to the responder at to at a steady
// rate and records each answer with its arrival time. Probe i leaves at
// i*Interval after the start: a sender stalled by the scheduler catches up
// with a short burst, so the stream keeps its rate and its count. The socket
// is created at the start of the call (see UDP).
func Stream(ctx context.Context, to netip.AddrPort, opts StreamOptions) (StreamResult, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Millisecond
	}
	if opts.Duration <= 0 {
		return StreamResult{}, fmt.Errorf("stream Duration %v must be positive", opts.Duration)
	}
	if opts.Linger <= 0 {
		opts.Linger = 200 * time.Millisecond
	}
	var laddr *net.UDPAddr
	if opts.Source.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(opts.Source, 0))
	}
	c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(to))
	if err != nil {
		return StreamResult{}, fmt.Errorf("probe stream to %v: %w", to, err)
	}
	Deepen(c)
	n := int(opts.Duration/opts.Interval) + 1
	// The sender writes sent, the receiver at and who; the receiver is done
	// before they are read together.
	sent := make([]time.Time, 0, n)
	at := make([]time.Time, n)
	who := make([]string, n)
	nonce := make([]byte, 8)
	rand.Read(nonce)
	id := hex.EncodeToString(nonce)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			m, err := c.Read(buf)
			now := time.Now()
			if err != nil {
				if ne, ok := err.(net.Error); (ok && ne.Timeout()) || errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP errors while the path is broken
			}
			f := strings.Fields(string(buf[:m]))
			if len(f) != 4 || f[0] != magic || f[1] != id {
				continue
			}
			seq, err := strconv.Atoi(f[2])
			if err != nil || seq < 0 || seq >= n || !at[seq].IsZero() {
				continue
			}
			at[seq], who[seq] = now, f[3]
		}
	}()
	msg := make([]byte, 0, 64)
	start := time.Now()
	stopped := func() bool {
		select {
		case <-opts.Stop:
			return true
		default:
			return false
		}
	}
	for seq := 0; seq < n && ctx.Err() == nil && !stopped(); seq++ {
		if wait := time.Until(start.Add(time.Duration(seq) * opts.Interval)); wait > 0 {
			time.Sleep(wait)
		}
		msg = fmt.Appendf(msg[:0], "%s %s %d\n", magic, id, seq)
		sent = append(sent, time.Now())
		c.Write(msg) // errors (ICMP unreachable) count as unanswered probes
	}
	c.SetReadDeadline(time.Now().Add(opts.Linger))
	<-done
	c.Close()
	r := StreamResult{Interval: opts.Interval, Echoes: make([]Echo, len(sent))}
	for i := range sent {
		r.Echoes[i] = Echo{Seq: i, Sent: sent[i], At: at[i], Responder: who[i]}
	}
	return r, ctx.Err()
}

// Lost counts the unanswered probes.
func (r StreamResult) Lost() int {
	n := 0
	for _, e := range r.Echoes {
		if !e.Answered() {
			n++
		}
	}
	return n
}

// LostRuns lists the runs of consecutive unanswered probes as
// "FIRST-LAST@SENT" (sequence numbers, and the first one's sending time
// after the stream began), for a report of where a stream lost.
func (r StreamResult) LostRuns() []string {
	var runs []string
	for i := 0; i < len(r.Echoes); i++ {
		if r.Echoes[i].Answered() {
			continue
		}
		j := i
		for j+1 < len(r.Echoes) && !r.Echoes[j+1].Answered() {
			j++
		}
		runs = append(runs, fmt.Sprintf("%d-%d@%v", i, j, r.Echoes[i].Sent.Sub(r.Echoes[0].Sent).Round(time.Millisecond)))
		i = j
	}
	return runs
}

// Gap is the longest time without an answer: from the arrival of one answer
// to the arrival of the next, or from the first probe to the first answer.
type Gap struct {
	From, To time.Time
}

// Len is the gap's duration.
func (g Gap) Len() time.Duration { return g.To.Sub(g.From) }

// Blackout returns the longest gap between consecutive answers (in arrival
// order), counting from the first probe's sending time and up to the last
// probe's when the stream ends unanswered. With no answer at all it spans
// the whole stream.
func (r StreamResult) Blackout() Gap {
	if len(r.Echoes) == 0 {
		return Gap{}
	}
	prev := r.Echoes[0].Sent
	var best Gap
	var last time.Time
	for _, t := range r.arrivals() {
		if g := (Gap{From: prev, To: t}); g.Len() > best.Len() {
			best = g
		}
		prev, last = t, t
	}
	end := r.Echoes[len(r.Echoes)-1].Sent
	if last.IsZero() {
		return Gap{From: r.Echoes[0].Sent, To: end}
	}
	if g := (Gap{From: last, To: end}); g.Len() > best.Len() {
		best = g
	}
	return best
}

// arrivals are the answers' arrival times in order.
func (r StreamResult) arrivals() []time.Time {
	ts := make([]time.Time, 0, len(r.Echoes))
	for _, e := range r.Echoes {
		if e.Answered() {
			ts = append(ts, e.At)
		}
	}
	for i := 1; i < len(ts); i++ { // nearly sorted already: insertion sort
		for j := i; j > 0 && ts[j].Before(ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
	return ts
}

// Responders are the distinct responders in answering order.
func (r StreamResult) Responders() []string {
	var out []string
	for _, e := range r.Echoes {
		if e.Answered() && (len(out) == 0 || out[len(out)-1] != e.Responder) {
			out = append(out, e.Responder)
		}
	}
	return out
}
