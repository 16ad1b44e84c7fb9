package host

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/fastpath"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

const (
	// DefaultMigrationGrace is how long a host forwards packets for a VM
	// that migrated away.
	DefaultMigrationGrace = 5 * time.Second
	// redirectInterval is the least time between two redirects for one CA
	// to one sender.
	redirectInterval = 100 * time.Millisecond
	// maxRedirectsPending bounds the table of recent redirects: its keys
	// come from the outer source of forwarded packets, which anyone picks.
	maxRedirectsPending = 4096
)

// migrations tracks the VMs that left this host (ports detached with their
// interface kept) during their grace period, and forwards what still
// arrives for them.
type migrations struct {
	once  sync.Once
	mu    sync.Mutex
	gone  map[goneKey]*goneVM
	sent  map[redirectKey]time.Time
	raw   [2]int // IPPROTO_RAW sockets for IPv4 and IPv6, opened on first use; 0 when not open
	grace atomic.Int64

	forwarded, redirectsSent, redirectsApplied atomic.Uint64
	// redirectsRefused counts redirects not sent because the table of
	// recent ones was full.
	redirectsRefused atomic.Uint64
}

type goneKey struct {
	vsid policy.VSID
	mac  packet.MAC
}

type goneVM struct {
	cas   []netip.Addr
	until time.Time
}

type redirectKey struct {
	sender netip.Addr
	vsid   policy.VSID
	ca     netip.Addr
}

// SetMigrationGrace sets how long packets for a VM that migrated away are
// forwarded to its new PA (DefaultMigrationGrace when never set).
func (h *Host) SetMigrationGrace(d time.Duration) { h.mig.grace.Store(int64(d)) }

func (m *migrations) graceOrDefault() time.Duration {
	if g := time.Duration(m.grace.Load()); g > 0 {
		return g
	}
	return DefaultMigrationGrace
}

// depart starts the grace period of a port detached with its interface kept:
// as soon as policy maps the VM's CAs to another host's PA (by watch, or
// already), packets still arriving here for it are forwarded there.
func (h *Host) depart(spec portSpecKey) {
	m := &h.mig
	m.once.Do(func() {
		h.store.Subscribe(func(*policy.Table) { h.publishMoved() })
	})
	grace := m.graceOrDefault()
	k := goneKey{spec.vsid, spec.mac}
	m.mu.Lock()
	if m.gone == nil {
		m.gone = map[goneKey]*goneVM{}
		m.sent = map[redirectKey]time.Time{}
	}
	g := &goneVM{cas: spec.cas, until: time.Now().Add(grace)}
	m.gone[k] = g
	m.mu.Unlock()
	time.AfterFunc(grace, func() {
		m.mu.Lock()
		if m.gone[k] == g {
			delete(m.gone, k)
		}
		m.pruneSent(time.Now())
		m.mu.Unlock()
		h.publishMoved()
	})
	h.publishMoved()
}

// pruneSent forgets the redirects sent longer than redirectInterval ago;
// m.mu is held.
func (m *migrations) pruneSent(now time.Time) {
	for rk, at := range m.sent {
		if now.Sub(at) > redirectInterval {
			delete(m.sent, rk)
		}
	}
}

type portSpecKey struct {
	vsid policy.VSID
	mac  packet.MAC
	cas  []netip.Addr
}

// publishMoved gives the switch the departed VMs whose records now point at
// another host.
func (h *Host) publishMoved() {
	t := h.store.Table()
	m := &h.mig
	m.mu.Lock()
	var moved []vswitch.Moved
	for k, g := range m.gone {
		for _, ca := range g.cas {
			rec, ok := t.LookupCA(k.vsid, ca)
			if ok && rec.MACAddress == k.mac && !t.IsLocalPA(rec.ProviderAddress) {
				moved = append(moved, vswitch.Moved{VSID: k.vsid, MAC: k.mac, NewPA: rec.ProviderAddress})
				break
			}
		}
	}
	m.mu.Unlock()
	h.sw.SetMoved(vswitch.NewMovedTable(moved))
}

// forwardMoved sends payload (a GRE or VXLAN payload as received at local
// PA via) on to the moved VM's new PA with the original sender's PA as
// outer source, so the new host validates it against the sender's record,
// and redirects the sender. It leaves by via's interface, on via's VLAN. A
// packet that cannot be forwarded (the sender's and the new PA's families
// differ, or the send fails) counts as a no-local-port drop.
func (h *Host) forwardMoved(r vswitch.Result, via netip.Addr, payload []byte, encap policy.Encapsulation) {
	m := &h.mig
	switch {
	case r.Src.Is4() != r.Dst.Is4():
		h.sw.Counters.Drop(vswitch.ReasonNoLocalPort)
	default:
		var ifindex int
		var vlan uint16
		if s := (*h.pas.socks.Load())[via]; s != nil {
			ifindex, vlan = s.ifindex, s.vlan
		}
		if err := m.sendRaw(r.Src, r.Dst, payload, encap, ifindex, vlan); err != nil {
			h.sw.Counters.Drop(vswitch.ReasonNoLocalPort)
			h.log.Debug("forwarding to a moved VM", "dst", r.Dst, "err", err)
		} else {
			m.forwarded.Add(1)
		}
	}
	rd := r.Redirect
	k := redirectKey{r.Src, rd.VSID, rd.CA}
	now := time.Now()
	m.mu.Lock()
	last, seen := m.sent[k]
	due := !seen || now.Sub(last) >= redirectInterval
	if due && !seen && len(m.sent) >= maxRedirectsPending {
		m.pruneSent(now)
		if len(m.sent) >= maxRedirectsPending {
			due = false
			m.redirectsRefused.Add(1)
		}
	}
	if due {
		m.sent[k] = now
	}
	m.mu.Unlock()
	if !due {
		return
	}
	if err := h.SendRedirect(r.Src, rd.VSID, rd.CA, rd.PA, rd.NewPA); err != nil {
		h.log.Warn("sending redirect", "to", r.Src, "vsid", rd.VSID, "ca", rd.CA, "newPA", rd.NewPA, "err", err)
		return
	}
	m.redirectsSent.Add(1)
	h.log.Info("redirect sent", "to", r.Src, "vsid", rd.VSID, "ca", rd.CA, "pa", rd.PA, "newPA", rd.NewPA)
}

