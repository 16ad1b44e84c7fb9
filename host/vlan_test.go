package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// wireFrame is what an underlay capture saw of one IPv4 or ARP frame: its
// 802.1Q VLAN (0: untagged) and, for ARP, the sender and target IPs.
type wireFrame struct {
	vlan     uint16
	arp      bool
	proto    uint8
	src, dst netip.Addr
}

// underlayCapture records the IPv4 and ARP frames an interface sends and
// receives, with the tag the kernel reports beside each (PACKET_AUXDATA):
// a packet socket never sees the tag in the bytes.
type underlayCapture struct {
	fd     int
	done   chan struct{}
	mu     sync.Mutex
	frames []wireFrame
}

func captureUnderlay(t *testing.T, ns, ifname string) *underlayCapture {
	t.Helper()
	c := &underlayCapture{fd: -1, done: make(chan struct{})}
	err := inNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		idx, err := ifindexOf(ifname)
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s of %s: %v", ifname, ns, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		oob := make([]byte, 256)
		for {
			n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, 0)
			if errors.Is(err, unix.EBADF) {
				return
			}
			if err != nil {
				continue
			}
			if f, ok := parseWireFrame(buf[:n], oob[:oobn]); ok {
				c.mu.Lock()
				c.frames = append(c.frames, f)
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

func parseWireFrame(b, oob []byte) (wireFrame, bool) {
	f := wireFrame{vlan: auxVLAN(oob)}
	eth, err := packet.ParseEthernet(b)
	if err != nil {
		return f, false
	}
	switch eth.Type() {
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			return f, false
		}
		f.proto, f.src, f.dst = ip.Protocol(), ip.Src(), ip.Dst()
	case packet.EtherTypeARP:
		arp := eth.Payload()
		if len(arp) < 28 {
			return f, false
		}
		f.arp, f.src, f.dst = true, netip.AddrFrom4([4]byte(arp[14:18])), netip.AddrFrom4([4]byte(arp[24:28]))
	default:
		return f, false
	}
	return f, true
}

// auxVLAN is the VLAN ID in a packet socket's auxiliary data, 0 if none.
func auxVLAN(oob []byte) uint16 {
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 20 &&
			binary.NativeEndian.Uint32(m.Data[0:4])&unix.TP_STATUS_VLAN_VALID != 0 {
			return binary.NativeEndian.Uint16(m.Data[16:18]) & 0x0fff
		}
	}
	return 0
}

// stop ends the capture (again: nothing) and returns what it saw.
func (c *underlayCapture) stop() []wireFrame {
	if c.fd >= 0 {
		unix.Close(c.fd)
		<-c.done
		c.fd = -1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wireFrame(nil), c.frames...)
}

// between returns the frames of IP protocol proto (or ARP, proto 0) with
// a and b as their two ends (either way; an ARP probe's sender is
// 0.0.0.0, and its target the PA probed for).
func between(frames []wireFrame, proto uint8, a, b netip.Addr) []wireFrame {
	var out []wireFrame
	for _, f := range frames {
		if proto == 0 {
			if f.arp && (f.src == a || f.dst == a || f.src == b || f.dst == b) {
				out = append(out, f)
			}
			continue
		}
		if !f.arp && f.proto == proto && (f.src == a && f.dst == b || f.src == b && f.dst == a) {
			out = append(out, f)
		}
	}
	return out
}

// allOnVLAN checks that there are frames and all carry vlan.
func allOnVLAN(t *testing.T, what string, frames []wireFrame, vlan uint16) {
	t.Helper()
	if len(frames) == 0 {
		t.Errorf("%s: none captured", what)
	}
	for _, f := range frames {
		if f.vlan != vlan {
			t.Errorf("%s: a frame %+v on VLAN %d, want every one on VLAN %d", what, f, f.vlan, vlan)
			return
		}
	}
}

