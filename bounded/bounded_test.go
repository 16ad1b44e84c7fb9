package bounded

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs a server with l whose handler reads the whole body and answers
// "ok", and returns its address.
func serve(t *testing.T, l Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := l.Server(context.Background(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok")
	}))
	go srv.Serve(l.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A safety net only: every wait below ends when the server acts.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	return c
}

// closedByServer reads until the server closes c, and fails if the safety
// deadline ends the read instead.
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept the connection open")
	}
}

// TestSlowBodyCutOff: a client sending its body byte by byte is cut off by
// ReadTimeout although it never stops sending.
func TestSlowBodyCutOff(t *testing.T) {
	addr := serve(t, Limits{ReadHeaderTimeout: time.Second, ReadTimeout: 300 * time.Millisecond})
	c := dialFrom(t, "127.0.0.1", addr)
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}
	}()
	closedByServer(t, c)
}

// TestSlowHeaderCutOff: a client that never finishes its header is cut off.
func TestSlowHeaderCutOff(t *testing.T) {
	addr := serve(t, Limits{ReadHeaderTimeout: 200 * time.Millisecond})
	c := dialFrom(t, "127.0.0.1", addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	closedByServer(t, c)
}

// TestIdleKeepAliveCutOff: a kept-alive connection without requests is
// closed by IdleTimeout.
func TestIdleKeepAliveCutOff(t *testing.T) {
	addr := serve(t, Limits{ReadHeaderTimeout: time.Second, IdleTimeout: 200 * time.Millisecond})
	c := dialFrom(t, "127.0.0.1", addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "ok" || resp.Close {
		t.Fatalf("answer %q, close %v: want a kept-alive ok", b, resp.Close)
	}
	_, err = br.ReadByte()
	var ne net.Error
	if !errors.Is(err, io.EOF) && !(errors.As(err, &ne) && !ne.Timeout()) {
		t.Fatalf("idle connection: %v, want it closed by the server", err)
	}
}

// TestConnCaps: beyond MaxConnsPerIP a client's next connection is closed at
// once while another address still connects; beyond MaxConns every
// address's is; closing a connection frees its slot.
func TestConnCaps(t *testing.T) {
	addr := serve(t, Limits{MaxConns: 3, MaxConnsPerIP: 2})
	get := func(c net.Conn) error {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != "ok" {
			err = errors.New("answer " + string(b))
		}
		return err
	}
	a1, a2 := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	for _, c := range []net.Conn{a1, a2} {
		if err := get(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := get(dialFrom(t, "127.0.0.1", addr)); err == nil {
		t.Fatal("a third connection from 127.0.0.1 was served")
	}
	if err := get(dialFrom(t, "127.0.0.2", addr)); err != nil {
		t.Fatalf("another address: %v", err)
	}
	if err := get(dialFrom(t, "127.0.0.3", addr)); err == nil {
		t.Fatal("a fourth connection in all was served")
	}
	a1.Close()
	// The slot is free once the server has seen a1 close: wait for that.
	for {
		err := get(dialFrom(t, "127.0.0.1", addr))
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "broken pipe") {
			t.Fatal(err)
		}
	}
}

// TestCounter: the caps of the pure counter.
func TestCounter(t *testing.T) {
	c := counter{max: 3, maxPer: 2, per: map[string]int{}}
	steps := []struct {
		ip   string
		want bool
	}{{"a", true}, {"a", true}, {"a", false}, {"b", true}, {"c", false}}
	for i, s := range steps {
		if got := c.take(s.ip); got != s.want {
			t.Fatalf("step %d take(%s) = %v", i, s.ip, got)
		}
	}
	c.give("a")
	if !c.take("c") || c.take("a") {
		t.Fatal("a freed slot went to the wrong address")
	}
	c.give("c")
	c.give("b")
	c.give("a")
	if c.total != 0 || len(c.per) != 0 {
		t.Fatalf("counts after giving back: %d %v", c.total, c.per)
	}
}
