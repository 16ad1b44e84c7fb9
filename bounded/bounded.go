// Package bounded holds the limits every HTTP listener of wnv serves with:
// timeouts that cut off slow and idle clients, and caps on the connections
// of a listener and of each client address, so that no remote party can hold
// a server's goroutines and descriptors without end.
package bounded

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits of one listener. A zero duration or count means no limit.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's header, ReadTimeout the
	// whole request with its body: a client sending byte by byte is cut off.
	ReadHeaderTimeout, ReadTimeout time.Duration
	// WriteTimeout bounds writing an answer; a stream (see Streaming) gets it
	// for each write instead.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection without requests.
	IdleTimeout time.Duration
	// MaxConns caps the open connections of the listener, MaxConnsPerIP
	// those from one client address; a connection beyond either is closed
	// at once.
	MaxConns, MaxConnsPerIP int
}

// Default are the limits of wnv's HTTP listeners unless configured.
func Default() Limits {
	return Limits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 90 * time.Second, MaxConns: 4096, MaxConnsPerIP: 64}
}

type limitsKey struct{}

// Server returns an http.Server for h with l's timeouts, whose requests'
// contexts derive from base.
func (l Limits) Server(base context.Context, h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeaderTimeout, ReadTimeout: l.ReadTimeout,
		WriteTimeout: l.WriteTimeout, IdleTimeout: l.IdleTimeout,
		BaseContext: func(net.Listener) context.Context { return context.WithValue(base, limitsKey{}, l) }}
}

// Streaming prepares a long-lived answer such as a watch stream: it lifts
// the request's read deadline (the server still notices a client that goes
// away) and returns the function to call before each write, which gives that
// write the server's WriteTimeout, so a stream lives as long as its client
// keeps reading.
func Streaming(w http.ResponseWriter, r *http.Request) (beforeWrite func() error) {
	l, ok := r.Context().Value(limitsKey{}).(Limits)
	if !ok || l.WriteTimeout == 0 && l.ReadTimeout == 0 {
		return func() error { return nil }
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		return func() error { return err }
	}
	return func() error {
		var d time.Time
		if l.WriteTimeout > 0 {
			d = time.Now().Add(l.WriteTimeout)
		}
		return rc.SetWriteDeadline(d)
	}
}

// Listener wraps ln with l's connection caps.
func (l Limits) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, count: counter{max: l.MaxConns, maxPer: l.MaxConnsPerIP, per: map[string]int{}}}
}

type listener struct {
	net.Listener
	mu    sync.Mutex
	count counter
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		ln.mu.Lock()
		ok := ln.count.take(ip)
		ln.mu.Unlock()
		if ok {
			return &conn{Conn: c, release: func() { ln.mu.Lock(); ln.count.give(ip); ln.mu.Unlock() }}, nil
		}
		c.Close()
	}
}

// addrOf is the client address a connection counts against: the IP of a
// TCP peer, "" for a Unix socket's.
func addrOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return ""
}

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// counter counts open connections, in all and per address; it is not safe
// for concurrent use.
type counter struct {
	max, maxPer, total int
	per                map[string]int
}

// take counts a connection from ip, or reports false when a cap is reached.
func (c *counter) take(ip string) bool {
	if c.max > 0 && c.total >= c.max || c.maxPer > 0 && c.per[ip] >= c.maxPer {
		return false
	}
	c.total++
	c.per[ip]++
	return true
}

// give uncounts a connection from ip.
func (c *counter) give(ip string) {
	c.total--
	if c.per[ip]--; c.per[ip] == 0 {
		delete(c.per, ip)
	}
}
