package notify

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxServerFrame bounds a completion the client accepts.
	maxServerFrame = 16 << 20
	openTimeout    = 5 * time.Second
)

// SocketPath is the socket Open uses for "": $WNV_NOTIFY_SOCKET, else
// DefaultSocket.
func SocketPath() string {
	if p := os.Getenv("WNV_NOTIFY_SOCKET"); p != "" {
		return p
	}
	return DefaultSocket
}

// Handle is an open notification handle (WnvOpen). It is safe for
// concurrent use; post at most one request per type at a time.
type Handle struct {
	c       net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	nextID  uint32
	calls   map[uint32]*call
	dropped [NotificationTypeMax]atomic.Uint64
	closed  chan struct{}
	once    sync.Once
	reader  chan struct{}
}

type call struct {
	buf  []byte
	done chan completion
}

// Open connects to the notification API at socketPath ("" = SocketPath()).
func Open(socketPath string) (*Handle, error) {
	if socketPath == "" {
		socketPath = SocketPath()
	}
	c, err := net.Dial("unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("open notification socket: %w", err)
	}
	// The greeting means the server has subscribed this handle: every event
	// raised after Open returns reaches it.
	c.SetReadDeadline(time.Now().Add(openTimeout))
	var b [helloFrame]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("open notification socket %s: no greeting from the server: %w", socketPath, err)
	}
	hi, err := decodeHello(b[4:])
	if err == nil && hi.major != MajorVersion {
		err = fmt.Errorf("server API version %d.%d is not supported: this client speaks %d.%d", hi.major, hi.minor, MajorVersion, MinorVersion)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open notification socket %s: %w", socketPath, err)
	}
	c.SetReadDeadline(time.Time{})
	h := &Handle{c: c, calls: map[uint32]*call{}, closed: make(chan struct{}), reader: make(chan struct{})}
	go h.read()
	return h, nil
}

