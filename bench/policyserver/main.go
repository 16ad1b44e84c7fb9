// Command policyserver is the policy server scale benchmark: one policy
// server (with its embedded etcd) in a child process, and in this process
// many simulated hosts, each watching its routing domains over its own HTTP
// connection. It populates tenants, subnets, hosts and VMs through the API,
// live-migrates VMs one at a time, and prints how long a migration's update
// takes to reach every interested host, the server's memory, and the memory
// of a host-agent-like consumer holding records in a policy.Store.
//
//	go run ./bench/policyserver [-hosts 1000] [-vms 100000] [-rds 100] [-hosts-per-rd 100] [-migrations 100]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wnv/wnv/bounded"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/policyserver"
)

var (
	flagHosts      = flag.Int("hosts", 1000, "simulated watching hosts")
	flagVMs        = flag.Int("vms", 100000, "VMs")
	flagRDs        = flag.Int("rds", 100, "routing domains (one subnet each); VMs are spread evenly")
	flagHostsPerRD = flag.Int("hosts-per-rd", 100, "hosts each routing domain's VMs are spread over (a migration reaches these)")
	flagMigrations = flag.Int("migrations", 100, "live migrations, one at a time")
	flagRecords    = flag.Int("records", 10000, "records held by the simulated host agent's policy.Store")
	flagWorkers    = flag.Int("workers", 64, "concurrent API calls while populating")
	flagFsync      = flag.Bool("fsync", false, "let etcd fsync (slower population; default off, as in a tmpfs-backed run)")
	flagServe      = flag.String("serve", "", "internal: run the server child with this data directory")
)

func main() {
	flag.Parse()
	raiseFDLimit()
	if *flagServe != "" {
		if err := serve(*flagServe); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func raiseFDLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) // best effort: the run reports dial errors otherwise
	}
}

// serve is the child: embedded etcd and the policy server, plus /debug/mem.
// It prints its URL on the first line of stdout.
func serve(dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cu, pu := freeURL(), freeURL()
	e, err := policyserver.StartEmbedded(ctx, policyserver.EmbedConfig{DataDir: dir, ClientURL: cu, PeerURL: pu, UnsafeNoFsync: !*flagFsync})
	if err != nil {
		return err
	}
	defer e.Close()
	cli, err := policyserver.Connect([]string{cu}, nil)
	if err != nil {
		return err
	}
	defer cli.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	st := policyserver.NewStore(cli)
	st.MaxWatchesPerClient = 0
	mux.Handle("/", policyserver.NewHandler(st, slog.New(slog.NewTextHandler(os.Stderr, nil))))
	mux.HandleFunc("/debug/mem", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(memNow())
	})
	fmt.Println("http://" + ln.Addr().String())
	// Every simulated host connects from 127.0.0.1 with its own connection
	// and watch stream.
	lim := bounded.Default()
	lim.MaxConns, lim.MaxConnsPerIP = 0, 0
	return policyserver.Serve(ctx, ln, mux, nil, lim)
}

func freeURL() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

type mem struct{ HeapInuse, RSS uint64 }

// memNow is the Go heap in use after a GC and the process's resident set.
func memNow() mem {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := mem{HeapInuse: ms.HeapInuse}
	b, _ := os.ReadFile("/proc/self/status")
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			m.RSS = kb << 10
		}
	}
	return m
}

func rdID(i int) policy.GUID {
	return policy.MustParseGUID(fmt.Sprintf("{11111111-0000-0000-0000-%012d}", i))
}

func hostName(i int) string { return fmt.Sprintf("h%04d", i) }

// hostsOf lists the hosts of routing domain r: a window of hosts-per-rd
// hosts starting at a spread offset.
func hostsOf(r int) []int {
	n := min(*flagHostsPerRD, *flagHosts)
	start := r * *flagHosts / *flagRDs
	out := make([]int, n)
	for i := range out {
		out[i] = (start + i) % *flagHosts
	}
	return out
}

func vmCA(j int) netip.Addr {
	k := j / *flagRDs                                                                       // index inside its routing domain
	return netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}).Next().Next() // past the network and gateway addresses
}

