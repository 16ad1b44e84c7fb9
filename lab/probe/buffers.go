package probe

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketBuffer is what a responder or a stream asks of its UDP socket: at
// 1 kHz, seconds of datagrams, so that a process the machine starves of CPU
// for a while loses none the network delivered, and a lost probe is the
// network's.
const socketBuffer = 4 << 20

// Deepen gives c buffers of socketBuffer: past net.core.rmem_max and
// wmem_max where the process may (CAP_NET_ADMIN), else as deep as they let.
func Deepen(c syscall.Conn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer) != nil {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer)
			}
		}
	})
}