// sendRaw sends an IP packet built here from src to dst (one family):
// protocol 47 with payload, or UDP to port 4789 for VXLAN, out of
// interface ifindex (0: as the routes say), tagged with vlan (0: none).
// Linux lets an IPPROTO_RAW socket (which implies IP_HDRINCL, and
// IPV6_HDRINCL for IPv6) send from an address the host does not own.
func (m *migrations) sendRaw(src, dst netip.Addr, payload []byte, encap policy.Encapsulation, ifindex int, vlan uint16) error {
	v6 := dst.Is6()
	fd, err := m.rawSocket(v6)
	if err != nil {
		return err
	}
	ipLen, proto := packet.IPv4HeaderLen, uint8(unix.IPPROTO_GRE)
	if v6 {
		ipLen = packet.IPv6HeaderLen
	}
	hdr := ipLen
	if encap == policy.EncapVXLAN {
		hdr += packet.UDPHeaderLen
		proto = unix.IPPROTO_UDP
	}
	buf := make([]byte, hdr+len(payload))
	if v6 {
		packet.PutIPv6(buf, src, dst, proto, 64, hdr-ipLen+len(payload))
	} else {
		packet.PutIPv4(buf, src, dst, proto, 64, hdr-ipLen+len(payload), 0, false)
	}
	copy(buf[hdr:], payload)
	if encap == policy.EncapVXLAN {
		// The source port carries flow entropy; any fixed one keeps the flow.
		packet.PutUDP(buf[ipLen:], 49152, packet.VXLANPort, len(payload))
		if v6 { // IPv6 receivers drop a zero UDP checksum
			packet.SetUDPChecksum(packet.UDP(buf[ipLen:]), src, dst)
		}
	}
	oob := sendControl(v6, ifindex, vlan)
	if v6 {
		_, err = unix.SendmsgN(fd, buf, oob, &unix.SockaddrInet6{Addr: dst.As16()}, 0)
	} else {
		_, err = unix.SendmsgN(fd, buf, oob, &unix.SockaddrInet4{Addr: dst.As4()}, 0)
	}
	return err
}

// sendControl is the control data of a send out of interface ifindex (0:
// any) with VLAN vlan (0: none): the interface as packet info, the VLAN as
// the mark the underlay's egress program tags by (fastpath.VLANMark).
func sendControl(v6 bool, ifindex int, vlan uint16) []byte {
	var oob []byte
	add := func(level, typ int, data []byte) {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = int32(level), int32(typ)
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		oob = append(oob, b...)
	}
	if ifindex != 0 {
		if v6 {
			info := unix.Inet6Pktinfo{Ifindex: uint32(ifindex)}
			add(unix.SOL_IPV6, unix.IPV6_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&info)), unix.SizeofInet6Pktinfo))
		} else {
			info := unix.Inet4Pktinfo{Ifindex: int32(ifindex)}
			add(unix.SOL_IP, unix.IP_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&info)), unix.SizeofInet4Pktinfo))
		}
	}
	if vlan != 0 {
		mark := fastpath.VLANMark | uint32(vlan)
		add(unix.SOL_SOCKET, unix.SO_MARK, unsafe.Slice((*byte)(unsafe.Pointer(&mark)), 4))
	}
	return oob
}

// sendIP sends ip, an IP packet with its header, to dst as it is.
func (m *migrations) sendIP(dst netip.Addr, ip []byte) error {
	fd, err := m.rawSocket(dst.Is6())
	if err != nil {
		return err
	}
	if dst.Is6() {
		return unix.Sendto(fd, ip, 0, &unix.SockaddrInet6{Addr: dst.As16()})
	}
	return unix.Sendto(fd, ip, 0, &unix.SockaddrInet4{Addr: dst.As4()})
}

// rawSocket returns the family's IPPROTO_RAW socket, opened on first use.
func (m *migrations) rawSocket(v6 bool) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fam, name := 0, "IPv4"
	if v6 {
		fam, name = 1, "IPv6"
	}
	if m.raw[fam] == 0 {
		fd, err := unix.Socket([2]int{unix.AF_INET, unix.AF_INET6}[fam], unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return 0, fmt.Errorf("open raw %s socket: %w", name, err)
		}
		m.raw[fam] = fd
	}
	return m.raw[fam], nil
}

func (m *migrations) counters() provider.MigrationCounters {
	return provider.MigrationCounters{Forwarded: m.forwarded.Load(), RedirectsSent: m.redirectsSent.Load(), RedirectsApplied: m.redirectsApplied.Load()}
}

// closeRaw closes the raw sockets that are open.
func (m *migrations) closeRaw() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, fd := range m.raw {
		if fd != 0 {
			unix.Close(fd)
			m.raw[i] = 0
		}
	}
}
