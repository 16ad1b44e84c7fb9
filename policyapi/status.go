package policyapi

import (
	"net/netip"
	"time"

	"github.com/wnv/wnv/monitor"
)

// HostStatus is what a host agent reports of its host: telemetry the
// policy server keeps in memory (the latest report and a few minutes of
// history per host) for observers, never policy.
type HostStatus struct {
	Host string `json:"Host"`
	// Time is when the agent took the report (the server's clock stamps
	// Received).
	Time     time.Time `json:"Time"`
	Received time.Time `json:"Received,omitempty"`
	// Version is wnvd's version and Started when the agent started.
	Version string    `json:"Version,omitempty"`
	Started time.Time `json:"Started"`
	// ProviderAddresses are the host's PAs with their duplicate address
	// detection state (Preferred, Tentative, Duplicate, ...).
	ProviderAddresses []PAStatus `json:"ProviderAddresses"`
	// FastPath says the kernel fast path forwards on this host.
	FastPath bool `json:"FastPath"`
	// Revision is the newest policy revision the agent has seen, and
	// InSync says it has installed everything it has seen and fetched:
	// nothing pending, no failed install waiting for a retry.
	Revision int64 `json:"Revision"`
	InSync   bool  `json:"InSync"`
	// Ports are the VM ports' counters and Totals the host's, since wnvd
	// started; Drops the drops by reason.
	Ports  []PortTraffic `json:"Ports"`
	Totals Traffic       `json:"Totals"`
	Drops  []DropCounter `json:"Drops"`
	// Sampled are drops the host's monitor sampled since the last report
	// (at most MaxSampledDrops).
	Sampled []monitor.Event `json:"Sampled,omitempty"`
	// APIEndpoint is the host's provider API over mutual TLS (ADDR:PORT),
	// where the server runs traces; empty when it serves none.
	APIEndpoint string `json:"APIEndpoint,omitempty"`
	// Reporting is false when the last report is older than three report
	// intervals (set by the server).
	Reporting bool `json:"Reporting"`
}

// MaxSampledDrops bounds the drops one status report carries.
const MaxSampledDrops = 20

// PAStatus is one provider address and its DAD state.
type PAStatus struct {
	Address netip.Addr `json:"Address"`
	State   string     `json:"State"`
}

// Traffic counts frames and bytes from the VMs (Rx) and to them (Tx).
type Traffic struct {
	RxFrames uint64 `json:"RxFrames"`
	RxBytes  uint64 `json:"RxBytes"`
	TxFrames uint64 `json:"TxFrames"`
	TxBytes  uint64 `json:"TxBytes"`
	Drops    uint64 `json:"Drops"`
}

// PortTraffic is one port's traffic (Port: the VM's name).
type PortTraffic struct {
	Port string `json:"Port"`
	Traffic
}

// DropCounter is how many frames a host dropped for Reason.
type DropCounter struct {
	Reason string `json:"Reason"`
	Count  uint64 `json:"Count"`
}

// StatusSample is one point of a host's history: its totals and each
// port's counters at Time.
type StatusSample struct {
	Time   time.Time          `json:"Time"`
	Totals Traffic            `json:"Totals"`
	Ports  map[string]Traffic `json:"Ports"`
}

// HostHealth is what GET /v1/status returns per host: the latest report
// and the history of samples, oldest first.
type HostHealth struct {
	Status  HostStatus     `json:"Status"`
	History []StatusSample `json:"History"`
}

// StatusEvent is one message of GET /v1/status/stream: a host's new
// report (Status) or a sampled drop (Drop).
type StatusEvent struct {
	Type   string         `json:"Type"` // "status" or "drop"
	Status *HostStatus    `json:"Status,omitempty"`
	Drop   *monitor.Event `json:"Drop,omitempty"`
}
