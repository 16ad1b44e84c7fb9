package notify

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// startServer serves h on a fresh socket and stops it when the test ends.
func startServer(t *testing.T, h *Hub) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "notify.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s still exists after Serve returned", path)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return path
		}
	}
	t.Fatal("server socket never accepted")
	return ""
}

func openHandle(t *testing.T, path string) *Handle {
	t.Helper()
	h, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestServeSocketModeAndStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "notify.sock")
	// A socket file left by a dead server.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	hub, _ := newTestHub(8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, hub) }()
	var h *Handle
	for deadline := time.Now().Add(5 * time.Second); h == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		h, _ = Open(path)
	}
	if h == nil {
		t.Fatal("server never accepted")
	}
	defer h.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	if err := Serve(context.Background(), path, hub); err == nil {
		t.Fatal("a second server on a live socket started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("socket not removed on exit")
	}
	// The server closed the connection: pending requests complete with 995.
	_, err = h.RequestNotification(context.Background(), NewParam(RedirectType, make([]byte, RedirectSize)))
	if !errors.Is(err, ErrOperationAborted) {
		t.Fatalf("request after server exit: %v, want 995", err)
	}
}

func TestBlockingRequestGetsEventRaisedLater(t *testing.T) {
	hub, _ := newTestHub(64)
	h := openHandle(t, startServer(t, hub))
	go func() {
		time.Sleep(20 * time.Millisecond)
		hub.PolicyMismatch(5001, ca1, pa1)
	}()
	p := NewParam(PolicyMismatchType, make([]byte, 4*PolicyMismatchSize))
	n, err := h.RequestNotification(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePolicyMismatch(p.Buffer[:n])
	if err != nil || len(got) != 1 || got[0] != (PolicyMismatch{5001, ca1, pa1}) || p.PendingNotifications != 0 {
		t.Fatalf("got %v, %v, pending %d", got, err, p.PendingNotifications)
	}
}

func TestInvalidRequestsGet87(t *testing.T) {
	hub, _ := newTestHub(8)
	h := openHandle(t, startServer(t, hub))
	buf := make([]byte, 256)
	cases := map[string]*NotificationParam{
		"major 2":      {Header: ObjectHeader{2, 0, 256}, NotificationType: PolicyMismatchType, Buffer: buf},
		"minor 1":      {Header: ObjectHeader{1, 1, 256}, NotificationType: PolicyMismatchType, Buffer: buf},
		"short buffer": {Header: ObjectHeader{1, 0, PolicyMismatchSize - 1}, NotificationType: PolicyMismatchType, Buffer: buf},
		"short object": {Header: ObjectHeader{1, 0, ObjectChangeSize - 1}, NotificationType: ObjectChangeType, Buffer: buf},
		"type 3":       {Header: ObjectHeader{1, 0, 256}, NotificationType: NotificationTypeMax, Buffer: buf},
		"type -1":      {Header: ObjectHeader{1, 0, 256}, NotificationType: -1, Buffer: buf},
	}
	for name, p := range cases {
		_, err := h.RequestNotification(context.Background(), p)
		var pe *ParamError
		if !errors.Is(err, ErrInvalidParameter) || !errors.As(err, &pe) {
			t.Errorf("%s: err = %v, want ERROR_INVALID_PARAMETER", name, err)
		}
	}
	// One outstanding request per type: a second one is refused.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := h.RequestNotification(ctx, NewParam(RedirectType, make([]byte, RedirectSize)))
		first <- err
	}()
	waitPending(t, h, 1)
	if _, err := h.RequestNotification(context.Background(), NewParam(RedirectType, make([]byte, RedirectSize))); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("second outstanding redirect request: %v, want 87", err)
	}
	cancel()
	if err := <-first; !errors.Is(err, ErrOperationAborted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want 995 and context.Canceled", err)
	}
	// The slot is free again.
	hub.Redirect(5001, ca1, pa1, pa2)
	if _, err := h.RequestNotification(context.Background(), NewParam(RedirectType, make([]byte, RedirectSize))); err != nil {
		t.Fatalf("request after cancel: %v", err)
	}
}

// waitPending waits until the handle has n requests awaiting completion.
func waitPending(t *testing.T, h *Handle, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		h.mu.Lock()
		k := len(h.calls)
		h.mu.Unlock()
		if k == n {
			// Give the request frames time to reach the server.
			time.Sleep(20 * time.Millisecond)
			return
		}
	}
	t.Fatalf("handle never had %d pending requests", n)
}

