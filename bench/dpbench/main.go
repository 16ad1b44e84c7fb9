// Command dpbench measures VM-to-VM traffic between two hosts built in
// network namespaces, side by side in one run: (a) the Linux kernel's vxlan
// device and a bridge, the baseline, (b) wnvd with VXLAN, (c) wnvd with
// NVGRE and (d) Open vSwitch's userspace datapath with VXLAN (ovs.go), and a
// bare veth pair between the two VMs as the machine's limit (veth.go). It
// prints TCP throughput (1 and 4 streams, iperf3), the rate of 64-byte UDP
// frames (iperf3), request/response round trips per second (its own UDP
// ping-pong), wnvd's CPU seconds per gigabit and the share of wnvd's frames
// its kernel fast path carried, each figure the median of several rounds
// over all setups, with its ratio to the baseline. bench/dataplane.sh builds
// and runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

var (
	pa  = [2]netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")}
	ca  = [2]netip.Addr{netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11")}
	mac = [2]packet.MAC{{0x02, 0, 0, 0, 0x50, 0x01}, {0x02, 0, 0, 0, 0x50, 0x02}}
	rd  = policy.MustParseGUID("{11111111-2222-3333-4444-0000000b0001}")
)

const vsid = 5001

func main() {
	if len(os.Args) > 1 && os.Args[1] == "rr-serve" {
		exitOn(rrServe())
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "rr-client" {
		exitOn(rrClient(os.Args[2:]))
		return
	}
	var o options
	flag.StringVar(&o.wnvd, "wnvd", "", "path of the wnvd binary (required)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each measurement")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of measurements of every setup; each figure is the median of its rounds")
	flag.StringVar(&o.only, "only", "", "comma-separated setups to run: kernel, vxlan, nvgre, ovs, veth (default all)")
	flag.IntVar(&o.mtu, "mtu", 1500, "MTU of the underlay veths (9000 for jumbo frames); VM MTUs leave room for the encapsulation")
	flag.StringVar(&o.gsoTAP, "gso-tap", "wnvgso", "wnvd's --gso-tap; empty makes wnvd segment TCP super-frames itself")
	flag.StringVar(&o.fastPath, "fast-path", "on", "wnvd's --fast-path: on forwards decided flows in the kernel, off switches every frame in wnvd")
	flag.Parse()
	if o.mtu < 1280 || o.mtu > 9000 {
		exitOn(fmt.Errorf("--mtu %d is out of range: use 1280..9000", o.mtu))
	}
	if o.rounds < 1 {
		exitOn(fmt.Errorf("--rounds %d is out of range: use 1 or more", o.rounds))
	}
	if o.wnvd == "" {
		exitOn(errors.New("--wnvd is required: build it with go build -o <path> ./cmd/wnvd"))
	}
	self, err := os.Executable()
	exitOn(err)
	o.self = self
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	exitOn(runAll(ctx, o))
}

func exitOn(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "dpbench:", err)
		os.Exit(1)
	}
}

type options struct {
	wnvd, self, only string
	gsoTAP, fastPath string
	duration         time.Duration
	mtu, rounds      int
}

// figures are one setup's measurements; zero means not measured.
type figures struct {
	name       string
	tcp1, tcp4 float64 // Gbit/s
	pps        float64 // 64-byte frames received per second
	rr         float64 // round trips per second
	cpuPerGbit float64 // wnvd CPU seconds per Gbit in the 1-stream test
	kernelPath float64 // share of the frames wnvd's kernel fast path carried; < 0: not wnvd
	note       string  // printed under the table
	skipped    bool    // not measured; note says why
}

