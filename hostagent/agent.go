// Package hostagent is the host agent of `wnvd host --policy-server URL`: it
// keeps one host's policy and VM ports in line with the policy server. It
// talks to the host only through the provider API client and the
// notification API client, as an orchestrator's agent would: it registers
// the host and its provider addresses and heartbeats; lists and watches the
// routing domains of its local VMs (and only those) and installs their
// lookup records and customer routes, reconciled by level, each difference
// in one provider API batch; attaches the ports of the VMs the server places
// on the host and detaches those that leave (keeping the interface of a VM
// that migrated away); answers policy mismatch and redirect notifications
// with GET /v1/lookup, fairly across VSIDs; and hands the host's redirect
// keys to wnvd. It never clears policy because the server is unreachable:
// the host forwards on its last policy meanwhile.
//
// The agent is a pure model (model.go: events in, I/O to do out, time passed
// in) and a driver (driver.go: goroutines, clients, timers) that does that
// I/O and feeds the results back, after etcd raft's RawNode and Node.
package hostagent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/wnv/wnv/edge"
	"github.com/wnv/wnv/internal/backoff"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/provider"
)

// Config is what the agent runs with.
type Config struct {
	// Host is the host's name at the policy server.
	Host string
	// ProviderAddresses are the host's PAs with their prefix length: the
	// agent adds those the host lacks and registers them (the first is the
	// PA its VMs' records point at). Empty: register the host's current PAs.
	ProviderAddresses []netip.Prefix
	// TTL is the host's liveness lease (default 10s); heartbeats go every TTL/3.
	TTL time.Duration
	// Interfaces signals that a network interface appeared in wnvd's
	// namespace: a VM placed on this host whose interface (its hypervisor's
	// TAP) did not exist yet is attached then. Optional; without it the
	// agent tries again every second.
	Interfaces <-chan struct{}
	// MigrationGrace is how long the agent keeps the policy of a VM's
	// routing domain after the VM migrated away, for the host's forwarding
	// (default 5s; match the host's).
	MigrationGrace time.Duration
	// NegativeTTL is how long a lookup that failed is not asked again
	// (default 1s), so that a flood of misses costs the server one lookup
	// per destination and TTL.
	NegativeTTL time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff after a
	// failed call (defaults 100ms and 5s).
	RetryMin, RetryMax time.Duration
	// Edges builds the edge gateways the server places on this host (nil:
	// the host builds none), in network namespaces named EdgePrefix +
	// gateway name (default "wnvgw-") whose tenant links have EdgeMTU
	// (default 1400, room for any encapsulation on a 1500-byte underlay).
	Edges      Edges
	EdgePrefix string
	EdgeMTU    int
	// StatusInterval is how often the agent reports the host's status
	// (default 5s; status.go), Version the wnvd version it reports and
	// APIEndpoint the host's remote provider API (empty: none).
	// SlowPathOnly says wnvd runs with its kernel fast path off.
	StatusInterval time.Duration
	SlowPathOnly   bool
	Version        string
	APIEndpoint    string
	Log            *slog.Logger
}

// Edges builds a host's edge gateways; *edge.Linux implements it.
type Edges interface {
	// Reconcile makes the host's edge gateways exactly want.
	Reconcile(ctx context.Context, want []edge.Spec) error
}

