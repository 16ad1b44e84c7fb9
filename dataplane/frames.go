package dataplane

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// frameFile is the batched frame I/O of a descriptor that carries one
// Ethernet frame per read and per write: a VM port's packet socket, or the
// GSO TAP. ReadBatch, WriteBatch and WriteOffload are safe for concurrent
// use.
type frameFile struct {
	f       *os.File
	rc      syscall.RawConn
	kind    string // "port" or "TAP", for errors
	name    string
	batches sync.Pool // *frameBatch
	dropped atomic.Uint64
	closed  atomic.Bool
	offload bool
}

// init takes over the non-blocking fd; os.NewFile registers it with the
// runtime poller.
func (t *frameFile) init(fd int, kind, name string, offload bool) error {
	t.f, t.kind, t.name, t.offload = os.NewFile(uintptr(fd), kind+":"+name), kind, name, offload
	t.batches.New = func() any {
		b := &frameBatch{frameCall: frameCall{t: t}}
		b.readFn, b.writeFn = b.readReady, b.writeReady
		return b
	}
	var err error
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.f.Close()
		return err
	}
	return nil
}

// frameCall is the progress of one call through RawConn, whose callback may
// run several times before the call is done.
type frameCall struct {
	t    *frameFile
	i, n int // next buffer, buffers done
	err  error
}

// result is the call's outcome once RawConn returned rcErr.
func (c *frameCall) result(op string, rcErr error) (int, error) {
	if rcErr == nil {
		rcErr = c.err
	}
	if rcErr != nil {
		return c.n, fmt.Errorf("%s %s %s: %w", op, c.t.kind, c.t.name, closedErr(&c.t.closed, rcErr))
	}
	return c.n, nil
}

// wrote accounts for the write of buffer i that failed with err (nil if it
// went through): frames the kernel refuses are dropped and counted. stop
// says the write callback must return ret now.
func (c *frameCall) wrote(err error) (ret, stop bool) {
	switch err {
	case nil:
		c.n++
		c.i++
	case unix.EINTR:
	case unix.EAGAIN:
		return false, true
	case unix.EBADF, unix.EBADFD:
		c.err = err
		return true, true
	default:
		c.t.dropped.Add(1)
		c.i++
	}
	return false, false
}

// frameBatch carries one ReadBatch or WriteBatch call.
type frameBatch struct {
	frameCall
	bufs    [][]byte
	sizes   []int
	readFn  func(uintptr) bool // bound once so batches do not allocate closures
	writeFn func(uintptr) bool
}

func (t *frameFile) batch(bufs [][]byte, sizes []int) *frameBatch {
	b := t.batches.Get().(*frameBatch)
	b.bufs, b.sizes, b.i, b.n, b.err = bufs, sizes, 0, 0, nil
	return b
}

// release returns b to the pool without pinning the caller's buffers.
func (t *frameFile) release(b *frameBatch) {
	b.bufs, b.sizes = nil, nil
	t.batches.Put(b)
}

// Stats counts what the I/O edge dropped on its own.
type Stats struct {
	Dropped   uint64 // writes the kernel refused (interface down, no buffers, no route, too big)
	Truncated uint64 // received GRE packets larger than the caller's buffer (a frame read cuts a frame short instead)
}

// Name is the interface's name.
func (t *frameFile) Name() string { return t.name }

// Stats returns the drop counters.
func (t *frameFile) Stats() Stats { return Stats{Dropped: t.dropped.Load()} }

// ReadBatch blocks until at least one frame is ready, then reads frames
// without blocking until none is ready or bufs is full. Frame i is
// bufs[i][:sizes[i]] (sizes must be as long as bufs); a buffer shorter than
// the frame gets the frame cut short, so size buffers for the MTU plus the
// Ethernet header. It returns the frames read, and any error after them.
func (t *frameFile) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	b := t.batch(bufs, sizes[:len(bufs)])
	defer t.release(b)
	return b.result("read", t.rc.Read(b.readFn))
}

func (b *frameBatch) readReady(fd uintptr) bool {
	for b.n < len(b.bufs) {
		n, err := rawRead(fd, b.bufs[b.n])
		switch err {
		case nil:
			b.sizes[b.n] = n
			b.n++
		case unix.EINTR:
		case unix.EAGAIN:
			return b.n > 0
		default:
			b.err = err
			return true
		}
	}
	return true
}

// WriteBatch sends each frame. Frames the kernel refuses (the interface is
// down, ENOBUFS, a malformed frame) are counted in Stats().Dropped and
// skipped. It returns the frames written; the error is nil unless the
// descriptor itself failed. A descriptor with offload takes WriteOffload:
// its frames need a virtio-net header in front.
func (t *frameFile) WriteBatch(bufs [][]byte) (int, error) {
	if t.offload {
		return 0, fmt.Errorf("write %s %s: frames need a virtio-net header: use WriteOffload", t.kind, t.name)
	}
	b := t.batch(bufs, nil)
	defer t.release(b)
	return b.result("write", t.rc.Write(b.writeFn))
}

func (b *frameBatch) writeReady(fd uintptr) bool {
	for b.i < len(b.bufs) {
		_, err := rawWrite(fd, b.bufs[b.i])
		if ret, stop := b.wrote(err); stop {
			return ret
		}
	}
	return true
}

// closeFile closes the descriptor, waking a ReadBatch blocked on it.
func (t *frameFile) closeFile() error {
	t.closed.Store(true)
	return t.f.Close()
}

// closedErr turns RawConn's internal "file closing" error into os.ErrClosed,
// which callers can test for.
func closedErr(closed *atomic.Bool, err error) error {
	if closed.Load() {
		return os.ErrClosed
	}
	return err
}
