// Package monitor carries samples of the frames a host's two paths drop
// (and, on request, of the flows its slow path decides) to whoever watches:
// wnvctl monitor, through the provider API's NDJSON stream GET /v1/monitor.
//
// Its cost is bounded and shows: the sources sample 1 in N and limit the
// rate (Limiter; the kernel does the same per CPU), the fan-out (Hub) never
// blocks a source (a subscriber that does not keep up loses samples), each
// stream samples and limits again for itself, and every suppression is
// counted and reported on the stream. Nobody watching costs a source one
// atomic load (Source.Wanted) per drop.
package monitor

import (
	"net/netip"
	"time"
)

// SnapLen is how many bytes of a frame a sample carries, the kernel's as
// well (fastpath.SnapLen).
const SnapLen = 128

// Path is the path that dropped a frame or decided a flow.
type Path uint8

const (
	PathKernel Path = iota + 1 // the kernel's fast path
	PathSlow                   // wnvd's switch
)

func (p Path) String() string {
	switch p {
	case PathKernel:
		return "kernel"
	case PathSlow:
		return "slow"
	}
	return "unknown"
}

// Kind is what a sample is of.
type Kind uint8

const (
	KindDrop Kind = iota // a dropped frame
	KindFlow             // a flow the slow path decided and installed
)

// Sample is one drop or flow as a source publishes it. It is a value of
// fixed size: publishing copies it and never allocates.
type Sample struct {
	Time time.Time
	Kind Kind
	Path Path
	// Reason is a drop's vswitch.Reason.
	Reason uint8
	// Port is the name of the port the frame came from; "" if none.
	Port         string
	FromUnderlay bool
	VSID         uint32
	// Len is the frame's length; Data[:Cap] its first bytes.
	Len  int
	Cap  uint8
	Data [SnapLen]byte
	// Weight is how many drops or flows the sample stands for: the
	// source's sampling (1 in Weight).
	Weight uint32
	// Flow is a flow's decision.
	Flow Flow
}

// Flow is where the slow path decided a port's packets to a destination
// CA go: to a local port, or encapsulated towards a PA.
type Flow struct {
	Dst    netip.Addr
	Local  string // the local port's name; "" for a PA
	PA     netip.Addr
	Encap  string
	Routed bool
}

// SetFrame copies the first SnapLen bytes of frame into s.
func (s *Sample) SetFrame(frame []byte) {
	s.Len = len(frame)
	s.Cap = uint8(copy(s.Data[:], frame))
}

// Frame is the sample's part of the frame.
func (s *Sample) Frame() []byte { return s.Data[:s.Cap] }
