package monitor

import (
	"time"

	"github.com/wnv/wnv/packet"
)

// Event types: the lines of a monitor stream.
const (
	// TypeStart opens a stream with the settings in effect.
	TypeStart = "start"
	// TypeDrop is a dropped frame, TypeFlow a flow the slow path decided.
	TypeDrop = "drop"
	TypeFlow = "flow"
	// TypeSuppressed reports what sampling, rate limits and full queues
	// kept from the stream since it began; sent when it changed.
	TypeSuppressed = "suppressed"
)

// Event is one line of GET /v1/monitor's NDJSON stream.
type Event struct {
	Type string    `json:"Type"`
	Time time.Time `json:"Time"`
	Host string    `json:"Host,omitempty"`
	// Path is "kernel" or "slow".
	Path   string `json:"Path,omitempty"`
	Reason string `json:"Reason,omitempty"`
	// Port names the port the frame came from (the VM's name when its
	// host agent attached it); FromUnderlay marks a packet from the
	// underlay.
	Port            string `json:"Port,omitempty"`
	FromUnderlay    bool   `json:"FromUnderlay,omitempty"`
	VirtualSubnetID uint32 `json:"VirtualSubnetID,omitempty"`
	// Src, Dst and Header summarize Frame (packet.Describe).
	Src    string `json:"Src,omitempty"`
	Dst    string `json:"Dst,omitempty"`
	Header string `json:"Header,omitempty"`
	// Length is the frame's; Frame holds its first bytes (base64 in
	// JSON): a tunnel packet's inner frame on the slow path, the whole
	// packet on the kernel's.
	Length int    `json:"Length,omitempty"`
	Frame  []byte `json:"Frame,omitempty"`
	// Weight is how many drops or flows the event stands for.
	Weight uint32 `json:"Weight,omitempty"`
	// A flow's destination CA and where its packets go: "port NAME" or
	// "PA ADDRESS ENCAP".
	Destination string `json:"Destination,omitempty"`
	NextHop     string `json:"NextHop,omitempty"`
	Routed      bool   `json:"Routed,omitempty"`
	// Start: the stream's settings after the server's bounds.
	Sample uint32 `json:"Sample,omitempty"`
	Rate   uint32 `json:"Rate,omitempty"`
	// Suppressed counts, since the stream began.
	Suppressed *Suppressed `json:"Suppressed,omitempty"`
}

// EventOf is the stream line of sample s of host; reason names a drop's
// reason.
func EventOf(host string, s *Sample, reason func(uint8) string) Event {
	e := Event{Time: s.Time, Host: host, Path: s.Path.String(), Port: s.Port, FromUnderlay: s.FromUnderlay,
		VirtualSubnetID: s.VSID, Weight: s.Weight}
	if s.Kind == KindFlow {
		e.Type, e.Destination, e.Routed = TypeFlow, s.Flow.Dst.String(), s.Flow.Routed
		e.NextHop = "PA " + s.Flow.PA.String() + " " + s.Flow.Encap
		if s.Flow.Local != "" {
			e.NextHop = "port " + s.Flow.Local
		}
		return e
	}
	e.Type, e.Reason, e.Length = TypeDrop, reason(s.Reason), s.Len
	e.Frame = append([]byte(nil), s.Frame()...)
	sum := packet.Describe(e.Frame)
	e.Src, e.Dst, e.Header = sum.Src, sum.Dst, sum.Header
	return e
}
