package notify

import (
	"bytes"
	"testing"
)

func TestRequestFrameRoundTrip(t *testing.T) {
	f := appendRequest(nil, 7, ObjectHeader{1, 0, 4096}, ObjectChangeType)
	if len(f) != requestFrame {
		t.Fatalf("request frame is %d bytes, want %d", len(f), requestFrame)
	}
	r, err := decodeRequest(f[4:])
	if err != nil {
		t.Fatal(err)
	}
	if r.op != opRequest || r.id != 7 || r.header != (ObjectHeader{1, 0, 4096}) || r.typ != ObjectChangeType {
		t.Fatalf("decoded %+v", r)
	}
	for _, bad := range [][]byte{
		nil,
		f[4:10],
		f[4 : len(f)-1],
		append(f[4:len(f):len(f)], 0),
		{9, 0, 0, 0, 1, 0, 0, 0},
		{2, 0, 1, 0, 1, 0, 0, 0},
	} {
		if _, err := decodeRequest(bad); err == nil {
			t.Errorf("decodeRequest(% x) accepted a malformed frame", bad)
		}
	}
}

func TestCompletionFrameRoundTrip(t *testing.T) {
	payload := bytes.Repeat([]byte{0xab}, 2*PolicyMismatchSize)
	frame := make([]byte, completionFrame+len(payload))
	copy(frame[completionFrame:], payload)
	putCompletion(frame, &completion{id: 9, status: ErrSuccess, typ: PolicyMismatchType, pending: 3, dropped: 1 << 40}, len(payload))
	c, err := decodeCompletion(frame[4:])
	if err != nil {
		t.Fatal(err)
	}
	if c.id != 9 || c.status != 0 || c.pending != 3 || c.dropped != 1<<40 || !bytes.Equal(c.payload, payload) {
		t.Fatalf("decoded %+v", c)
	}
	if _, err := decodeCompletion(frame[4 : len(frame)-1]); err == nil {
		t.Fatal("a truncated completion was accepted")
	}
}

// FuzzDecodeRequest feeds the server's frame decoder arbitrary client bytes:
// it must never panic, and whatever it accepts must re-encode to the same
// bytes.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(appendRequest(nil, 1, ObjectHeader{1, 0, 40}, PolicyMismatchType)[4:])
	f.Add(appendCancel(nil, 1)[4:])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		var re []byte
		switch r.op {
		case opRequest:
			re = appendRequest(nil, r.id, r.header, r.typ)
		case opCancel:
			re = appendCancel(nil, r.id)
		}
		// The two padding bytes of the header are ignored on input.
		if len(b) > 11 {
			b = bytes.Clone(b)
			b[10], b[11] = 0, 0
		}
		if !bytes.Equal(re[4:], b) {
			t.Fatalf("accepted % x but re-encodes as % x", b, re[4:])
		}
		_ = validate(r.header, r.typ)
	})
}
