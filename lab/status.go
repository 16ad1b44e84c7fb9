package lab

import (
	"context"
	"net/netip"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// Status is a snapshot of the lab for `wnvctl lab status`.
type Status struct {
	Up         bool              `json:"Up"`
	StateDir   string            `json:"StateDir"`
	Namespaces []NamespaceStatus `json:"Namespaces"`
	// PolicyServer is nil for a Static lab.
	PolicyServer *ServerStatus `json:"PolicyServer,omitempty"`
	Hosts        []HostStatus  `json:"Hosts"`
	VMs          []VMStatus    `json:"VMs"`
}

// NamespaceStatus says whether one of the lab's namespaces exists.
type NamespaceStatus struct {
	Name   string `json:"Name"`
	Exists bool   `json:"Exists"`
}

// HostStatus is one host's daemon and the PAs it reports.
type HostStatus struct {
	Name   string       `json:"Name"`
	PA     netip.Prefix `json:"PA"`
	PID    int          `json:"PID"`
	Alive  bool         `json:"Alive"`
	Socket string       `json:"Socket"`
	// PAs are the provider addresses the daemon reports; empty when it does
	// not answer.
	PAs []netip.Addr `json:"PAs"`
}

// ServerStatus is the policy server process and what it answers.
type ServerStatus struct {
	URL   string `json:"URL"`
	PID   int    `json:"PID"`
	Alive bool   `json:"Alive"`
	// Error says why the server did not answer; empty when it did.
	Error string `json:"Error,omitempty"`
	// HostsAlive are the hosts whose agents keep their liveness lease.
	HostsAlive []string `json:"HostsAlive"`
	VMs        int      `json:"VMs"`
}

// VMStatus is one VM and whether its probe responder runs (for a QEMU VM:
// whether its QEMU runs, the guest's responder with it).
type VMStatus struct {
	VM
	// Namespace is a namespace VM's; a QEMU VM has none.
	Namespace      string `json:"Namespace,omitempty"`
	ResponderAlive bool   `json:"ResponderAlive"`
	// QEMUPID is a QEMU VM's QEMU process on its host.
	QEMUPID int `json:"QEMUPID,omitempty"`
	// ServerHost is where the policy server places the VM (it differs from
	// Host after a migration made outside the lab); empty when unknown.
	ServerHost string `json:"ServerHost,omitempty"`
}

// Status reports the namespaces, daemons, PAs and VMs of the lab.
func (l *Lab) Status(ctx context.Context) Status {
	t := l.Topology
	s := Status{Up: l.IsUp(), StateDir: l.StateDir}
	names := []string{"underlay"}
	for _, h := range t.Hosts {
		names = append(names, h.Name)
	}
	for _, v := range t.VMs {
		if !v.QEMU {
			names = append(names, v.Name)
		}
	}
	for _, n := range names {
		s.Namespaces = append(s.Namespaces, NamespaceStatus{Name: t.Namespace(n), Exists: namespaceExists(t.Namespace(n))})
	}
	for _, h := range t.Hosts {
		hs := HostStatus{Name: h.Name, PA: h.PA, PID: l.pid(h.Name), Alive: l.alive(h.Name), Socket: l.socket(h.Name)}
		if hs.Alive {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if pas, err := l.Client(h.Name).ProviderAddresses(cctx, policy.ProviderAddressFilter{}); err == nil {
				for _, pa := range pas {
					hs.PAs = append(hs.PAs, pa.ProviderAddress)
				}
			}
			cancel()
		}
		s.Hosts = append(s.Hosts, hs)
	}
	placed := map[string]string{}
	if !t.Static {
		s.PolicyServer, placed = l.serverStatus(ctx)
	}
	for _, v := range t.VMs {
		vs := VMStatus{VM: v, ServerHost: placed[v.Name]}
		if v.QEMU {
			vs.ResponderAlive, vs.QEMUPID = l.guestAlive(v), l.pid(qemuName(v.Name, v.Host))
		} else {
			vs.Namespace, vs.ResponderAlive = t.Namespace(v.Name), l.alive("probe-"+v.Name)
		}
		s.VMs = append(s.VMs, vs)
	}
	return s
}

// serverStatus asks the policy server for its hosts and VMs; it also returns
// each VM's host there.
func (l *Lab) serverStatus(ctx context.Context) (*ServerStatus, map[string]string) {
	ss := &ServerStatus{URL: l.Topology.ServerURL(), PID: l.pid(serverName), Alive: l.alive(serverName), HostsAlive: []string{}}
	placed := map[string]string{}
	if !ss.Alive {
		ss.Error = "not running"
		return ss, placed
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	hosts, err := l.Server().Hosts(ctx)
	if err != nil {
		ss.Error = err.Error()
		return ss, placed
	}
	for _, h := range hosts {
		if h.Alive {
			ss.HostsAlive = append(ss.HostsAlive, h.Name)
		}
	}
	vms, err := l.Server().VMs(ctx, policyapi.VMFilter{})
	if err != nil {
		ss.Error = err.Error()
		return ss, placed
	}
	ss.VMs = len(vms)
	for _, v := range vms {
		placed[v.Name] = v.Host
	}
	return ss, placed
}
