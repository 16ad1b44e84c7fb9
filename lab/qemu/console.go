package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// console is the host's end of the guest's serial port: everything the guest
// prints is kept (the most recent part) and copied to a log file, and waiters
// are woken whenever it grows.
type console struct {
	c      net.Conn
	exited <-chan struct{}

	mu      sync.Mutex
	buf     []byte
	base    int64         // offset of buf[0] in the whole output
	changed chan struct{} // closed and replaced when buf grows or the stream ends
	eof     bool
}

// Bounds of the kept output: enough for any command's output, bounded for a
// guest that prints forever.
const (
	consoleKeep = 1 << 20
	consoleMax  = 4 << 20
)

// newConsole starts reading the guest's output. When reattaching, the
// output the previous client logged is kept as if it had been read now: it
// holds the guest's ready line.
func newConsole(c net.Conn, logPath string, reattach bool, exited <-chan struct{}) *console {
	k := &console{c: c, exited: exited, changed: make(chan struct{})}
	mode := os.O_TRUNC
	if reattach {
		mode = os.O_APPEND
		if b, err := os.ReadFile(logPath); err == nil {
			k.buf = b[max(len(b)-consoleKeep, 0):]
		}
	}
	logf, _ := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|mode, 0o644)
	go k.read(logf)
	return k
}

func (k *console) read(logf *os.File) {
	if logf != nil {
		defer logf.Close()
	}
	b := make([]byte, 32<<10)
	for {
		n, err := k.c.Read(b)
		k.mu.Lock()
		if n > 0 {
			if logf != nil {
				logf.Write(b[:n])
			}
			k.buf = append(k.buf, b[:n]...)
			if len(k.buf) > consoleMax {
				cut := len(k.buf) - consoleKeep
				k.buf = append(k.buf[:0], k.buf[cut:]...)
				k.base += int64(cut)
			}
		}
		if err != nil {
			k.eof = true
		}
		close(k.changed)
		k.changed = make(chan struct{})
		k.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// end is the offset just past the output so far.
func (k *console) end() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.base + int64(len(k.buf))
}

// wait calls match with the output from offset from on (or the oldest kept)
// until it returns true, whenever the output grows. It fails when ctx ends,
// the console closes or QEMU exits.
func (k *console) wait(ctx context.Context, from int64, match func([]byte) bool) error {
	for {
		k.mu.Lock()
		i := max(from-k.base, 0)
		ok := match(k.buf[min(i, int64(len(k.buf))):])
		changed, eof := k.changed, k.eof
		k.mu.Unlock()
		if ok {
			return nil
		}
		if eof {
			return errors.New("console closed")
		}
		select {
		case <-changed:
		case <-k.exited:
			// Let the reader drain what QEMU printed last.
			select {
			case <-changed:
			case <-ctx.Done():
				return ctx.Err()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (k *console) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.ReplaceAll(string(k.buf), "\r", "")
}

func (k *console) Close() error { return k.c.Close() }

// WaitReady waits until the guest's init reports eth0 configured and the
// probe responder listening. For an Incoming VM it waits until a migration
// has arrived and the guest runs.
func (v *VM) WaitReady(ctx context.Context) error {
	if v.cfg.Incoming {
		return v.waitStatus(ctx, "running")
	}
	var failed string
	err := v.con.wait(ctx, 0, func(out []byte) bool {
		// Whole lines only: the reason may still be arriving.
		lines := bytes.Split(out, []byte("\n"))
		for _, l := range lines[:len(lines)-1] {
			l = bytes.TrimSpace(l)
			if bytes.HasPrefix(l, []byte(ReadyLine)) {
				return true
			}
			if bytes.HasPrefix(l, []byte(failedLine)) {
				failed = string(l)
				return true
			}
		}
		return false
	})
	switch {
	case failed != "":
		return fmt.Errorf("VM %s: guest set-up failed: %s", v.cfg.Name, strings.TrimSpace(strings.TrimPrefix(failed, failedLine)))
	case err != nil:
		return fmt.Errorf("VM %s is not ready: %w%s%s", v.cfg.Name, err, errSuffix(v.whyNot()), lastLines(v.Console(), 5))
	}
	return nil
}

// whyNot explains a failed wait by QEMU's exit, if it exited.
func (v *VM) whyNot() error {
	select {
	case <-v.exited:
		return v.exitError()
	default:
		return nil
	}
}

func lastLines(s string, n int) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "; the console is empty"
	}
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return "; the console ends:\n" + strings.Join(l, "\n")
}

// maxCommand keeps the console line (the command base64-encoded plus the
// markers) under the tty's 4096-byte line limit.
const maxCommand = 2800

// Run runs cmd with the guest's sh on the serial console (after WaitReady)
// and returns what it printed, stdout and stderr together. It fails with an
// *ExitError if the command exits non-zero; the output is returned then too.
func (v *VM) Run(ctx context.Context, cmd string) (string, error) {
	if len(cmd) > maxCommand {
		return "", fmt.Errorf("VM %s: command of %d bytes is too long for the console: keep it under %d", v.cfg.Name, len(cmd), maxCommand)
	}
	v.runMu.Lock()
	defer v.runMu.Unlock()
	nonce := make([]byte, 6)
	rand.Read(nonce)
	id := hex.EncodeToString(nonce)
	begin, end := "WNV-RUN-"+id+"-B", "WNV-RUN-"+id+"-E "
	// The command travels base64-encoded, so no quoting can break the line,
	// and runs in its own sh with stdin from /dev/null, so neither a syntax
	// error nor a command reading stdin disturbs the console's shell. The
	// markers are split by '' on the line so that, should the tty echo the
	// line, the echo does not look like the markers.
	line := fmt.Sprintf("echo WNV-RUN-''%s-B; sh -c \"$(echo %s | base64 -d)\" </dev/null 2>&1; echo WNV-RUN-''%s-E $?\n",
		id, base64.StdEncoding.EncodeToString([]byte(cmd)), id)
	from := v.con.end()
	if _, err := io.WriteString(v.con.c, line); err != nil {
		return "", fmt.Errorf("VM %s: write to the console: %w", v.cfg.Name, err)
	}
	var out string
	status := -1
	err := v.con.wait(ctx, from, func(b []byte) bool {
		s := strings.ReplaceAll(string(b), "\r", "")
		i := strings.Index(s, begin+"\n")
		if i < 0 {
			return false
		}
		s = s[i+len(begin)+1:]
		j := strings.Index(s, end)
		if j < 0 {
			return false
		}
		rest, _, ok := strings.Cut(s[j+len(end):], "\n")
		if !ok {
			return false
		}
		st, err := strconv.Atoi(strings.TrimSpace(rest))
		if err != nil {
			return false
		}
		out, status = s[:j], st
		return true
	})
	if err != nil {
		return "", fmt.Errorf("VM %s: run %q: %w%s", v.cfg.Name, cmd, err, errSuffix(v.whyNot()))
	}
	if status != 0 {
		return out, &ExitError{VM: v.cfg.Name, Cmd: cmd, Status: status, Output: out}
	}
	return out, nil
}

// ExitError is Run's error for a command that exited with a non-zero status.
type ExitError struct {
	VM, Cmd string
	Status  int
	Output  string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("VM %s: %q exited with status %d: %s", e.VM, e.Cmd, e.Status, lastLine(e.Output))
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no output"
	}
	return s
}
