package host

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wnv/wnv/notify"
)

// Collector exposes the switch's and the notification hub's counters to
// Prometheus. It reads them at scrape time, so the fast path pays nothing.
type Collector struct {
	h *Host

	portFrames, portBytes, portDrops *prometheus.Desc
	vsidPackets, vsidDrops           *prometheus.Desc
	drops                            *prometheus.Desc
	events, handles                  *prometheus.Desc
	gso, migration                   *prometheus.Desc
}

// NewCollector describes the host's metrics.
func NewCollector(h *Host) *Collector {
	host := prometheus.Labels{"host": h.cfg.Name}
	return &Collector{
		h:           h,
		portFrames:  prometheus.NewDesc("wnv_port_frames_total", "Frames on a VM port; direction rx is from the VM.", []string{"port", "direction"}, host),
		portBytes:   prometheus.NewDesc("wnv_port_bytes_total", "Bytes on a VM port; direction rx is from the VM.", []string{"port", "direction"}, host),
		portDrops:   prometheus.NewDesc("wnv_port_drops_total", "Frames from or to a VM port that the switch dropped.", []string{"port"}, host),
		vsidPackets: prometheus.NewDesc("wnv_vsid_packets_total", "Packets of a virtual subnet by path: encapsulated, decapsulated, local, reply, flooded (copies flooding made in a subnet with L2Only records).", []string{"vsid", "path"}, host),
		vsidDrops:   prometheus.NewDesc("wnv_vsid_drops_total", "Packets of a virtual subnet that the switch dropped.", []string{"vsid"}, host),
		drops:       prometheus.NewDesc("wnv_drops_total", "Frames the switch dropped, by reason.", []string{"reason"}, host),
		events:      prometheus.NewDesc("wnv_notifications_total", "Notification events by type and outcome.", []string{"type", "outcome"}, host),
		handles:     prometheus.NewDesc("wnv_notification_handles", "Open notification API handles.", nil, host),
		migration:   prometheus.NewDesc("wnv_migration_total", "Live-migration work of this host: packets forwarded to a VM's new PA, redirects sent and applied.", []string{"event"}, host),
		gso:         prometheus.NewDesc("wnv_gso_packets_total", "Encapsulated TCP super-frames handed to the kernel as one tunnel GSO packet, by outcome.", []string{"outcome"}, host),
	}
}

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.portFrames, c.portBytes, c.portDrops, c.vsidPackets, c.vsidDrops, c.drops, c.events, c.handles, c.gso, c.migration} {
		ch <- d
	}
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ports, vsids, reasons := c.h.sw.Counters.Snapshot()
	for _, p := range c.h.namedPorts(ports) {
		counter(c.portFrames, p.RxFrames, p.Name, "rx")
		counter(c.portFrames, p.TxFrames, p.Name, "tx")
		counter(c.portBytes, p.RxBytes, p.Name, "rx")
		counter(c.portBytes, p.TxBytes, p.Name, "tx")
		counter(c.portDrops, p.Drops, p.Name)
	}
	for _, v := range vsids {
		id := strconv.FormatUint(uint64(v.VSID), 10)
		counter(c.vsidPackets, v.Encapsulated, id, "encapsulated")
		counter(c.vsidPackets, v.Decapsulated, id, "decapsulated")
		counter(c.vsidPackets, v.Local, id, "local")
		counter(c.vsidPackets, v.Replies, id, "reply")
		counter(c.vsidPackets, v.Flooded, id, "flooded")
		counter(c.vsidDrops, v.Drops, id)
	}
	for r, n := range reasons {
		counter(c.drops, n, r.String())
	}
	mig := c.h.mig.counters()
	counter(c.migration, mig.Forwarded, "forwarded")
	counter(c.migration, mig.RedirectsSent, "redirect_sent")
	counter(c.migration, mig.RedirectsApplied, "redirect_applied")
	if c.h.gso != nil {
		st := c.h.gso.Stats()
		counter(c.gso, st.Redirected, "redirected")
		counter(c.gso, st.Dropped, "dropped")
		counter(c.gso, st.Refused, "refused")
	}
	if c.h.hub == nil {
		return
	}
	st := c.h.hub.Stats()
	for t := notify.NotificationType(0); t < notify.NotificationTypeMax; t++ {
		ts := st.Types[t]
		name := t.String()
		counter(c.events, ts.Raised, name, "raised")
		counter(c.events, ts.RateLimited, name, "rate_limited")
		counter(c.events, ts.Merged, name, "merged")
		counter(c.events, ts.Delivered, name, "delivered")
		counter(c.events, ts.Dropped, name, "dropped")
	}
	ch <- prometheus.MustNewConstMetric(c.handles, prometheus.GaugeValue, float64(st.OpenHandles))
}
