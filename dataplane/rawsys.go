package dataplane

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fast path's syscalls go through RawSyscall: every fd here is
// non-blocking, so a call never waits, but a large send can spend tens of
// microseconds in the kernel (the peer's softirq runs in it over a veth).
// Through Syscall the runtime's sysmon would take the P away after 20 us and
// hand it to another thread, and the thread switches cost more than the
// sends. Go's poller still does the waiting, in RawConn.Read and Write.

// rawRead is read(2) without the runtime's syscall bookkeeping.
func rawRead(fd uintptr, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawWrite is write(2) without the runtime's syscall bookkeeping.
func rawWrite(fd uintptr, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawWritev is writev(2) without the runtime's syscall bookkeeping.
func rawWritev(fd uintptr, iovs []unix.Iovec) error {
	_, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(iovs))), uintptr(len(iovs)))
	if e != 0 {
		return e
	}
	return nil
}
