package policyserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/wnv/wnv/bounded"
	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// serveBounded runs st behind Serve with lim on 127.0.0.1 and returns its
// URL.
func serveBounded(t *testing.T, st *Store, lim bounded.Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, NewHandler(st, quiet), nil, lim) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

// clientFrom is a policy client whose connections come from ip.
func clientFrom(t *testing.T, url, ip string) *policyclient.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c := policyclient.NewDialer(url, nil, d.DialContext)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestWatchStreamsBounded: with short timeouts, a watch stream outlives
// them while a request sending its body byte by byte is cut off; one
// client's watch streams beyond MaxWatchesPerClient get a 429 while
// another client still watches.
func TestWatchStreamsBounded(t *testing.T) {
	cli := startEtcd(t)
	st := NewStore(cli)
	st.MaxWatchesPerClient = 2
	url := serveBounded(t, st, bounded.Limits{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, MaxConns: 64, MaxConnsPerIP: 16})
	a, b := clientFrom(t, url, "127.0.0.1"), clientFrom(t, url, "127.0.0.2")
	provision(t, a)
	ctx := ctxT(t)

	// The first stream must never break: the client would resume it
	// silently, so its errors are kept.
	first, broken := make(chan policyapi.Event, 64), make(chan error, 64)
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	go func() {
		for ev, err := range a.Watch(fctx, 0) {
			if err != nil {
				broken <- err
			} else {
				first <- ev
			}
		}
	}()
	if ev := <-first; ev.Type != policyapi.EventProgress {
		t.Fatalf("first event %+v", ev)
	}

	// A slow body is cut off: by then the stream has lived longer than the
	// read and write timeouts.
	c, err := net.Dial("tcp", url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a safety net; the server acts first
	fmt.Fprintf(c, "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte{' '}); err != nil {
					return
				}
			}
		}
	}()
	_, err = io.Copy(io.Discard, c)
	close(stop)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("a request sending its body byte by byte was not cut off")
	}
	must(t)(a.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.5")}}))
	if ev := next(t, first); ev.VM == nil || ev.VM.Name != "blue1" {
		t.Fatalf("event on the long-lived stream: %+v", ev)
	}
	select {
	case err := <-broken:
		t.Fatalf("the long-lived stream broke: %v", err)
	default:
	}

	second := watch(t, a, 0)
	if ev := <-second; ev.Type != policyapi.EventProgress {
		t.Fatalf("second stream: %+v", ev)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, err := range a.Watch(wctx, 0) {
		var se *jsonapi.Error
		if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests ||
			se.Message != "client 127.0.0.1 already has 2 watch streams, the most one client may hold: close one before watching again" {
			t.Fatalf("third stream of a client: %v", err)
		}
		break
	}
	for ev, err := range b.Watch(wctx, 0) {
		if err != nil || ev.Type != policyapi.EventProgress {
			t.Fatalf("another client's stream: %+v %v", ev, err)
		}
		break
	}
}

// TestWatchReplayBounded: a watch from further back than MaxReplay
// revisions gets a resync instead of the history.
func TestWatchReplayBounded(t *testing.T) {
	cli := startEtcd(t)
	st := NewStore(cli)
	st.MaxReplay = 3
	c := policyclient.New(serveBounded(t, st, bounded.Default()), nil)
	t.Cleanup(c.CloseIdleConnections)
	provision(t, c)
	ctx := ctxT(t)
	p := must2(c.Policy(ctx, rdBlue))(t)
	var got []policyapi.Event
	for ev, err := range c.Watch(ctx, p.Revision-4) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != 1 || got[0].Type != policyapi.EventResync || got[0].Revision != p.Revision {
		t.Fatalf("events of a watch from too far back: %+v", got)
	}
	for ev, err := range c.Watch(ctx, p.Revision-3) {
		if err != nil || ev.Type != policyapi.EventProgress {
			t.Fatalf("watch within MaxReplay: %+v %v", ev, err)
		}
		break
	}
}