// read dispatches completions; when the connection ends, every outstanding
// request completes with ERROR_OPERATION_ABORTED.
func (h *Handle) read() {
	defer func() {
		h.mu.Lock()
		for id, c := range h.calls {
			delete(h.calls, id)
			c.done <- completion{id: id, status: ErrOperationAborted}
		}
		h.calls = nil
		h.mu.Unlock()
		close(h.reader)
	}()
	var lenb [4]byte
	var frame []byte
	for {
		if _, err := io.ReadFull(h.c, lenb[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(lenb[:])
		if n > maxServerFrame {
			return
		}
		if cap(frame) < int(n) {
			frame = make([]byte, n)
		}
		frame = frame[:n]
		if _, err := io.ReadFull(h.c, frame); err != nil {
			return
		}
		comp, err := decodeCompletion(frame)
		if err != nil {
			return
		}
		if comp.typ >= 0 && comp.typ < NotificationTypeMax && comp.status != ErrInvalidParameter {
			h.dropped[comp.typ].Store(comp.dropped)
		}
		h.mu.Lock()
		c := h.calls[comp.id]
		delete(h.calls, comp.id)
		h.mu.Unlock()
		if c == nil {
			continue
		}
		// Hand over the copy in the caller's buffer: frame is reused.
		comp.payload = c.buf[:copy(c.buf, comp.payload)]
		c.done <- comp
	}
}

// RequestNotification is WnvRequestNotification: it waits until at least one
// event of p.NotificationType is queued, fills p.Buffer[:p.Header.Size] with
// as many structures as fit, sets p.PendingNotifications to how many remain,
// and returns the bytes filled. Cancelling ctx abandons the request (the
// server completes it with ERROR_OPERATION_ABORTED); if events were already
// on their way they are returned normally. Errors match ErrInvalidParameter
// or ErrOperationAborted with errors.Is.
func (h *Handle) RequestNotification(ctx context.Context, p *NotificationParam) (uint32, error) {
	if p == nil {
		return 0, &ParamError{"NotificationParam is nil: pass a request"}
	}
	if int64(p.Header.Size) > int64(len(p.Buffer)) {
		return 0, &ParamError{fmt.Sprintf("Header.Size %d exceeds the %d-byte Buffer: set Size to at most len(Buffer)", p.Header.Size, len(p.Buffer))}
	}
	c := &call{buf: p.Buffer[:p.Header.Size], done: make(chan completion, 1)}
	h.mu.Lock()
	if h.calls == nil {
		h.mu.Unlock()
		return 0, ErrOperationAborted
	}
	h.nextID++
	id := h.nextID
	h.calls[id] = c
	h.mu.Unlock()
	if err := h.send(appendRequest(nil, id, p.Header, p.NotificationType)); err != nil {
		h.c.Close()
	}
	var comp completion
	select {
	case comp = <-c.done:
	case <-ctx.Done():
		if err := h.send(appendCancel(nil, id)); err != nil {
			h.c.Close()
		}
		comp = <-c.done
		if comp.status == ErrOperationAborted {
			return 0, fmt.Errorf("notification request cancelled: %w (%w)", ctx.Err(), ErrOperationAborted)
		}
	}
	switch comp.status {
	case ErrSuccess:
		p.PendingNotifications = comp.pending
		return uint32(len(comp.payload)), nil
	case ErrInvalidParameter:
		if err := validate(p.Header, p.NotificationType); err != nil {
			return 0, err
		}
		return 0, &ParamError{fmt.Sprintf("NotificationType %s already has a request outstanding on this handle: post one request per type", p.NotificationType)}
	default:
		return 0, comp.status
	}
}

func (h *Handle) send(b []byte) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	_, err := h.c.Write(b)
	return err
}

// Dropped is how many events of type t the server dropped for this handle
// because its queue was full, as of the last completion of that type. A
// change means events were lost: resync the full policy.
func (h *Handle) Dropped(t NotificationType) uint64 {
	if t < 0 || t >= NotificationTypeMax {
		return 0
	}
	return h.dropped[t].Load()
}

// Close closes the handle (CloseHandle); outstanding requests complete with
// ERROR_OPERATION_ABORTED.
func (h *Handle) Close() error {
	var err error
	h.once.Do(func() {
		err = h.c.Close()
		<-h.reader
	})
	return err
}

// Event is one decoded notification; exactly one of the pointers is set,
// matching Type.
type Event struct {
	Type           NotificationType
	PolicyMismatch *PolicyMismatch
	Redirect       *Redirect
	ObjectChange   *ObjectChange
}

// OverflowError reports that the server dropped events of Type for this
// handle (its queue was full): the consumer should resync the full policy.
// It does not end an Events sequence.
type OverflowError struct {
	Type    NotificationType
	Dropped uint64 // newly dropped since the last report
}

func (e *OverflowError) Error() string {
	return fmt.Sprintf("%d %s events were dropped because the handle's queue was full: resync the full policy", e.Dropped, e.Type)
}

// eventsPerRequest sizes the buffers Events posts.
const eventsPerRequest = 64

type batch struct {
	t       NotificationType
	buf     []byte
	dropped uint64
	err     error
}

// Events streams decoded events of the given types (all types if none), with
// one request in flight per type. Events of one type arrive in order. A
// *OverflowError is yielded when the server dropped events; any other error
// ends the sequence. Stop ranging (or cancel ctx) to withdraw the requests.
func (h *Handle) Events(ctx context.Context, types ...NotificationType) iter.Seq2[Event, error] {
	if len(types) == 0 {
		types = []NotificationType{PolicyMismatchType, RedirectType, ObjectChangeType}
	}
	return func(yield func(Event, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		ch := make(chan batch)
		var wg sync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
		}()
		for _, t := range types {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, eventsPerRequest*max(RecordSize(t), 1))
				for {
					n, err := h.RequestNotification(ctx, NewParam(t, buf))
					b := batch{t: t, buf: append([]byte(nil), buf[:n]...), dropped: h.Dropped(t), err: err}
					select {
					case ch <- b:
					case <-ctx.Done():
						return
					}
					if err != nil {
						return
					}
				}
			}()
		}
		var seen [NotificationTypeMax]uint64
		for {
			var b batch
			select {
			case b = <-ch:
			case <-ctx.Done():
				yield(Event{}, ctx.Err())
				return
			}
			if b.err != nil {
				yield(Event{}, b.err)
				return
			}
			if b.dropped > seen[b.t] {
				if !yield(Event{}, &OverflowError{Type: b.t, Dropped: b.dropped - seen[b.t]}) {
					return
				}
				seen[b.t] = b.dropped
			}
			evs, err := decodeEvents(b.t, b.buf)
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, e := range evs {
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}

// decodeEvents decodes a filled buffer of type t into Events.
func decodeEvents(t NotificationType, b []byte) ([]Event, error) {
	var out []Event
	switch t {
	case PolicyMismatchType:
		v, err := DecodePolicyMismatch(b)
		if err != nil {
			return nil, err
		}
		for i := range v {
			out = append(out, Event{Type: t, PolicyMismatch: &v[i]})
		}
	case RedirectType:
		v, err := DecodeRedirect(b)
		if err != nil {
			return nil, err
		}
		for i := range v {
			out = append(out, Event{Type: t, Redirect: &v[i]})
		}
	case ObjectChangeType:
		v, err := DecodeObjectChange(b)
		if err != nil {
			return nil, err
		}
		for i := range v {
			out = append(out, Event{Type: t, ObjectChange: &v[i]})
		}
	default:
		return nil, fmt.Errorf("NotificationType %d is unknown: use 0, 1 or 2", int32(t))
	}
	return out, nil
}
