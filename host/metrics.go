package host

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wnv/wnv/vswitch"
)

// Collector exposes the host's counters to Prometheus: both paths merged,
// as the provider API shows them, and how much each path carried. It reads
// them at scrape time, so forwarding pays nothing.
type Collector struct {
	h *Host

	portFrames, portBytes, portDrops *prometheus.Desc
	vsidPackets, vsidDrops           *prometheus.Desc
	drops, paths                     *prometheus.Desc
	events, handles                  *prometheus.Desc
	gso, migration                   *prometheus.Desc
	refusals, checkpoints            *prometheus.Desc
	routes, routeFailures            *prometheus.Desc
	underlayVLAN                     *prometheus.Desc
}

// NewCollector describes the host's metrics.
func NewCollector(h *Host) *Collector {
	host := prometheus.Labels{"host": h.cfg.Name}
	return &Collector{
		h:             h,
		portFrames:    prometheus.NewDesc("wnv_port_frames_total", "Frames on a VM port, both paths; direction rx is from the VM.", []string{"port", "direction"}, host),
		portBytes:     prometheus.NewDesc("wnv_port_bytes_total", "Bytes on a VM port, both paths; direction rx is from the VM.", []string{"port", "direction"}, host),
		portDrops:     prometheus.NewDesc("wnv_port_drops_total", "Frames from or to a VM port that either path dropped.", []string{"port"}, host),
		vsidPackets:   prometheus.NewDesc("wnv_vsid_packets_total", "Packets of a virtual subnet, both paths, by what became of them: encapsulated, decapsulated, local, reply, flooded (copies flooding made in a subnet with L2Only records).", []string{"vsid", "path"}, host),
		vsidDrops:     prometheus.NewDesc("wnv_vsid_drops_total", "Packets of a virtual subnet that either path dropped.", []string{"vsid"}, host),
		drops:         prometheus.NewDesc("wnv_drops_total", "Frames either path dropped, by reason.", []string{"reason"}, host),
		paths:         prometheus.NewDesc("wnv_path_frames_total", "Frames by the path that carried them (kernel: the eBPF fast path; slow: wnvd's switch) and where they came from (port or underlay).", []string{"path", "from"}, host),
		events:        prometheus.NewDesc("wnv_notifications_total", "Notification events by type and outcome.", []string{"type", "outcome"}, host),
		handles:       prometheus.NewDesc("wnv_notification_handles", "Open notification API handles.", nil, host),
		migration:     prometheus.NewDesc("wnv_migration_total", "Live-migration work of this host: packets forwarded to a VM's new PA, redirects sent and applied.", []string{"event"}, host),
		checkpoints:   prometheus.NewDesc("wnv_checkpoint_discarded_total", "Checkpoints the host could not read or use at start, and started empty without.", nil, host),
		refusals:      prometheus.NewDesc("wnv_table_refusals_total", "Entries a bounded table refused or evicted because it was full (a remote party or a VM can grow these), by table.", []string{"table"}, host),
		routes:        prometheus.NewDesc("wnv_provider_routes", "Provider routes by their state in the kernel: installed, waiting (next hop not reachable yet), failed (not installed).", []string{"state"}, host),
		routeFailures: prometheus.NewDesc("wnv_provider_route_failures_total", "Kernel operations on provider routes that failed, waiting ones included.", nil, host),
		underlayVLAN:  prometheus.NewDesc("wnv_underlay_vlan_frames_total", "802.1Q work on an underlay interface, by outcome: tagged (a PA's frame tagged with its VlanID on the way out), untagged (a tagged frame for a PA of its VLAN, accepted and untagged on the way in), wrong_vlan (a frame for a PA dropped: another VLAN, or untagged for a PA with one).", []string{"underlay", "outcome"}, host),
		gso:           prometheus.NewDesc("wnv_gso_packets_total", "Encapsulated TCP super-frames handed to the kernel as one tunnel GSO packet, by outcome.", []string{"outcome"}, host),
	}
}

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.portFrames, c.portBytes, c.portDrops, c.vsidPackets, c.vsidDrops, c.drops, c.paths, c.events, c.handles, c.gso, c.migration, c.refusals, c.checkpoints, c.routes, c.routeFailures, c.underlayVLAN} {
		ch <- d
	}
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	cs := c.h.Counters()
	for _, p := range cs.Ports {
		counter(c.portFrames, p.RxFrames, p.Name, "rx")
		counter(c.portFrames, p.TxFrames, p.Name, "tx")
		counter(c.portBytes, p.RxBytes, p.Name, "rx")
		counter(c.portBytes, p.TxBytes, p.Name, "tx")
		counter(c.portDrops, p.Drops, p.Name)
	}
	for _, v := range cs.VSIDs {
		id := strconv.FormatUint(uint64(v.VirtualSubnetID), 10)
		if v.VirtualSubnetID == vswitch.UnknownVSID {
			id = "unknown"
		}
		counter(c.vsidPackets, v.Encapsulated, id, "encapsulated")
		counter(c.vsidPackets, v.Decapsulated, id, "decapsulated")
		counter(c.vsidPackets, v.Local, id, "local")
		counter(c.vsidPackets, v.Replies, id, "reply")
		counter(c.vsidPackets, v.Flooded, id, "flooded")
		counter(c.vsidDrops, v.Drops, id)
	}
	for _, d := range cs.Drops {
		counter(c.drops, d.Count, d.Reason)
	}
	if p := cs.Paths; p != nil {
		counter(c.paths, p.KernelFromPorts, "kernel", "port")
		counter(c.paths, p.KernelFromUnderlay, "kernel", "underlay")
		counter(c.paths, p.SlowFromPorts, "slow", "port")
		counter(c.paths, p.SlowFromUnderlay, "slow", "underlay")
	}
	counter(c.migration, cs.Migration.Forwarded, "forwarded")
	counter(c.migration, cs.Migration.RedirectsSent, "redirect_sent")
	counter(c.migration, cs.Migration.RedirectsApplied, "redirect_applied")
	if g := cs.GSO; g != nil {
		counter(c.gso, g.Redirected, "redirected")
		counter(c.gso, g.Dropped, "dropped")
		counter(c.gso, g.Refused, "refused")
	}
	for _, n := range cs.Notifications {
		counter(c.events, n.Raised, n.Type, "raised")
		counter(c.events, n.RateLimited, n.Type, "rate_limited")
		counter(c.events, n.Merged, n.Type, "merged")
		counter(c.events, n.Delivered, n.Type, "delivered")
		counter(c.events, n.Dropped, n.Type, "dropped")
	}
	counter(c.checkpoints, c.h.CheckpointsDiscarded())
	for _, r := range c.h.TableRefusals() {
		counter(c.refusals, r.Count, r.Table)
	}
	if r := cs.ProviderRoutes; r != nil {
		for state, n := range map[string]int{"installed": r.Installed, "waiting": r.Waiting, "failed": r.Failed} {
			ch <- prometheus.MustNewConstMetric(c.routes, prometheus.GaugeValue, float64(n), state)
		}
		counter(c.routeFailures, r.Failures)
	}
	for _, u := range cs.Underlays {
		counter(c.underlayVLAN, u.TxTagged, u.Name, "tagged")
		counter(c.underlayVLAN, u.RxTagged, u.Name, "untagged")
		counter(c.underlayVLAN, u.WrongVLAN, u.Name, "wrong_vlan")
	}
	if c.h.hub != nil {
		ch <- prometheus.MustNewConstMetric(c.handles, prometheus.GaugeValue, float64(cs.NotificationHandles))
	}
}