func runAll(ctx context.Context, o options) error {
	setups := []struct {
		key, name string
		build     func(*bed) error
	}{
		{"kernel", "(a) kernel vxlan + bridge", (*bed).kernel},
		{"vxlan", "(b) wnvd VXLAN", func(b *bed) error { return b.wnvd(policy.EncapVXLAN) }},
		{"nvgre", "(c) wnvd NVGRE", func(b *bed) error { return b.wnvd(policy.EncapNVGRE) }},
		{"ovs", "(d) OVS userspace + VXLAN", (*bed).ovs},
		{"veth", "limit: bare veth pair", (*bed).veth},
	}
	// Each round measures every setup once, in order, and a figure is the
	// median of its rounds: load that comes and goes on a shared machine
	// then weighs on every setup alike.
	rounds := make([][]figures, len(setups))
	skipped := map[int]figures{}
	for r := range o.rounds {
		for i, s := range setups {
			if o.only != "" && !strings.Contains(","+o.only+",", ","+s.key+",") {
				continue
			}
			if _, ok := skipped[i]; ok {
				continue
			}
			b := &bed{o: o, id: fmt.Sprintf("%d%d", os.Getpid()%10000, i), dir: must(os.MkdirTemp("", "dpbench"))}
			label := fmt.Sprintf("%s, round %d/%d", s.name, r+1, o.rounds)
			fmt.Fprintf(os.Stderr, "%s: building\n", label)
			f, err := func() (figures, error) {
				defer b.close()
				if err := b.base(); err != nil {
					return figures{}, err
				}
				if err := s.build(b); err != nil {
					return figures{}, err
				}
				return b.measure(ctx, label)
			}()
			if err != nil && b.skippable && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "%s: not measured: %v\n", s.name, err)
				skipped[i] = figures{name: s.name, note: "not measured: " + err.Error(), skipped: true}
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			f.name, f.note = s.name, b.note
			fmt.Fprintf(os.Stderr, "%s: TCP %.2f and %.2f Gbit/s, UDP %.0f kpps, %.0f round trips/s\n", label, f.tcp1, f.tcp4, f.pps/1e3, f.rr)
			rounds[i] = append(rounds[i], f)
		}
	}
	var results []figures
	for i := range setups {
		if f, ok := skipped[i]; ok {
			results = append(results, f)
		} else if len(rounds[i]) > 0 {
			results = append(results, median(rounds[i]))
		}
	}
	print(results, o)
	return nil
}

// median is a setup's figures, each the median of its rounds'.
func median(fs []figures) figures {
	m := fs[0]
	for _, field := range []func(*figures) *float64{
		func(f *figures) *float64 { return &f.tcp1 }, func(f *figures) *float64 { return &f.tcp4 },
		func(f *figures) *float64 { return &f.pps }, func(f *figures) *float64 { return &f.rr },
		func(f *figures) *float64 { return &f.cpuPerGbit }, func(f *figures) *float64 { return &f.kernelPath },
	} {
		vs := make([]float64, len(fs))
		for i := range fs {
			vs[i] = *field(&fs[i])
		}
		slices.Sort(vs)
		*field(&m) = vs[len(vs)/2]
		if len(vs)%2 == 0 {
			*field(&m) = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
		}
	}
	return m
}

func must[T any](v T, err error) T {
	exitOn(err)
	return v
}

// bed is one two-host setup: namespaces h0, h1 (hosts, joined by a veth
// underlay) and v0, v1 (one VM behind each host).
type bed struct {
	o       options
	id, dir string
	nss     []string
	procs   []*exec.Cmd
	wnvds   []*exec.Cmd
	clients []*provider.Client // the wnvds' provider APIs

	// Set by the setup: a note printed under the table, and whether a
	// failure only skips the setup (OVS): runAll says why and goes on.
	note      string
	skippable bool
}

func (b *bed) ns(role string) string { return "wnvb" + b.id + role }
func (b *bed) host(i int) string     { return b.ns(fmt.Sprintf("h%d", i)) }
func (b *bed) vm(i int) string       { return b.ns(fmt.Sprintf("v%d", i)) }
func (b *bed) underlay(i int) string { return fmt.Sprintf("wbu%s%d", b.id, i) }

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func each(cmds [][]string) error {
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			return err
		}
	}
	return nil
}

func (b *bed) base() error {
	for _, ns := range []string{b.host(0), b.host(1), b.vm(0), b.vm(1)} {
		if err := ip("netns", "add", ns); err != nil {
			return err
		}
		b.nss = append(b.nss, ns)
		if err := ip("-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	return each([][]string{
		{"link", "add", b.underlay(0), "netns", b.host(0), "type", "veth", "peer", "name", b.underlay(1), "netns", b.host(1)},
		{"-n", b.host(0), "link", "set", b.underlay(0), "mtu", strconv.Itoa(b.o.mtu), "up"},
		{"-n", b.host(1), "link", "set", b.underlay(1), "mtu", strconv.Itoa(b.o.mtu), "up"},
	})
}