func TestCloseCompletesPendingWith995Within100ms(t *testing.T) {
	hub, _ := newTestHub(8)
	h := openHandle(t, startServer(t, hub))
	var wg sync.WaitGroup
	errs := make([]error, NotificationTypeMax)
	for typ := range NotificationTypeMax {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[typ] = h.RequestNotification(context.Background(), NewParam(typ, make([]byte, 4096)))
		}()
	}
	waitPending(t, h, int(NotificationTypeMax))
	start := time.Now()
	h.Close()
	wg.Wait()
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("pending requests completed %v after Close, want < 100ms", d)
	}
	for typ, err := range errs {
		if !errors.Is(err, ErrOperationAborted) {
			t.Fatalf("%s request after Close: %v, want 995", NotificationType(typ), err)
		}
	}
	deadline := time.Now().Add(time.Second)
	for hub.Stats().OpenHandles != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := hub.Stats().OpenHandles; n != 0 {
		t.Fatalf("server still holds %d handles after the client closed", n)
	}
}

func TestShortBufferOverSocketReportsPending(t *testing.T) {
	hub, _ := newTestHub(64)
	h := openHandle(t, startServer(t, hub))
	for i := range 5 {
		hub.Redirect(uint32(5001+i), ca1, pa1, pa2)
	}
	p := NewParam(RedirectType, make([]byte, 2*RedirectSize+10))
	n, err := h.RequestNotification(context.Background(), p)
	if err != nil || n != 2*RedirectSize || p.PendingNotifications != 3 {
		t.Fatalf("got %d bytes, pending %d, err %v; want %d bytes, pending 3", n, p.PendingNotifications, err, 2*RedirectSize)
	}
	p = NewParam(RedirectType, make([]byte, 10*RedirectSize))
	n, err = h.RequestNotification(context.Background(), p)
	got, _ := DecodeRedirect(p.Buffer[:n])
	if err != nil || len(got) != 3 || got[0].VirtualSubnetID != 5003 || p.PendingNotifications != 0 {
		t.Fatalf("second request: %v, %v, pending %d", got, err, p.PendingNotifications)
	}
}

func TestEventsIteratorAllTypesAndOverflow(t *testing.T) {
	hub, _ := newTestHub(4)
	h := openHandle(t, startServer(t, hub))
	for i := range 6 {
		hub.Redirect(uint32(6000+i), ca1, pa1, pa2)
	}
	hub.PolicyMismatch(5001, netip.MustParseAddr("fd00::11"), netip.MustParseAddr("fd00::198:18:0:2"))
	hub.ProviderAddressChange(pa1, uint32(DADDuplicate))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var redirects, mismatches, changes int
	var overflow *OverflowError
	for ev, err := range h.Events(ctx) {
		if errors.As(err, &overflow) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case RedirectType:
			redirects++
		case PolicyMismatchType:
			mismatches++
			if ev.PolicyMismatch.CA != netip.MustParseAddr("fd00::11") {
				t.Fatalf("mismatch CA = %v", ev.PolicyMismatch.CA)
			}
		case ObjectChangeType:
			changes++
			if ev.ObjectChange.ProviderAddress.AddressState != DADDuplicate {
				t.Fatalf("object change = %+v", ev.ObjectChange.ProviderAddress)
			}
		}
		if redirects == 4 && mismatches == 1 && changes == 1 {
			break
		}
	}
	if redirects != 4 || mismatches != 1 || changes != 1 {
		t.Fatalf("saw %d redirects, %d mismatches, %d changes", redirects, mismatches, changes)
	}
	if overflow == nil || overflow.Type != RedirectType || overflow.Dropped != 2 {
		t.Fatalf("overflow = %+v, want 2 dropped redirects", overflow)
	}
	if d := h.Dropped(RedirectType); d != 2 {
		t.Fatalf("Handle.Dropped = %d, want 2", d)
	}
}

// A handle opened over the socket that never reads must not let a flood of
// unmatched packets grow memory.
func TestMemoryBoundedWithSilentSocketConsumer(t *testing.T) {
	clk := &fakeClock{}
	hub := NewHub(Config{Now: clk.Now})
	openHandle(t, startServer(t, hub))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 1_000_000 {
		k := uint32(i % 300_000)
		hub.PolicyMismatch(5001, netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}), pa1)
		clk.Advance(5 * time.Microsecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := hub.Stats().Types[PolicyMismatchType]
	t.Logf("heap growth %d bytes; stats %+v", growth, st)
	if growth > 4<<20 {
		t.Fatalf("heap grew by %d bytes, want < 4 MiB", growth)
	}
	if st.Dropped == 0 || st.Raised != 1_000_000 {
		t.Fatalf("stats %+v: want 1e6 raised and drops counted", st)
	}
}
