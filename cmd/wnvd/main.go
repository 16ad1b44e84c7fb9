// Command wnvd is the wnv daemon. `wnvd host` runs one host's switch with its
// provider API, notification API and, with --policy-server, its host agent;
// `wnvd policy` runs the policy server.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/wnv/wnv/bounded"
	"github.com/wnv/wnv/host"
	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/vswitch"
)

// rootCmd is the wnvd command tree; each mode registers itself in its own
// file's init().
var rootCmd = &cobra.Command{Use: "wnvd", Short: "wnv daemon", SilenceUsage: true, SilenceErrors: true}

func init() { rootCmd.AddCommand(hostCmd()) }

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "wnvd:", err)
		os.Exit(1)
	}
}

// newLogger logs text to stderr from the --log-level given.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q is not a level: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func hostCmd() *cobra.Command {
	var (
		cfg          host.Config
		underlay     string
		socket       string
		notifySocket string
		metricsAddr  string
		metricsTLS   host.MetricsTLS
		fastPath     string
		logLevel     string
		ag           agentFlags
		api          apiFlags
	)
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Run the switch of one host: VM ports, underlay, provider and notification APIs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if underlay == "" {
				return errors.New("--underlay is required: name the interface that carries the provider network (several separated by commas)")
			}
			if cfg.Underlays, err = host.ParseUnderlays(underlay); err != nil {
				return err
			}
			if cfg.Name == "" {
				cfg.Name, _ = os.Hostname()
			}
			if cfg.LearnedPerPort < 1 {
				return fmt.Errorf("--learned-per-port %d is invalid: a port must be able to learn at least 1 CA", cfg.LearnedPerPort)
			}
			if cfg.LearnedAge < time.Second {
				return fmt.Errorf("--learned-age %s is invalid: use at least 1s", cfg.LearnedAge)
			}
			cfg.Log = log.With("host", cfg.Name)
			switch fastPath {
			case "on":
			case "off":
				cfg.SlowPathOnly = true
			default:
				return fmt.Errorf("--fast-path %q is invalid: use on or off", fastPath)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runHost(ctx, cfg, socket, notifySocket, metricsAddr, metricsTLS, ag, api)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "host name in logs and metrics (default: the system host name)")
	f.StringVar(&underlay, "underlay", "", "underlay interfaces that carry the provider addresses, separated by commas; the first is the default, of a PA or provider route with InterfaceIndex 0 (required)")
	f.StringVar(&cfg.GSOTAP, "gso-tap", "wnvgso", "TAP through which TCP super-frames go to the kernel as one tunnel GSO packet (needs eBPF; empty segments them in wnvd)")
	f.StringVar(&socket, "socket", "/run/wnv/wnvd.sock", "provider API Unix socket")
	f.StringVar(&notifySocket, "notify-socket", notify.SocketPath(), "notification API Unix socket")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this TCP address (off when empty); without a host (:9464) it is localhost's, give one (0.0.0.0:9464) to serve other machines")
	f.StringVar(&metricsTLS.CertFile, "metrics-tls-cert", "", "serve /metrics over TLS with this certificate (PEM; needs --metrics-tls-key)")
	f.StringVar(&metricsTLS.KeyFile, "metrics-tls-key", "", "the key of --metrics-tls-cert (PEM)")
	f.StringVar(&metricsTLS.ClientCAFile, "metrics-tls-client-ca", "", "require /metrics clients to present a certificate signed by this CA (PEM)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&cfg.AllowUnauthenticatedRedirects, "allow-unauthenticated-redirects", false, "accept redirects without a MAC while no redirect key is installed (PUT /v1/redirect-keys); by default they are dropped as redirect-unauthenticated")
	f.StringVar(&cfg.PinDir, "pin-dir", "", "bpf filesystem directory of the kernel fast path (default /sys/fs/bpf/wnv/<name>-<netns inode>)")
	f.IntVar(&cfg.LearnedPerPort, "learned-per-port", vswitch.DefaultLearnedPerPort, "most CAs a VM port of an L2Only subnet may have learned at once; frames from more are dropped as learn-limit")
	f.DurationVar(&cfg.LearnedAge, "learned-age", vswitch.DefaultLearnedAge, "a CA learned in an L2Only subnet and not heard from for this long is forgotten (its Dynamic record removed)")
	f.StringVar(&fastPath, "fast-path", cmp.Or(os.Getenv("WNV_FAST_PATH"), "on"), "on: decided flows are forwarded in the kernel (eBPF); off: every frame goes through wnvd's switch (default $WNV_FAST_PATH, else on)")
	ag.register(f)
	api.register(f)
	cmd.AddCommand(hostCleanupCmd())
	return cmd
}