// underlayCounts is the 802.1Q counters of the named underlay, and the
// wrong-vlan drops of the host.
func underlayCounts(ctx context.Context, c *provider.Client, name string) (provider.UnderlayCounters, uint64, error) {
	cs, err := c.Counters(ctx)
	if err != nil {
		return provider.UnderlayCounters{}, 0, err
	}
	var drops uint64
	for _, d := range cs.Drops {
		if d.Reason == "wrong-vlan" {
			drops = d.Count
		}
	}
	for _, u := range cs.Underlays {
		if u.Name == name {
			return u, drops, nil
		}
	}
	return provider.UnderlayCounters{}, drops, fmt.Errorf("no counters of underlay %s in %+v", name, cs.Underlays)
}

// vlanSubnet provisions on host c the VSID 7001 subnet 10.70.0.0/24
// whose CA ca[i], MAC mac[i], is behind PA pa[i].
func vlanSubnet(t *testing.T, c *provider.Client, ca []netip.Addr, mac []packet.MAC, pa []netip.Addr) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: policy.MustParseGUID("{11111111-2222-3333-4444-000000007001}"),
		VirtualSubnetID: 7001, DestinationPrefix: netip.MustParsePrefix("10.70.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	for j := range ca {
		if _, err := c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca[j], VirtualSubnetID: 7001, MACAddress: mac[j],
			ProviderAddress: pa[j], Rule: policy.TranslationMethodEncap}); err != nil {
			t.Fatal(err)
		}
	}
}

// vlanVM attaches VM namespace vm with CA ca and MAC mac to VSID 7001 on
// host c (namespace hostNS), as port.
func vlanVM(t *testing.T, c *provider.Client, hostNS, vm, port string, ca netip.Addr, mac packet.MAC) {
	t.Helper()
	vmNIC(t, hostNS, port, vm, mac)
	if _, err := c.AttachPort(context.Background(), provider.PortSpec{Name: port, MACAddress: mac, VirtualSubnetID: 7001, CustomerAddresses: []netip.Addr{ca}}); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", vm, "addr", "add", ca.String()+"/24", "dev", "eth0")
}

