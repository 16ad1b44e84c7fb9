package notify

import (
	"encoding/binary"
	"fmt"
)

// Wire protocol over the Unix socket (all integers little-endian). Every
// frame is
//
//	u32 length   bytes after this field
//	u16 op
//	u16 reserved 0
//	u32 id       chosen by the client, echoed by the server
//	body
//
// Client to server:
//
//	opRequest (1): WNV_OBJECT_HEADER (8 bytes: MajorVersion u8, MinorVersion
//	  u8, 2 zero bytes, Size u32) then NotificationType i32.
//	opCancel  (2): no body; id names the request to complete with 995.
//
// Server to client:
//
//	opHello (0x80), id 0, sent once the handle is subscribed (events raised
//	  from then on reach it): MajorVersion u8, MinorVersion u8, 2 zero bytes,
//	  QueueDepth u32, DedupWindow in nanoseconds u64.
//	opCompletion (0x81): status u32 (0, 87 or 995), NotificationType i32,
//	  PendingNotifications u32, bytes u32, dropped u64 (events of that type
//	  this handle has lost so far), then bytes of back-to-back structures.
const (
	opRequest    uint16 = 1
	opCancel     uint16 = 2
	opHello      uint16 = 0x80
	opCompletion uint16 = 0x81

	frameHeader     = 12 // length + op + reserved + id
	requestBody     = 12
	completionBody  = 24
	helloFrame      = frameHeader + 16
	requestFrame    = frameHeader + requestBody
	completionFrame = frameHeader + completionBody
	// maxClientFrame bounds what the server reads before validating.
	maxClientFrame = 64
)

// request is a decoded client frame.
type request struct {
	op     uint16
	id     uint32
	header ObjectHeader
	typ    NotificationType
}

// decodeRequest parses one client frame without its length prefix.
func decodeRequest(b []byte) (request, error) {
	var r request
	if len(b) < frameHeader-4 {
		return r, fmt.Errorf("frame of %d bytes is shorter than the %d-byte header", len(b), frameHeader-4)
	}
	r.op = binary.LittleEndian.Uint16(b[0:])
	if rsv := binary.LittleEndian.Uint16(b[2:]); rsv != 0 {
		return r, fmt.Errorf("frame reserved field %d is not 0", rsv)
	}
	r.id = binary.LittleEndian.Uint32(b[4:])
	body := b[8:]
	switch r.op {
	case opRequest:
		if len(body) != requestBody {
			return r, fmt.Errorf("request body of %d bytes is not %d bytes", len(body), requestBody)
		}
		r.header = ObjectHeader{MajorVersion: body[0], MinorVersion: body[1], Size: binary.LittleEndian.Uint32(body[4:])}
		r.typ = NotificationType(binary.LittleEndian.Uint32(body[8:]))
	case opCancel:
		if len(body) != 0 {
			return r, fmt.Errorf("cancel body of %d bytes is not empty", len(body))
		}
	default:
		return r, fmt.Errorf("frame op %d is unknown: use 1 (request) or 2 (cancel)", r.op)
	}
	return r, nil
}

func putFrameHeader(b []byte, length int, op uint16, id uint32) {
	binary.LittleEndian.PutUint32(b[0:], uint32(length))
	binary.LittleEndian.PutUint16(b[4:], op)
	binary.LittleEndian.PutUint16(b[6:], 0)
	binary.LittleEndian.PutUint32(b[8:], id)
}

// appendRequest encodes a request frame (with its length prefix).
func appendRequest(dst []byte, id uint32, h ObjectHeader, t NotificationType) []byte {
	var b [requestFrame]byte
	putFrameHeader(b[:], requestFrame-4, opRequest, id)
	b[12], b[13] = h.MajorVersion, h.MinorVersion
	binary.LittleEndian.PutUint32(b[16:], h.Size)
	binary.LittleEndian.PutUint32(b[20:], uint32(t))
	return append(dst, b[:]...)
}

func appendCancel(dst []byte, id uint32) []byte {
	var b [frameHeader]byte
	putFrameHeader(b[:], frameHeader-4, opCancel, id)
	return append(dst, b[:]...)
}

// completion is a decoded server frame.
type completion struct {
	id      uint32
	status  Errno
	typ     NotificationType
	pending uint32
	dropped uint64
	payload []byte
}

// putCompletion writes the completion header into b[:completionFrame]; the
// payload of n bytes follows it in b.
func putCompletion(b []byte, c *completion, n int) {
	putFrameHeader(b, completionFrame-4+n, opCompletion, c.id)
	binary.LittleEndian.PutUint32(b[12:], uint32(c.status))
	binary.LittleEndian.PutUint32(b[16:], uint32(c.typ))
	binary.LittleEndian.PutUint32(b[20:], c.pending)
	binary.LittleEndian.PutUint32(b[24:], uint32(n))
	binary.LittleEndian.PutUint64(b[28:], c.dropped)
}

// decodeCompletion parses one server frame without its length prefix.
func decodeCompletion(b []byte) (completion, error) {
	var c completion
	if len(b) < completionFrame-4 {
		return c, fmt.Errorf("completion frame of %d bytes is shorter than %d bytes", len(b), completionFrame-4)
	}
	if op := binary.LittleEndian.Uint16(b[0:]); op != opCompletion {
		return c, fmt.Errorf("server frame op %d is unknown: expected %d (completion)", op, opCompletion)
	}
	c.id = binary.LittleEndian.Uint32(b[4:])
	c.status = Errno(binary.LittleEndian.Uint32(b[8:]))
	c.typ = NotificationType(binary.LittleEndian.Uint32(b[12:]))
	c.pending = binary.LittleEndian.Uint32(b[16:])
	n := binary.LittleEndian.Uint32(b[20:])
	c.dropped = binary.LittleEndian.Uint64(b[24:])
	if int(n) != len(b)-(completionFrame-4) {
		return c, fmt.Errorf("completion says %d payload bytes but the frame holds %d", n, len(b)-(completionFrame-4))
	}
	c.payload = b[completionFrame-4:]
	return c, nil
}

// hello is the server's greeting.
type hello struct {
	major, minor uint8
	depth        uint32
	windowNanos  uint64
}

func appendHello(dst []byte, h hello) []byte {
	var b [helloFrame]byte
	putFrameHeader(b[:], helloFrame-4, opHello, 0)
	b[12], b[13] = h.major, h.minor
	binary.LittleEndian.PutUint32(b[16:], h.depth)
	binary.LittleEndian.PutUint64(b[20:], h.windowNanos)
	return append(dst, b[:]...)
}

// decodeHello parses the greeting frame without its length prefix.
func decodeHello(b []byte) (hello, error) {
	var h hello
	if len(b) != helloFrame-4 || binary.LittleEndian.Uint16(b) != opHello {
		return h, fmt.Errorf("server greeting of %d bytes is not a %d-byte hello frame", len(b), helloFrame-4)
	}
	h.major, h.minor = b[8], b[9]
	h.depth = binary.LittleEndian.Uint32(b[12:])
	h.windowNanos = binary.LittleEndian.Uint64(b[16:])
	return h, nil
}
