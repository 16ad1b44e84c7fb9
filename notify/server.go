package notify

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// DefaultSocket is where wnvd serves the notification API.
const DefaultSocket = "/run/wnv/notify.sock"

// Serve accepts notification API clients on a Unix socket at socketPath
// (mode 0660, its directory created if missing) until ctx is done, then
// closes every connection and removes the socket. A stale socket left by a
// dead server is replaced; one with a live server is an error.
func Serve(ctx context.Context, socketPath string, h *Hub) error {
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o755); err != nil {
		return fmt.Errorf("notify socket directory: %w", err)
	}
	if err := removeStale(socketPath); err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(socketPath, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("notify socket %s: %w", socketPath, err)
	}

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[*net.UnixConn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			ln.Close()
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("notify socket accept: %w", err)
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveConn(c, h)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

// removeStale deletes a socket file nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("notify socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("notify socket path %s exists and is not a socket: remove it or choose another path", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("notify socket %s is in use by a running server", path)
	}
	return os.Remove(path)
}

// conn is one client handle: a hub subscriber and at most one outstanding
// request per type.
type conn struct {
	c    *net.UnixConn
	sub  *Subscriber
	wmu  sync.Mutex
	mu   sync.Mutex
	reqs [NotificationTypeMax]*pendingReq
	bufs [NotificationTypeMax][]byte // completion frames, reused per type
	done chan struct{}
}

type pendingReq struct {
	id        uint32
	size      uint32
	cancel    chan struct{}
	cancelled bool
}

func serveConn(c *net.UnixConn, h *Hub) {
	cn := &conn{c: c, sub: h.Subscribe(), done: make(chan struct{})}
	var wg sync.WaitGroup
	defer func() {
		close(cn.done)
		c.Close()
		wg.Wait()
		cn.sub.Close()
	}()
	hi := hello{major: MajorVersion, minor: MinorVersion, depth: uint32(h.cfg.QueueDepth), windowNanos: uint64(h.cfg.DedupWindow)}
	if _, err := c.Write(appendHello(nil, hi)); err != nil {
		return
	}
	var lenb [4]byte
	body := make([]byte, maxClientFrame)
	for {
		if _, err := io.ReadFull(c, lenb[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(lenb[:])
		if n > maxClientFrame {
			slog.Debug("notify client sent an oversized frame; closing", "bytes", n)
			return
		}
		if _, err := io.ReadFull(c, body[:n]); err != nil {
			return
		}
		r, err := decodeRequest(body[:n])
		if err != nil {
			slog.Debug("notify client sent a malformed frame; closing", "err", err)
			return
		}
		switch r.op {
		case opCancel:
			cn.cancel(r.id)
		case opRequest:
			if err := validate(r.header, r.typ); err != nil {
				cn.complete(&completion{id: r.id, status: ErrInvalidParameter, typ: r.typ}, nil)
				continue
			}
			p := &pendingReq{id: r.id, size: r.header.Size, cancel: make(chan struct{})}
			cn.mu.Lock()
			busy := cn.reqs[r.typ] != nil
			if !busy {
				cn.reqs[r.typ] = p
			}
			cn.mu.Unlock()
			if busy {
				cn.complete(&completion{id: r.id, status: ErrInvalidParameter, typ: r.typ}, nil)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				cn.wait(r.typ, p)
			}()
		}
	}
}

func (cn *conn) cancel(id uint32) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	for _, p := range cn.reqs {
		if p != nil && p.id == id && !p.cancelled {
			p.cancelled = true
			close(p.cancel)
			return
		}
	}
}

// wait completes p once events of type t are queued, or with 995 when it is
// cancelled or the client goes away.
func (cn *conn) wait(t NotificationType, p *pendingReq) {
	rs := RecordSize(t)
	max := min(int(p.size), cn.sub.h.cfg.QueueDepth*rs)
	max -= max % rs
	buf := cn.bufs[t]
	if cap(buf) < completionFrame+max {
		buf = make([]byte, completionFrame+max)
		cn.bufs[t] = buf
	}
	buf = buf[:completionFrame+max]
	for {
		n, pending := cn.sub.Fill(t, buf[completionFrame:])
		if n > 0 {
			cn.finish(t)
			cn.complete(&completion{id: p.id, typ: t, pending: pending, dropped: cn.sub.Dropped(t)}, buf[:completionFrame+n])
			return
		}
		select {
		case <-cn.sub.Ready(t):
		case <-p.cancel:
			cn.finish(t)
			cn.complete(&completion{id: p.id, status: ErrOperationAborted, typ: t, dropped: cn.sub.Dropped(t)}, nil)
			return
		case <-cn.done:
			cn.finish(t)
			return
		}
	}
}

// finish frees the type's slot before the completion is sent, so that the
// client's next request of that type is never refused as a duplicate.
func (cn *conn) finish(t NotificationType) {
	cn.mu.Lock()
	cn.reqs[t] = nil
	cn.mu.Unlock()
}

// complete sends c; frame, if not nil, has room for the header before its
// payload.
func (cn *conn) complete(c *completion, frame []byte) {
	if frame == nil {
		var b [completionFrame]byte
		frame = b[:]
	}
	putCompletion(frame, c, len(frame)-completionFrame)
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if _, err := cn.c.Write(frame); err != nil {
		slog.Debug("notify completion not delivered", "err", err)
	}
}