// injectFrames sends frames on interface ifname of namespace ns, as they
// are (an 802.1Q tag in the bytes stays there).
func injectFrames(t *testing.T, ns, ifname string, frames ...[]byte) {
	t.Helper()
	err := inNetns(ns, func() error {
		idx, err := ifindexOf(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			proto := binary.BigEndian.Uint16(f[12:14])
			if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: idx, Protocol: htons(proto)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("inject on %s of %s: %v", ifname, ns, err)
	}
}

// nvgreFrame is an underlay frame from src to dst carrying NVGRE for VSID
// 7001 (inner frame: an Ethernet header), on VLAN vlan (0: untagged).
func nvgreFrame(dstMAC, srcMAC packet.MAC, vlan uint16, src, dst netip.Addr) []byte {
	b := make([]byte, 128)
	off := packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv4)
	if vlan != 0 {
		off = packet.PutEthernetVLAN(b, dstMAC, srcMAC, vlan, packet.EtherTypeIPv4)
	}
	inner := 8 + packet.EthernetHeaderLen
	off += packet.PutIPv4(b[off:], src, dst, packet.ProtoGRE, 64, inner, 0, false)
	binary.BigEndian.PutUint16(b[off:], 0x2000)
	binary.BigEndian.PutUint16(b[off+2:], 0x6558)
	binary.BigEndian.PutUint32(b[off+4:], 7001<<8)
	return b[:off+inner]
}

func linkMAC(t *testing.T, ns, name string) packet.MAC {
	t.Helper()
	var mac packet.MAC
	if err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(name)
		if err == nil {
			copy(mac[:], ifi.HardwareAddr)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// TestVLANBetweenHosts: two hosts whose PAs have VlanID 100 reach each
// other's VMs; on the underlay every frame of the PAs (their DAD probes,
// the kernel's ARP, the tunnel packets) carries 802.1Q tag 100. A frame
// for a PA tagged with VLAN 200, or untagged, is dropped and counted
// wrong-vlan, and nothing else is.
func TestVLANBetweenHosts(t *testing.T) {
	needRoot(t)
	b := newTwoHosts(t, "vl")
	pa := []netip.Addr{netip.MustParseAddr("198.18.70.1"), netip.MustParseAddr("198.18.70.2")}
	ca := []netip.Addr{netip.MustParseAddr("10.70.0.10"), netip.MustParseAddr("10.70.0.11")}
	mac := []packet.MAC{{2, 0, 0, 0x70, 0, 1}, {2, 0, 0, 0x70, 0, 2}}
	ctx := context.Background()
	var c [2]*provider.Client
	for i := range 2 {
		c[i] = startHost(t, b.hosts[i], b.under[i])
	}
	capture := captureUnderlay(t, b.hosts[1], b.under[1])
	for i := range 2 {
		vlanSubnet(t, c[i], ca, mac, pa)
		vlanVM(t, c[i], b.hosts[i], b.vms[i], b.taps[i], ca[i], mac[i])
		if _, err := c[i].AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa[i], PrefixLength: 24, VlanID: 100}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		waitPreferred(t, c[i], pa[i])
	}
	probeBothWays(t, b.vms[0], b.vms[1], [2]netip.Addr{ca[0], ca[1]})

	frames := capture.stop()
	allOnVLAN(t, "NVGRE between the PAs", between(frames, packet.ProtoGRE, pa[0], pa[1]), 100)
	allOnVLAN(t, "ARP of the PAs", between(frames, 0, pa[0], pa[1]), 100)
	for i, name := range b.under {
		u, _, err := underlayCounts(ctx, c[i], name)
		if err != nil {
			t.Fatal(err)
		}
		if u.TxTagged == 0 || u.RxTagged == 0 || u.WrongVLAN != 0 {
			t.Errorf("host %d's underlay counters %+v, want frames tagged both ways and none of the wrong VLAN", i, u)
		}
	}

	// Frames for b's PA on VLAN 200, and untagged, from a's side of the
	// wire; from an address that is none of a's PAs, which a would tag.
	_, before, err := underlayCounts(ctx, c[1], b.under[1])
	if err != nil {
		t.Fatal(err)
	}
	dst, src := linkMAC(t, b.hosts[1], b.under[1]), linkMAC(t, b.hosts[0], b.under[0])
	stranger := netip.MustParseAddr("198.18.70.9")
	var bad [][]byte
	for range 5 {
		bad = append(bad, nvgreFrame(dst, src, 200, stranger, pa[1]))
	}
	for range 3 {
		bad = append(bad, nvgreFrame(dst, src, 0, stranger, pa[1]))
	}
	injectFrames(t, b.hosts[0], b.under[0], bad...)
	eventually(t, "wrong-vlan drops on b", func() error {
		u, drops, err := underlayCounts(ctx, c[1], b.under[1])
		if err != nil {
			return err
		}
		if drops-before != 8 || u.WrongVLAN != 8 {
			return fmt.Errorf("wrong-vlan drops %d (underlay %+v) after injecting 8, want 8", drops-before, u)
		}
		return nil
	})
	// What the VLAN carries still goes through.
	probeBothWays(t, b.vms[0], b.vms[1], [2]netip.Addr{ca[0], ca[1]})
}

// TestTwoUnderlayInterfaces: hosts a and b are joined by two links, ul0
// and ul1, each host's underlays (--underlay ul0,ul1). Each host has a PA
// on each (the second by its InterfaceIndex, on VLAN 300), and a VM
// behind each PA; each pair of VMs reaches the other, and a capture on
// each link shows the traffic of that link's PAs only, tagged on ul1 only.
func TestTwoUnderlayInterfaces(t *testing.T) {
	needRoot(t)
	s := suffix()
	hosts := [2]string{"wvl2a" + s, "wvl2b" + s}
	vms := [2][2]string{{"wvl2va0" + s, "wvl2va1" + s}, {"wvl2vb0" + s, "wvl2vb1" + s}} // vms[host][link]
	for _, ns := range []string{hosts[0], hosts[1], vms[0][0], vms[0][1], vms[1][0], vms[1][1]} {
		netnsAdd(t, ns)
	}
	links := [2]string{"ul0", "ul1"}
	for _, l := range links {
		run(t, "ip", "link", "add", l, "netns", hosts[0], "type", "veth", "peer", "name", l, "netns", hosts[1])
		for _, h := range hosts {
			run(t, "ip", "-n", h, "link", "set", l, "up")
		}
	}
	// pa[host][link], ca and mac likewise.
	pa := [2][2]netip.Addr{{netip.MustParseAddr("198.18.71.1"), netip.MustParseAddr("198.18.72.1")}, {netip.MustParseAddr("198.18.71.2"), netip.MustParseAddr("198.18.72.2")}}
	var (
		cas  []netip.Addr
		macs []packet.MAC
		pas  []netip.Addr
	)
	for h := range 2 {
		for l := range 2 {
			cas = append(cas, netip.AddrFrom4([4]byte{10, 70, 0, byte(10*h + l + 10)}))
			macs = append(macs, packet.MAC{2, 0, 0, 0x71, byte(h), byte(l)})
			pas = append(pas, pa[h][l])
		}
	}
	ctx := context.Background()
	var c [2]*provider.Client
	for h := range 2 {
		c[h] = startHost(t, hosts[h], "ul0,ul1")
	}
	var capture [2]*underlayCapture
	for l := range 2 {
		capture[l] = captureUnderlay(t, hosts[0], links[l])
	}
	for h := range 2 {
		ul1 := linkIndex(t, hosts[h], "ul1")
		vlanSubnet(t, c[h], cas, macs, pas)
		for l := range 2 {
			vlanVM(t, c[h], hosts[h], vms[h][l], fmt.Sprintf("vm%d", l), cas[2*h+l], macs[2*h+l])
		}
		for _, p := range []policy.ProviderAddress{
			{ProviderAddress: pa[h][0], PrefixLength: 24},
			{ProviderAddress: pa[h][1], PrefixLength: 24, InterfaceIndex: ul1, VlanID: 300},
		} {
			if _, err := c[h].AddProviderAddress(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	for h := range 2 {
		for l := range 2 {
			waitPreferred(t, c[h], pa[h][l])
		}
	}
	for l := range 2 {
		probeBothWays(t, vms[0][l], vms[1][l], [2]netip.Addr{cas[l], cas[2+l]})
	}

	for l := range 2 {
		frames := capture[l].stop()
		vlan := uint16(300 * l)
		what := fmt.Sprintf("NVGRE on %s", links[l])
		allOnVLAN(t, what, between(frames, packet.ProtoGRE, pa[0][l], pa[1][l]), vlan)
		other := 1 - l
		for _, f := range frames {
			if f.src == pa[0][other] || f.dst == pa[0][other] || f.src == pa[1][other] || f.dst == pa[1][other] {
				t.Errorf("%s carried a frame %+v of the PAs of %s", links[l], f, links[other])
				break
			}
		}
	}
	// The addresses are on their interfaces.
	for h := range 2 {
		for l := range 2 {
			var on []netip.Prefix
			if err := inNetns(hosts[h], func() (err error) {
				ifi, err := net.InterfaceByName(links[l])
				if err != nil {
					return err
				}
				as, err := ifi.Addrs()
				for _, a := range as {
					if p, perr := netip.ParsePrefix(a.String()); perr == nil {
						on = append(on, p)
					}
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if want := netip.PrefixFrom(pa[h][l], 24); !slices.Contains(on, want) {
				t.Errorf("%s of host %d has %v, want %s", links[l], h, on, want)
			}
		}
	}
	// Counters name both underlays; only ul1 tags.
	cs, err := c[0].Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Underlays) != 2 || cs.Underlays[0].Name != "ul0" || cs.Underlays[0].TxTagged != 0 || cs.Underlays[1].Name != "ul1" || cs.Underlays[1].TxTagged == 0 {
		t.Errorf("a's underlay counters %+v, want ul0 untagged and ul1 tagged", cs.Underlays)
	}
}