// TableRefusal is how many entries one bounded table refused or evicted.
type TableRefusal struct {
	Table string
	Count uint64
}

// TableRefusals lists the bounded tables a remote party or a VM can grow,
// with their refusals and evictions, in a fixed order.
func (h *Host) TableRefusals() []TableRefusal {
	out := []TableRefusal{
		{"vsid-counters", h.sw.Counters.VSIDOverflow.Load()},
		{"migration-redirects", h.mig.redirectsRefused.Load()},
		{"negative-cache", h.sw.NegativeEvictions()},
	}
	if h.hub != nil {
		out = append(out, TableRefusal{"notification-keys", h.hub.Stats().KeyEvictions})
	}
	return out
}

// MetricsTLS are the files of /metrics over TLS: the server's certificate
// and key, and optionally the CA that client certificates must chain to.
type MetricsTLS struct {
	CertFile, KeyFile, ClientCAFile string
}

// ListenMetrics opens the /metrics listener on addr. An address without a
// host (":9464") is localhost's: counters name tenants' VSIDs and ports, so
// exposing them on every interface takes an explicit host ("0.0.0.0:9464").
// With a certificate it serves TLS, and with a client CA it requires client
// certificates signed by it.
func ListenMetrics(addr string, t MetricsTLS) (net.Listener, error) {
	hostPart, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %q is not host:port: %w", addr, err)
	}
	if hostPart == "" {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	var cfg *tls.Config
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		if t.ClientCAFile != "" {
			return nil, fmt.Errorf("--metrics-tls-client-ca %s needs --metrics-tls-cert and --metrics-tls-key", t.ClientCAFile)
		}
	case t.CertFile == "" || t.KeyFile == "":
		return nil, fmt.Errorf("--metrics-tls-cert %q and --metrics-tls-key %q go together: give both", t.CertFile, t.KeyFile)
	default:
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--metrics-tls-cert %s / --metrics-tls-key %s: %w", t.CertFile, t.KeyFile, err)
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if t.ClientCAFile != "" {
			pem, err := os.ReadFile(t.ClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("--metrics-tls-client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--metrics-tls-client-ca %s holds no PEM certificate", t.ClientCAFile)
			}
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	return l, nil
}