// hostCleanupCmd removes what a stopped `wnvd host` left forwarding.
func hostCleanupCmd() *cobra.Command {
	var (
		cfg      host.Config
		underlay string
	)
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what a stopped wnvd host left in place: its kernel fast path (port programs, decisions), its provider addresses and provider routes, and its GSO TAP",
		Long: "wnvd host leaves forwarding in place when it stops (SIGTERM or a crash), so a restarted wnvd adopts it without loss.\n" +
			"cleanup removes it for good: stop wnvd host first, then run it with the same --name (and --pin-dir, if given) in the same network namespace.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Name == "" {
				cfg.Name, _ = os.Hostname()
			}
			if underlay != "" {
				var err error
				if cfg.Underlays, err = host.ParseUnderlays(underlay); err != nil {
					return err
				}
			}
			removed, err := host.Cleanup(cfg)
			for _, r := range removed {
				fmt.Fprintln(cmd.OutOrStdout(), "removed", r)
			}
			if err == nil && len(removed) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to remove: no fast path pinned at", cmp.Or(cfg.PinDir, host.DefaultPinDir(cfg.Name)))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "the stopped host's --name (default: the system host name)")
	f.StringVar(&underlay, "underlay", "", "underlay interfaces, separated by commas, to remove the provider addresses and provider routes from (they stay when empty)")
	f.StringVar(&cfg.PinDir, "pin-dir", "", "the stopped host's --pin-dir (default /sys/fs/bpf/wnv/<name>-<netns inode>)")
	f.StringVar(&cfg.GSOTAP, "gso-tap", "wnvgso", "the stopped host's --gso-tap, left by a kill -9 (none when empty)")
	return cmd
}

func runHost(ctx context.Context, cfg host.Config, socket, notifySocket, metricsAddr string, metricsTLS host.MetricsTLS, ag agentFlags, api apiFlags) error {
	// Its credential is checked before anything touches the network.
	remote, remoteTLS, err := api.open(cfg.Name, ag.credentials)
	if err != nil {
		return err
	}
	if remote != nil {
		// ServeRemote closes it too; this is for the early returns.
		defer remote.Close()
		ag.apiEndpoint = remote.Addr().String()
	}
	hub := notify.NewHub(notify.Config{})
	h, err := host.New(cfg, hub)
	if err != nil {
		return err
	}
	agent, err := ag.start(ctx, cfg, h, socket, notifySocket)
	if err != nil {
		h.Close()
		return err
	}
	var metrics net.Listener
	if metricsAddr != "" {
		if metrics, err = host.ListenMetrics(metricsAddr, metricsTLS); err != nil {
			h.Close()
			return err
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return h.Run(ctx) })
	providerAPI := provider.NewHandler(h)
	g.Go(func() error { return provider.Serve(ctx, socket, providerAPI) })
	if remote != nil {
		g.Go(func() error { return provider.ServeRemote(ctx, remote, remoteTLS, providerAPI) })
	}
	g.Go(func() error { return notify.Serve(ctx, notifySocket, hub) })
	if agent != nil {
		g.Go(func() error { return agent(ctx) })
	}
	if metrics != nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(host.NewCollector(h))
		lim := bounded.Default()
		srv := lim.Server(ctx, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		g.Go(func() error {
			if err := srv.Serve(lim.Listener(metrics)); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			return srv.Close()
		})
	}
	cfg.Log.Info("wnvd host running", "underlays", strings.Join(cfg.Underlays, ","), "mtu", h.UnderlayMTU(), "socket", socket, "api", api.listen, "notify", notifySocket, "metrics", metricsAddr)
	err = g.Wait()
	cfg.Log.Info("wnvd host stopped")
	return err
}
