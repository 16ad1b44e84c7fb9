package providertest

import (
	"errors"

	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// Tracer is a Backend whose host, Name, traces packets as wnvd does: a real
// switch over the backend's policy and ports runs them (dry runs only; it
// sends no live probe).
type Tracer struct {
	*Backend
	Name string
	sw   *vswitch.Switch
}

// NewTracer returns a Tracer for host name with an empty policy store.
func NewTracer(name string) *Tracer {
	return &Tracer{Backend: NewBackend(), Name: name, sw: vswitch.New(vswitch.Config{UnderlayMTU: 1500})}
}

// Trace answers POST /v1/trace (provider.Tracer).
func (h *Tracer) Trace(r provider.TraceRequest, live bool) (provider.TraceResponse, error) {
	if live {
		return provider.TraceResponse{}, errors.New("this test host sends no live probes")
	}
	h.sw.SetPolicy(h.Store().Table())
	var pcs []vswitch.PortConfig
	for i, p := range h.Ports() {
		pcs = append(pcs, vswitch.PortConfig{Index: i, Name: p.Name, MAC: p.MACAddress, VSID: p.VirtualSubnetID, CAs: p.CustomerAddresses})
	}
	pt, err := vswitch.NewPortTable(pcs)
	if err != nil {
		return provider.TraceResponse{}, err
	}
	h.sw.SetPorts(pt)
	var res provider.TraceResponse
	if r.Outer != nil {
		res = provider.TraceOuter(h.sw, r.Outer)
	} else if res, _, _, err = provider.TracePort(h.sw, r, nil); err != nil {
		return res, err
	}
	res.Host = h.Name
	return res, nil
}
