package dataplane

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/offload"
)

// tunOffloads are what an offload TAP lets its writer leave to the kernel:
// checksums and TCP segmentation over IPv4 and IPv6 (TUN_F_TSO_ECN is left
// out, so no ECN super-frames).
const tunOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

// Offload reports whether frames carry a virtio-net header.
func (t *frameFile) Offload() bool { return t.offload }

// OffloadFrame is one frame for WriteOffload: the virtio-net header, the
// frame (Head) and, for a coalesced super-frame, the payloads of the segments
// that follow it (Tail).
type OffloadFrame struct {
	Hdr  offload.VirtioNetHdr
	Head []byte
	Tail [][]byte
}

// offloadBatch carries one WriteOffload call through RawConn.
type offloadBatch struct {
	frameCall
	frames  []OffloadFrame
	hdr     [offload.VirtioNetHdrLen]byte
	iovs    []unix.Iovec
	writeFn func(uintptr) bool
}

var offloadBatches = sync.Pool{New: func() any {
	b := &offloadBatch{}
	b.writeFn = b.writeReady
	return b
}}

// WriteOffload sends each frame with its virtio-net header, one writev per
// frame so coalesced payloads are not copied. Frames the kernel refuses are
// counted in Stats().Dropped and skipped. It returns the frames written; the
// error is nil unless the descriptor itself failed.
func (t *frameFile) WriteOffload(frames []OffloadFrame) (int, error) {
	if !t.offload {
		return 0, fmt.Errorf("write %s %s: it was opened without offload", t.kind, t.name)
	}
	b := offloadBatches.Get().(*offloadBatch)
	b.t, b.frames, b.i, b.n, b.err = t, frames, 0, 0, nil
	defer func() {
		b.t, b.frames = nil, nil
		clear(b.iovs)
		offloadBatches.Put(b)
	}()
	return b.result("write", t.rc.Write(b.writeFn))
}

func (b *offloadBatch) writeReady(fd uintptr) bool {
	for b.i < len(b.frames) {
		f := &b.frames[b.i]
		f.Hdr.Put(b.hdr[:])
		b.iovs = b.iovs[:0]
		b.iovs = appendIovec(b.iovs, b.hdr[:])
		b.iovs = appendIovec(b.iovs, f.Head)
		for _, p := range f.Tail {
			b.iovs = appendIovec(b.iovs, p)
		}
		if ret, stop := b.wrote(rawWritev(fd, b.iovs)); stop {
			return ret
		}
	}
	return true
}

func appendIovec(iovs []unix.Iovec, p []byte) []unix.Iovec {
	if len(p) == 0 {
		return iovs
	}
	iovs = append(iovs, unix.Iovec{Base: unsafe.SliceData(p)})
	iovs[len(iovs)-1].SetLen(len(p))
	return iovs
}