// kernel builds the baseline: on each host a vxlan device and the VM's veth
// in a bridge, static FDB entries, and an all-zero entry to flood ARP to the
// peer.
func (b *bed) kernel() error {
	// The vxlan device's own default: the underlay MTU less 50 bytes of
	// outer headers, as wnvd gives its VXLAN ports.
	vmMTU := strconv.Itoa(b.o.mtu - 50)
	for i := range 2 {
		h, peer := b.host(i), 1-i
		if err := each([][]string{
			{"-n", h, "addr", "add", pa[i].String() + "/24", "dev", b.underlay(i)},
			{"-n", h, "link", "add", "vx0", "type", "vxlan", "id", strconv.Itoa(vsid), "dstport", "4789", "local", pa[i].String(), "nolearning", "dev", b.underlay(i)},
			{"-n", h, "link", "add", "br0", "type", "bridge"},
			{"-n", h, "link", "add", "vm", "type", "veth", "peer", "name", "eth0", "netns", b.vm(i)},
			{"-n", h, "link", "set", "vx0", "master", "br0", "up"},
			{"-n", h, "link", "set", "vm", "master", "br0", "mtu", vmMTU, "up"},
			{"-n", h, "link", "set", "br0", "up"},
			{"-n", b.vm(i), "link", "set", "eth0", "address", mac[i].String(), "mtu", vmMTU, "up"},
			{"-n", b.vm(i), "addr", "add", ca[i].String() + "/24", "dev", "eth0"},
		}); err != nil {
			return err
		}
		for _, m := range []string{mac[peer].String(), "00:00:00:00:00:00"} {
			if out, err := exec.Command("bridge", "-n", h, "fdb", "append", m, "dev", "vx0", "dst", pa[peer].String()).CombinedOutput(); err != nil {
				return fmt.Errorf("bridge fdb append %s: %v: %s", m, err, out)
			}
		}
	}
	return nil
}