func run() error {
	dir, err := os.MkdirTemp("", "wnv-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(exe, "-serve", dir, "-fsync="+strconv.FormatBool(*flagFsync))
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer func() {
		child.Process.Signal(syscall.SIGTERM)
		child.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("server child did not start: %w", err)
	}
	base := strings.TrimSpace(line)
	ctx := context.Background()
	admin := policyclient.New(base, nil)
	results := [][2]string{}
	add := func(k, v string) { results = append(results, [2]string{k, v}); fmt.Printf("%-44s %s\n", k, v) }

	fmt.Printf("policy server %s; %d hosts, %d VMs, %d routing domains, %d hosts per routing domain\n",
		base, *flagHosts, *flagVMs, *flagRDs, *flagHostsPerRD)
	t0 := time.Now()
	if err := populate(ctx, admin); err != nil {
		return err
	}
	add("populate (API calls over HTTP)", fmt.Sprintf("%.1fs (%.0f VMs/s)", time.Since(t0).Seconds(), float64(*flagVMs)/time.Since(t0).Seconds()))
	p, err := admin.Policy(ctx, rdID(0))
	if err != nil {
		return err
	}
	m0 := serverMem(base)

	// Simulated hosts: one HTTP connection and one watch stream each.
	interested := make([][]int, *flagHosts) // host -> routing domains
	for r := range *flagRDs {
		for _, h := range hostsOf(r) {
			interested[h] = append(interested[h], r)
		}
	}
	var migs sync.Map // VM name -> *migration
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ready, connErrs atomic.Int64
	t1 := time.Now()
	for h := range *flagHosts {
		rds := make([]policy.GUID, len(interested[h]))
		for i, r := range interested[h] {
			rds[i] = rdID(r)
		}
		c := policyclient.New(base, nil)
		go func() {
			for ev, err := range c.Watch(wctx, p.Revision, rds...) {
				if err != nil {
					connErrs.Add(1)
					continue
				}
				if ev.Type == policyapi.EventProgress && ev.Revision == p.Revision {
					ready.Add(1)
				}
				if ev.Kind == policyapi.KindVM && ev.Type == policyapi.EventPut {
					if m, ok := migs.Load(ev.Name); ok {
						m.(*migration).arrived(ev.VM.Host)
					}
				}
			}
		}()
	}
	for ready.Load() < int64(*flagHosts) {
		if time.Since(t1) > 2*time.Minute {
			return fmt.Errorf("only %d of %d hosts are watching after 2 minutes", ready.Load(), *flagHosts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	add("watch streams connected", fmt.Sprintf("%d in %.1fs", *flagHosts, time.Since(t1).Seconds()))
	m1 := serverMem(base)

	// Migrations, one at a time.
	rng := rand.New(rand.NewPCG(1, 2))
	var all, each []time.Duration
	lost := 0
	for range *flagMigrations {
		j := rng.IntN(*flagVMs)
		r := j % *flagRDs
		name := fmt.Sprintf("vm%06d", j)
		vm, err := admin.VM(ctx, name)
		if err != nil {
			return err
		}
		hs := hostsOf(r)
		to := hostName(hs[rng.IntN(len(hs))])
		for to == vm.Host {
			to = hostName(hs[rng.IntN(len(hs))])
		}
		m := &migration{want: int64(len(hs)), to: to, done: make(chan struct{})}
		migs.Store(name, m)
		m.start = time.Now()
		if _, err := admin.MigrateVM(ctx, name, to); err != nil {
			return err
		}
		select {
		case <-m.done:
			all = append(all, m.last)
		case <-time.After(10 * time.Second):
			lost++
		}
		migs.Delete(name)
		each = append(each, m.latencies()...)
	}
	add("migration reaches every interested host p50", pct(all, 50))
	add("migration reaches every interested host p99", pct(all, 99))
	add("one host's update after a migration p50", pct(each, 50))
	add("one host's update after a migration p99", pct(each, 99))
	add("interested hosts per migration", strconv.Itoa(len(hostsOf(0))))
	if lost > 0 {
		add("migrations not seen by every host in 10s", strconv.Itoa(lost))
	}
	add("watch reconnects", strconv.FormatInt(connErrs.Load(), 10))
	add("server heap in use / RSS, populated", fmt.Sprintf("%s / %s", mib(m0.HeapInuse), mib(m0.RSS)))
	add("server heap in use / RSS, with watchers", fmt.Sprintf("%s / %s", mib(m1.HeapInuse), mib(m1.RSS)))
	cancel()

	n, agent, err := agentMemory(ctx, admin)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("host agent policy.Store with %d records", n), fmt.Sprintf("%s (%d B/record)", mib(agent), agent/uint64(max(n, 1))))

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SUMMARY\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

type migration struct {
	start time.Time
	to    string
	want  int64
	got   atomic.Int64
	mu    sync.Mutex
	times []time.Duration
	last  time.Duration
	done  chan struct{}
}

// arrived counts one host seeing the migrated VM on its new host.
func (m *migration) arrived(host string) {
	if host != m.to {
		return
	}
	d := time.Since(m.start)
	m.mu.Lock()
	m.times = append(m.times, d)
	m.mu.Unlock()
	if m.got.Add(1) == m.want {
		m.last = d
		close(m.done)
	}
}

func (m *migration) latencies() []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.times)
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond).String()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func serverMem(base string) mem {
	var m mem
	resp, err := http.Get(base + "/debug/mem")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &m)
	return m
}

// populate creates one tenant, the routing domains with one subnet each,
// the hosts and the VMs, with -workers concurrent calls.
func populate(ctx context.Context, c *policyclient.Client) error {
	tenant := policy.MustParseGUID("{aaaaaaaa-0000-0000-0000-000000000001}")
	if _, err := c.CreateTenant(ctx, policyapi.Tenant{CustomerID: tenant, Name: "bench"}); err != nil {
		return err
	}
	perRD := (*flagVMs + *flagRDs - 1) / *flagRDs
	bits := 32 - 1
	for 1<<(32-bits) < perRD+4 {
		bits--
	}
	// phase runs f(0..n-1) on -workers goroutines and waits for all.
	phase := func(n int, f func(i int) error) error {
		var next atomic.Int64
		var first atomic.Value
		var wg sync.WaitGroup
		for range *flagWorkers {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < n && first.Load() == nil; i = int(next.Add(1) - 1) {
					if err := f(i); err != nil {
						first.CompareAndSwap(nil, err)
					}
				}
			})
		}
		wg.Wait()
		if err, _ := first.Load().(error); err != nil {
			return err
		}
		return nil
	}
	err := phase(*flagRDs, func(r int) error {
		if _, err := c.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rdID(r), CustomerID: tenant}); err != nil {
			return err
		}
		_, err := c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: policy.VSID(5000 + r), RoutingDomainID: rdID(r),
			Prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, 0}), bits)}})
		return err
	})
	if err == nil {
		err = phase(*flagHosts, func(h int) error {
			_, err := c.RegisterHost(ctx, policyapi.Host{Name: hostName(h), TTLSeconds: 3600,
				ProviderAddresses: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(h >> 8), byte(h)}).Next()}})
			return err
		})
	}
	if err == nil {
		err = phase(*flagVMs, func(j int) error {
			r := j % *flagRDs
			hs := hostsOf(r)
			_, err := c.CreateVM(ctx, policyapi.VM{Name: fmt.Sprintf("vm%06d", j), VirtualSubnetID: policy.VSID(5000 + r),
				MACAddress: packet.MAC{0x00, 0x15, 0x5d, byte(j >> 16), byte(j >> 8), byte(j)}, Host: hostName(hs[(j / *flagRDs)%len(hs)]),
				CustomerAddresses: []netip.Addr{vmCA(j)}})
			return err
		})
	}
	return err
}

// agentMemory fetches whole routing domains until it holds -records
// records, installs them in a policy.Store as a host agent does, and
// returns how much heap the store holds.
func agentMemory(ctx context.Context, c *policyclient.Client) (int, uint64, error) {
	var pols []policyapi.Policy
	n := 0
	for r := 0; r < *flagRDs && n < *flagRecords; r++ {
		p, err := c.Policy(ctx, rdID(r))
		if err != nil {
			return 0, 0, err
		}
		if extra := n + len(p.Records) - *flagRecords; extra > 0 {
			p.Records = p.Records[:len(p.Records)-extra]
		}
		n += len(p.Records)
		pols = append(pols, p)
	}
	before := heapAlloc()
	st := policy.NewStore()
	for _, p := range pols {
		if err := st.Apply(policy.Batch{AddCustomerRoutes: p.Routes, AddLookupRecords: p.Records}); err != nil {
			return 0, 0, err
		}
	}
	pols = nil
	after := heapAlloc()
	runtime.KeepAlive(st)
	return n, after - before, nil
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