func (c Config) withDefaults() Config {
	if c.TTL <= 0 {
		c.TTL = 10 * time.Second
	}
	if c.MigrationGrace <= 0 {
		c.MigrationGrace = 5 * time.Second
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.EdgePrefix == "" {
		c.EdgePrefix = "wnvgw-"
	}
	if c.EdgeMTU <= 0 {
		c.EdgeMTU = 1400
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Provider is what the agent calls of wnvd's provider API;
// *provider.Client implements it.
type Provider interface {
	AddProviderAddress(ctx context.Context, a policy.ProviderAddress) (policy.ProviderAddress, error)
	ProviderAddresses(ctx context.Context, f policy.ProviderAddressFilter) ([]policy.ProviderAddress, error)
	RemoveProviderAddresses(ctx context.Context, f policy.ProviderAddressFilter) ([]policy.ProviderAddress, error)
	Ports(ctx context.Context) ([]provider.Port, error)
	LookupRecords(ctx context.Context, f policy.LookupRecordFilter) ([]policy.LookupRecord, error)
	CustomerRoutes(ctx context.Context, f policy.CustomerRouteFilter) ([]policy.CustomerRoute, error)
	VirtualSubnets(ctx context.Context, f policy.VirtualSubnetFilter) ([]policy.VirtualSubnet, error)
	AddVirtualSubnet(ctx context.Context, v policy.VirtualSubnet) (policy.VirtualSubnet, error)
	SetVirtualSubnets(ctx context.Context, f policy.VirtualSubnetFilter, ch policy.VirtualSubnetChange) ([]policy.VirtualSubnet, error)
	Apply(ctx context.Context, b policy.Batch) error
	AttachPort(ctx context.Context, spec provider.PortSpec) (provider.Port, error)
	DetachPort(ctx context.Context, name string) error
	DetachMigratedPort(ctx context.Context, name string) error
	SetRedirectKeys(ctx context.Context, keys []provider.RedirectKey) (int, error)
}

// Agent is one host's agent. Create it with New and Run it.
type Agent struct {
	cfg    Config
	server policyapi.HostAPI
	host   Provider
	notify string
	log    *slog.Logger
	status *statusReporter
}

// New returns an agent for the host reached through its provider API host
// and the notification API socket notifySocket, syncing with server.
func New(cfg Config, server policyapi.HostAPI, host Provider, notifySocket string) *Agent {
	cfg = cfg.withDefaults()
	return &Agent{cfg: cfg, server: server, host: host, notify: notifySocket, log: cfg.Log.With("agent", cfg.Host), status: newStatusReporter()}
}

func (a *Agent) newBackoff() backoff.Backoff {
	return backoff.Backoff{Min: a.cfg.RetryMin, Max: a.cfg.RetryMax, Rand: rand.Float64}
}

// Run keeps the host in sync until ctx ends. Errors reaching the policy
// server are retried with backoff and never undo installed policy.
func (a *Agent) Run(ctx context.Context) error {
	pas, err := a.ensurePAs(ctx)
	if err != nil {
		return err
	}
	if err := a.register(ctx, pas); err != nil {
		return err
	}
	d := newDriver(a)
	go a.heartbeat(ctx, pas, d.results)
	go a.notifications(ctx, d.notes)
	srv, ok1 := a.server.(StatusServer)
	host, ok2 := a.host.(StatusHost)
	if ok1 && ok2 {
		go a.reportStatus(ctx, srv, host)
	}
	d.run(ctx)
	return nil
}

// ensurePAs adds the configured PAs the host lacks and returns the PAs to
// register.
func (a *Agent) ensurePAs(ctx context.Context) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, p := range a.cfg.ProviderAddresses {
		out = append(out, p.Addr())
		err := a.retry(ctx, "add provider address", func() error {
			_, err := a.host.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: p.Addr(), PrefixLength: uint8(p.Bits())})
			if errors.Is(err, policy.ErrExists) {
				return nil
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	var cur []policy.ProviderAddress
	err := a.retry(ctx, "list provider addresses", func() (err error) {
		cur, err = a.host.ProviderAddresses(ctx, policy.ProviderAddressFilter{})
		return err
	})
	for _, p := range cur {
		out = append(out, p.ProviderAddress)
	}
	return out, err
}

func (a *Agent) register(ctx context.Context, pas []netip.Addr) error {
	h := policyapi.Host{Name: a.cfg.Host, ProviderAddresses: pas, TTLSeconds: int64(a.cfg.TTL / time.Second)}
	return a.retry(ctx, "register host", func() error {
		_, err := a.server.RegisterHost(ctx, h)
		if err == nil {
			a.log.Info("host registered", "pas", pas)
		}
		return err
	})
}

// heartbeat keeps the host's lease; when the server forgot the host (its
// store was reset) it registers again and tells the model.
func (a *Agent) heartbeat(ctx context.Context, pas []netip.Addr, out chan<- Event) {
	t := time.NewTicker(max(a.cfg.TTL/3, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := a.server.Heartbeat(ctx, a.cfg.Host)
		if errors.Is(err, policy.ErrNotFound) {
			if err = a.register(ctx, pas); err == nil {
				send(ctx, out, Registered{})
			}
		}
		if err != nil && ctx.Err() == nil {
			a.log.Debug("heartbeat", "err", err)
		}
	}
}

// retry calls fn until it succeeds, fails with a request error (4xx, which
// a retry will not fix), or ctx ends, backing off between attempts.
func (a *Agent) retry(ctx context.Context, what string, fn func() error) error {
	b := a.newBackoff()
	for {
		err := fn()
		if err == nil || errors.Is(err, policy.ErrInvalid) || errors.Is(err, policy.ErrNotFound) || errors.Is(err, policy.ErrExists) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := b.Next()
		a.log.Debug("retrying", "what", what, "in", wait, "err", err)
		sleep(ctx, wait)
	}
}

// notifications feeds policy mismatch and redirect events to out until ctx
// ends, reopening the handle if the host restarts its API. A notification
// the driver has no room for is dropped: the host raises it again.
func (a *Agent) notifications(ctx context.Context, out chan<- Event) {
	offer := func(ev Event) {
		select {
		case out <- ev:
		default:
		}
	}
	b := a.newBackoff()
	for ctx.Err() == nil {
		h, err := notify.Open(a.notify)
		if err != nil {
			a.log.Debug("opening the notification API", "err", err)
			sleep(ctx, b.Next())
			continue
		}
		for ev, err := range h.Events(ctx, notify.PolicyMismatchType, notify.RedirectType, notify.ObjectChangeType) {
			var of *notify.OverflowError
			switch {
			case errors.As(err, &of):
				offer(NotificationsLost{})
			case err != nil:
				a.log.Debug("notification API", "err", err)
			case ev.PolicyMismatch != nil && ev.PolicyMismatch.CA.IsValid():
				b.Reset()
				offer(Notified{VSID: policy.VSID(ev.PolicyMismatch.VirtualSubnetID), CA: ev.PolicyMismatch.CA})
			case ev.PolicyMismatch != nil:
				// A non-IP frame of an L2Only subnet from an unknown MAC names
				// no CA to look up; the watch brings that subnet's records.
			case ev.ObjectChange != nil && ev.ObjectChange.CustomerAddress != nil:
				c := ev.ObjectChange.CustomerAddress
				if c.NotificationReason == notify.CustomerAddressAdded || c.NotificationReason == notify.CustomerAddressDeleted {
					offer(CALearned{VSID: policy.VSID(c.VirtualSubnetID), CA: c.CA, PA: c.PA, MAC: c.MACAddress, Forgot: c.NotificationReason == notify.CustomerAddressDeleted})
				}
			case ev.Redirect != nil:
				b.Reset()
				offer(Notified{VSID: policy.VSID(ev.Redirect.VirtualSubnetID), CA: ev.Redirect.CA})
			}
			if err != nil && of == nil {
				break
			}
		}
		h.Close()
		sleep(ctx, b.Next())
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// send delivers ev unless ctx ends first.
func send(ctx context.Context, out chan<- Event, ev Event) {
	select {
	case out <- ev:
	case <-ctx.Done():
	}
}