// wnvd runs wnvd on each host and provisions both VMs in one virtual subnet
// with the given encapsulation.
func (b *bed) wnvd(encap policy.Encapsulation) error {
	ctx := context.Background()
	for i := range 2 {
		sock := filepath.Join(b.dir, fmt.Sprintf("h%d.sock", i))
		cmd := exec.Command("ip", "netns", "exec", b.host(i), b.o.wnvd, "host", "--name", fmt.Sprintf("h%d", i),
			"--underlay", b.underlay(i), "--socket", sock, "--notify-socket", filepath.Join(b.dir, fmt.Sprintf("h%d.notify", i)), "--log-level", "warn", "--gso-tap="+b.o.gsoTAP, "--fast-path="+b.o.fastPath)
		logf, err := os.Create(filepath.Join(b.dir, fmt.Sprintf("h%d.log", i)))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		b.procs = append(b.procs, cmd)
		b.wnvds = append(b.wnvds, cmd)
		c := provider.NewClient(sock)
		b.clients = append(b.clients, c)
		if err := waitFor(ctx, 10*time.Second, func() error { _, err := c.Global(ctx); return err }); err != nil {
			return fmt.Errorf("wnvd on %s did not start (log %s): %w", b.host(i), logf.Name(), err)
		}
		if encap != policy.EncapNVGRE {
			if _, err := c.AddVirtualSubnet(ctx, policy.VirtualSubnet{VirtualSubnetID: vsid, Encapsulation: encap}); err != nil {
				return err
			}
		}
		if _, err := c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: vsid, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/24")}); err != nil {
			return err
		}
		for j := range 2 {
			if _, err := c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca[j], VirtualSubnetID: vsid, MACAddress: mac[j], ProviderAddress: pa[j], Rule: policy.TranslationMethodEncap}); err != nil {
				return err
			}
		}
		if _, err := c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa[i], PrefixLength: 24}); err != nil {
			return err
		}
		// The VM's NIC is a veth pair, as a container runtime makes it:
		// eth0 in the VM, the host end attached as the port.
		port := fmt.Sprintf("wbt%s%d", b.id, i)
		vmMTU := strconv.Itoa(b.o.mtu - 50)
		if err := each([][]string{
			{"link", "add", port, "netns", b.host(i), "mtu", vmMTU, "type", "veth", "peer", "name", "eth0", "netns", b.vm(i), "mtu", vmMTU, "address", mac[i].String()},
			{"-n", b.vm(i), "link", "set", "eth0", "up"},
		}); err != nil {
			return err
		}
		if _, err := c.AttachPort(ctx, provider.PortSpec{Name: "vm", Interface: port,
			MACAddress: mac[i], VirtualSubnetID: vsid, CustomerAddresses: []netip.Addr{ca[i]}}); err != nil {
			return err
		}
		if err := ip("-n", b.vm(i), "addr", "add", ca[i].String()+"/24", "dev", "eth0"); err != nil {
			return err
		}
		if err := waitFor(ctx, 10*time.Second, func() error {
			pas, err := c.ProviderAddresses(ctx, policy.ProviderAddressFilter{ProviderAddress: []netip.Addr{pa[i]}})
			if err == nil && (len(pas) != 1 || pas[0].AddressState != policy.AddressPreferred) {
				err = errors.New("provider address not Preferred yet")
			}
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// waitFor retries f until it succeeds, for at most d, or until ctx ends
// (an interrupt): then it returns ctx's error.
func waitFor(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *bed) close() {
	for _, p := range b.procs {
		p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
	for _, ns := range b.nss {
		ip("netns", "del", ns)
	}
	os.RemoveAll(b.dir)
}

// vmArgv runs args in VM i's namespace, pinned to a CPU of its own when
// the machine has two or more: left to the scheduler, sender and receiver
// sometimes share a CPU and a round's figures swing by a third, for every
// setup differently, which no median over three rounds evens out.
func (b *bed) vmArgv(i int, args ...string) []string {
	argv := []string{"netns", "exec", b.vm(i)}
	if n := runtime.NumCPU(); n >= 2 {
		argv = append(argv, "taskset", "-c", strconv.Itoa(i%n))
	}
	return append(argv, args...)
}

// inVM starts a long-running command in VM i's namespace.
func (b *bed) inVM(i int, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command("ip", b.vmArgv(i, args...)...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b.procs = append(b.procs, cmd)
	return cmd, nil
}

// runVM runs a command in VM i's namespace to its end, or kills it when ctx
// ends.
func (b *bed) runVM(ctx context.Context, i int, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ip", b.vmArgv(i, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
	}
	return out, err
}

func (b *bed) measure(ctx context.Context, name string) (figures, error) {
	f := figures{name: name}
	secs := strconv.Itoa(int(b.o.duration.Seconds()))
	if _, err := b.inVM(1, "iperf3", "-s", "-B", ca[1].String()); err != nil {
		return f, err
	}
	if _, err := b.inVM(1, b.o.self, "rr-serve"); err != nil {
		return f, err
	}
	// Reachability first: ARP, and both servers listening.
	if err := waitFor(ctx, 10*time.Second, func() error {
		_, err := b.runVM(ctx, 0, b.o.self, "rr-client", ca[1].String(), "200ms")
		return err
	}); err != nil {
		return f, fmt.Errorf("VM 1 is not reachable from VM 0: %w", err)
	}
	iperf := func(args ...string) (iperfResult, error) {
		var r iperfResult
		var out []byte
		err := waitFor(ctx, 5*time.Second, func() error {
			var err error
			out, err = b.runVM(ctx, 0, append([]string{"iperf3", "-J", "-c", ca[1].String(), "-t", secs}, args...)...)
			return err
		})
		if err != nil {
			return r, err
		}
		if err := json.Unmarshal(out, &r); err != nil {
			return r, fmt.Errorf("iperf3 output: %w", err)
		}
		return r, nil
	}
	fmt.Fprintf(os.Stderr, "%s: TCP, 1 stream\n", name)
	cpu0 := b.wnvdCPU()
	r, err := iperf()
	if err != nil {
		return f, err
	}
	cpu := b.wnvdCPU() - cpu0
	f.tcp1 = r.End.SumReceived.BitsPerSecond / 1e9
	if gbit := r.End.SumReceived.Bytes * 8 / 1e9; len(b.wnvds) > 0 && gbit > 0 {
		f.cpuPerGbit = cpu / gbit
	}
	fmt.Fprintf(os.Stderr, "%s: TCP, 4 streams\n", name)
	if r, err = iperf("-P", "4"); err != nil {
		return f, err
	}
	f.tcp4 = r.End.SumReceived.BitsPerSecond / 1e9
	fmt.Fprintf(os.Stderr, "%s: 64-byte UDP frames\n", name)
	// 18 bytes of payload + 8 UDP + 20 IP + 14 Ethernet + 4 FCS = 64.
	if r, err = iperf("-u", "-b", "0", "-l", "18"); err != nil {
		return f, err
	}
	f.pps = float64(r.End.Sum.Packets-r.End.Sum.LostPackets) / r.End.Sum.Seconds
	fmt.Fprintf(os.Stderr, "%s: round trips\n", name)
	out, err := b.runVM(ctx, 0, b.o.self, "rr-client", ca[1].String(), b.o.duration.String())
	if err != nil {
		return f, err
	}
	if f.rr, err = strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err != nil {
		return f, fmt.Errorf("rr-client printed %q", out)
	}
	if f.kernelPath, err = b.kernelPathShare(ctx); err != nil {
		return f, err
	}
	return f, ctx.Err()
}

// kernelPathShare is the share of the frames, on both hosts since they
// started, that wnvd's kernel fast path forwarded rather than handed to
// its switch; -1 for a setup without wnvd.
func (b *bed) kernelPathShare(ctx context.Context) (float64, error) {
	if len(b.clients) == 0 {
		return -1, nil
	}
	var kernel, all uint64
	for _, c := range b.clients {
		cs, err := c.Counters(ctx)
		if err != nil {
			return 0, fmt.Errorf("reading wnvd's counters: %w", err)
		}
		if p := cs.Paths; p != nil {
			kernel += p.KernelFromPorts + p.KernelFromUnderlay
			all += p.KernelFromPorts + p.KernelFromUnderlay + p.SlowFromPorts + p.SlowFromUnderlay
		}
	}
	if all == 0 {
		return 0, nil // the fast path counted nothing (--fast-path=off)
	}
	return float64(kernel) / float64(all), nil
}

type iperfResult struct {
	End struct {
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		Sum struct {
			Seconds     float64 `json:"seconds"`
			Packets     int64   `json:"packets"`
			LostPackets int64   `json:"lost_packets"`
		} `json:"sum"`
	} `json:"end"`
}

// wnvdCPU is the CPU seconds (user + system) the bed's wnvd processes used
// so far.
func (b *bed) wnvdCPU() float64 {
	var total float64
	for _, p := range b.wnvds {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name; utime and stime are
		// fields 14 and 15 of the whole line.
		s := string(data)
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseFloat(fs[11], 64)
		st, _ := strconv.ParseFloat(fs[12], 64)
		total += (ut + st) / 100 // USER_HZ
	}
	return total
}

// rrServe echoes UDP datagrams on port 7008.
func rrServe() error {
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: 7008})
	if err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		c.WriteToUDPAddrPort(buf[:n], from)
	}
}

