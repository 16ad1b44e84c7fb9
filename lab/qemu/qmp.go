package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// qmp is a minimal QEMU Machine Protocol client: one command at a time over
// the unix socket, and waiting for an event. QMP is line-delimited JSON, which
// is all the lab needs (migrate, query-migrate, query-status, cont, quit).
type qmp struct {
	mu     sync.Mutex
	c      net.Conn
	r      *bufio.Reader
	id     int
	events []qmpMsg // read while waiting for a command's answer, oldest first
}

// maxEvents bounds the events kept for waitEvent.
const maxEvents = 64

type qmpMsg struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	ID    *int            `json:"id"`
}

// dialQMP connects, reads the greeting and leaves capabilities negotiation
// mode, after which commands are accepted.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	q := &qmp{c: c, r: bufio.NewReader(c)}
	if err := q.withDeadline(ctx, func() error {
		var greet qmpMsg
		if err := q.read(&greet); err != nil {
			return err
		}
		if greet.QMP == nil {
			return fmt.Errorf("no QMP greeting")
		}
		return nil
	}); err != nil {
		c.Close()
		return nil, fmt.Errorf("QMP greeting on %s: %w", path, err)
	}
	if _, err := q.do(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) read(m *qmpMsg) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	*m = qmpMsg{}
	return json.Unmarshal(line, m)
}

// withDeadline bounds fn by ctx: its deadline (or 30 s) and its cancellation.
func (q *qmp) withDeadline(ctx context.Context, fn func() error) error {
	return q.within(ctx, 30*time.Second, fn)
}

// within bounds fn by ctx: its deadline (or limit) and its cancellation.
func (q *qmp) within(ctx context.Context, limit time.Duration, fn func() error) error {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(limit)
	}
	q.c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { q.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err := fn()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The socket's deadline may fire before the context's own timer does.
	if ok && errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}

// do runs one command and returns its "return" value.
func (q *qmp) do(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.id++
	id := q.id
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var ret json.RawMessage
	err = q.withDeadline(ctx, func() error {
		if _, err := q.c.Write(append(b, '\n')); err != nil {
			return err
		}
		for {
			var m qmpMsg
			if err := q.read(&m); err != nil {
				return err
			}
			if m.Event != "" {
				q.keep(m)
				continue
			}
			if m.ID == nil || *m.ID != id {
				continue
			}
			if m.Error != nil {
				return fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
			}
			ret = m.Return
			return nil
		}
	})
	if err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	return ret, nil
}

func (q *qmp) keep(m qmpMsg) {
	if len(q.events) == maxEvents {
		q.events = q.events[1:]
	}
	q.events = append(q.events, m)
}

// waitEvent returns the data of the next event called name, waiting up to
// ctx's deadline or 10 minutes. Events read before are considered first.
func (q *qmp) waitEvent(ctx context.Context, name string) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, m := range q.events {
		if m.Event == name {
			q.events = q.events[i+1:]
			return m.Data, nil
		}
	}
	q.events = q.events[:0]
	var data json.RawMessage
	err := q.within(ctx, 10*time.Minute, func() error {
		for {
			var m qmpMsg
			if err := q.read(&m); err != nil {
				return err
			}
			if m.Event == name {
				data = m.Data
				return nil
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("QMP: waiting for event %s: %w", name, err)
	}
	return data, nil
}

func (q *qmp) Close() error { return q.c.Close() }
