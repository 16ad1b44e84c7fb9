// Package pcap writes capture files in the classic pcap format
// (microsecond timestamps, LINKTYPE_ETHERNET) that Wireshark and tcpdump
// read: the dropped frames of wnvctl monitor --pcap.
package pcap

import (
	"encoding/binary"
	"io"
	"time"
)

const (
	magic            = 0xa1b2c3d4
	versionMajor     = 2
	versionMinor     = 4
	linkTypeEthernet = 1
	fileHeaderLen    = 24
	recordHeaderLen  = 16
)

// Writer writes one capture file.
type Writer struct {
	w       io.Writer
	snapLen uint32
	buf     []byte
}

// NewWriter writes the file header to w: frames are cut to snapLen bytes.
func NewWriter(w io.Writer, snapLen int) (*Writer, error) {
	h := make([]byte, fileHeaderLen)
	binary.LittleEndian.PutUint32(h[0:], magic)
	binary.LittleEndian.PutUint16(h[4:], versionMajor)
	binary.LittleEndian.PutUint16(h[6:], versionMinor)
	binary.LittleEndian.PutUint32(h[16:], uint32(snapLen))
	binary.LittleEndian.PutUint32(h[20:], linkTypeEthernet)
	if _, err := w.Write(h); err != nil {
		return nil, err
	}
	return &Writer{w: w, snapLen: uint32(snapLen)}, nil
}

// WriteFrame writes one Ethernet frame captured at t: data is its first
// bytes, origLen its length on the wire.
func (w *Writer) WriteFrame(t time.Time, data []byte, origLen int) error {
	if uint32(len(data)) > w.snapLen {
		data = data[:w.snapLen]
	}
	origLen = max(origLen, len(data))
	w.buf = append(w.buf[:0], make([]byte, recordHeaderLen)...)
	binary.LittleEndian.PutUint32(w.buf[0:], uint32(t.Unix()))
	binary.LittleEndian.PutUint32(w.buf[4:], uint32(t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(w.buf[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(w.buf[12:], uint32(origLen))
	w.buf = append(w.buf, data...)
	_, err := w.w.Write(w.buf)
	return err
}