// rrClient does request/response round trips with rrServe at addr for a
// duration and prints the round trips per second; it fails if none succeeds.
func rrClient(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: rr-client <address> <duration>")
	}
	d, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	c, err := net.Dial("udp", net.JoinHostPort(args[0], "7008"))
	if err != nil {
		return err
	}
	defer c.Close()
	req, buf := []byte("dpbench round trip"), make([]byte, 2048)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		c.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Write(req); err != nil {
			continue
		}
		if _, err := c.Read(buf); err == nil {
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("no answer from %s within %v", args[0], d)
	}
	fmt.Printf("%.0f\n", float64(n)/time.Since(start).Seconds())
	return nil
}

func print(rs []figures, o options) {
	var base *figures
	for i := range rs {
		if strings.HasPrefix(rs[i].name, "(a)") {
			base = &rs[i]
		}
	}
	ratio := func(v, b float64) string {
		if base == nil || b == 0 || v == 0 {
			return ""
		}
		return fmt.Sprintf(" (%.2fx)", v/b)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(w, "setup\tTCP 1 stream Gbit/s\tTCP 4 streams Gbit/s\t64-byte UDP kpps\tround trips/s\twnvd CPU s/Gbit\tkernel path\n")
	for _, r := range rs {
		if r.skipped {
			continue
		}
		var b figures
		if base != nil {
			b = *base
		}
		cpu := "-"
		if r.cpuPerGbit > 0 {
			cpu = fmt.Sprintf("%.2f", r.cpuPerGbit)
		}
		path := "-"
		if r.kernelPath >= 0 {
			path = fmt.Sprintf("%.2f%%", 100*r.kernelPath)
		}
		fmt.Fprintf(w, "%s\t%.2f%s\t%.2f%s\t%.0f%s\t%.0f%s\t%s\t%s\n", r.name,
			r.tcp1, ratio(r.tcp1, b.tcp1), r.tcp4, ratio(r.tcp4, b.tcp4),
			r.pps/1e3, ratio(r.pps, b.pps), r.rr, ratio(r.rr, b.rr), cpu, path)
	}
	w.Flush()
	for _, r := range rs {
		if r.note != "" {
			fmt.Printf("%s: %s\n", r.name, r.note)
		}
	}
	fmt.Printf("each figure is the median of %d rounds of %v; underlay MTU %d; ratios are to (a) measured in the same rounds; "+
		"kernel path: the share of wnvd's frames its kernel fast path forwarded (the rest went through its switch)\n", o.rounds, o.duration, o.mtu)
}
