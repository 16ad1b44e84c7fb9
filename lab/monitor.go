package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// MonitorWithin is how soon the demo expects a drop on the monitor stream.
const MonitorWithin = time.Second

// DemoMonitor watches the drops of VM vm's port on its host, as wnvctl
// monitor does, while the VM sends a frame from a MAC not its own (the
// kernel drops it, spoofed-mac; with the fast path off the switch does)
// and one from its MAC but a CA not its own (the kernel hands it to the
// switch, which drops it, spoofed-ca). It prints how soon each showed and
// returns what failed: a drop not shown, or shown later than within (0: no
// bound).
func (l *Lab) DemoMonitor(ctx context.Context, w io.Writer, vm string, within time.Duration) []string {
	v, ok := l.Topology.VM(vm)
	if !ok {
		return []string{fmt.Sprintf("monitor: no VM %s", vm)}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	events := make(chan monitor.Event, 64)
	errc := make(chan error, 1)
	go func() {
		for e, err := range l.Client(v.Host).Monitor(ctx, provider.MonitorQuery{Port: []string{vm}}) {
			if err != nil {
				errc <- err
				return
			}
			events <- e
		}
	}()
	select {
	case e := <-events:
		if e.Type != monitor.TypeStart {
			return []string{fmt.Sprintf("monitor: the stream began with %+v", e)}
		}
	case err := <-errc:
		return []string{fmt.Sprintf("monitor: %v", err)}
	case <-ctx.Done():
		return []string{"monitor: the stream did not start"}
	}
	other := v.V4.Prev() // not blue1's CA
	frames := []struct {
		reason string
		frame  []byte
	}{
		{"spoofed-mac", demoFrame(packet.MAC{2, 0, 0, 0, 0x66, 0x66}, v.V4, other)},
		{"spoofed-ca", demoFrame(v.MAC, other, v.V4)},
	}
	var failures []string
	for _, f := range frames {
		sent := time.Now()
		if err := InNamespace(l.Topology.Namespace(vm), func() error { return sendRaw("eth0", f.frame) }); err != nil {
			return append(failures, fmt.Sprintf("monitor: sending from %s: %v", vm, err))
		}
		shown := false
		for !shown {
			select {
			case e := <-events:
				if e.Type != monitor.TypeDrop || e.Reason != f.reason {
					continue
				}
				shown = true
				since := time.Since(sent)
				fmt.Fprintf(w, "%-12s from %s: shown by the %s path of %s %v after it was sent (%s > %s  %s)\n",
					f.reason, vm, e.Path, e.Host, since.Round(time.Millisecond), e.Src, e.Dst, e.Header)
				if within > 0 && since > within {
					failures = append(failures, fmt.Sprintf("monitor: %s of %s shown %v after it was sent, over %v", f.reason, vm, since, within))
				}
			case err := <-errc:
				return append(failures, fmt.Sprintf("monitor: %v", err))
			case <-ctx.Done():
				return append(failures, fmt.Sprintf("monitor: %s of %s never shown", f.reason, vm))
			}
		}
	}
	return failures
}

// demoFrame is a UDP frame from src, CA from to CA to, for the gateway's
// MAC.
func demoFrame(src packet.MAC, from, to netip.Addr) []byte {
	f := make([]byte, packet.EthernetHeaderLen+packet.IPv4HeaderLen+packet.UDPHeaderLen+4)
	n := packet.PutEthernet(f, vswitch.GatewayMAC, src, packet.EtherTypeIPv4)
	n += packet.PutIPv4(f[n:], from, to, packet.ProtoUDP, 64, packet.UDPHeaderLen+4, 1, true)
	packet.PutUDP(f[n:], 40000, 7777, 4)
	return f
}

// sendRaw sends frame out of interface ifname of the current namespace.
func sendRaw(ifname string, frame []byte) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6})
}
