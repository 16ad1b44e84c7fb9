package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/wnv/wnv/bounded"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyserver"
)

func init() { rootCmd.AddCommand(policyCmd()) }

type policyFlags struct {
	listen, metricsAddr        string
	dataDir                    string
	endpoints                  []string
	etcdClientURL, etcdPeerURL string
	etcdName, etcdCluster      string
	etcdQuota                  int64
	tlsCert, tlsKey, clientCA  string
	etcdCA, etcdCert, etcdKey  string
	maxConns, maxConnsPerIP    int
	maxWatches                 int
	logLevel                   string
}

func policyCmd() *cobra.Command {
	var f policyFlags
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Run the policy server: datacenter policy in etcd, served over HTTP/JSON",
		Long: `Run the policy server. With --data-dir it starts an embedded etcd member
(single node by default, reachable only through a 0600 Unix socket in the data
dir); with --etcd-endpoints it uses an external cluster, with client
certificates (--etcd-ca, --etcd-cert, --etcd-key). Several policy servers may
serve one etcd cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(f.logLevel)
			if err != nil {
				return err
			}
			if err := f.check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runPolicy(ctx, f, log)
		},
	}
	def := bounded.Default()
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8440", "HTTP API address")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:8441", "serve Prometheus /metrics on this TCP address (off when empty)")
	fl.StringVar(&f.dataDir, "data-dir", "", "run an embedded etcd member keeping its data here")
	fl.StringSliceVar(&f.endpoints, "etcd-endpoints", nil, "use this external etcd cluster (comma-separated client URLs)")
	fl.StringVar(&f.etcdClientURL, "etcd-client-url", "", "embedded etcd: client URL (default unix://DATA-DIR/etcd.sock, reachable by this user only; a TCP URL is open to every local user)")
	fl.StringVar(&f.etcdPeerURL, "etcd-peer-url", "", "embedded etcd: peer URL, needed with --etcd-initial-cluster (default: a single member listens for no peers)")
	fl.StringVar(&f.etcdName, "etcd-name", "wnv", "embedded etcd: member name")
	fl.StringVar(&f.etcdCluster, "etcd-initial-cluster", "", "embedded etcd: name=peerURL,... of every member (default: this member alone)")
	fl.Int64Var(&f.etcdQuota, "etcd-quota-bytes", policyserver.DefaultQuotaBytes, "embedded etcd: backend space quota; when reached, writes get 507 until compaction and defragmentation free space")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fl.StringVar(&f.clientCA, "tls-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	fl.StringVar(&f.etcdCA, "etcd-ca", "", "external etcd: CA to trust")
	fl.StringVar(&f.etcdCert, "etcd-cert", "", "external etcd: client certificate")
	fl.StringVar(&f.etcdKey, "etcd-key", "", "external etcd: client key")
	fl.IntVar(&f.maxConns, "max-conns", def.MaxConns, "most open connections to the API (0: no cap)")
	fl.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", def.MaxConnsPerIP, "most open connections to the API from one client address (0: no cap)")
	fl.IntVar(&f.maxWatches, "max-watches-per-client", policyserver.DefaultMaxWatchesPerClient, "most watch streams of one client (TLS CommonName, else address); one more gets 429 (0: no cap)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func (f *policyFlags) check() error {
	embedded, external := f.dataDir != "", len(f.endpoints) > 0
	switch {
	case embedded == external:
		return errors.New("give exactly one of --data-dir (embedded etcd) and --etcd-endpoints (external cluster)")
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key go together: give both or neither")
	case f.clientCA != "" && f.tlsCert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS runs over HTTPS")
	case embedded && (f.etcdCA != "" || f.etcdCert != "" || f.etcdKey != ""):
		return errors.New("--etcd-ca, --etcd-cert and --etcd-key are for an external cluster: use them with --etcd-endpoints")
	case (f.etcdCert == "") != (f.etcdKey == ""):
		return errors.New("--etcd-cert and --etcd-key go together: give both or neither")
	case f.etcdQuota <= 0:
		return fmt.Errorf("--etcd-quota-bytes %d is not positive: use e.g. %d (2 GiB)", f.etcdQuota, policyserver.DefaultQuotaBytes)
	}
	return nil
}

func runPolicy(ctx context.Context, f policyFlags, log *slog.Logger) error {
	var serverTLS, etcdTLS *tls.Config
	var err error
	if f.tlsCert != "" {
		if serverTLS, err = pki.ServerTLS(f.tlsCert, f.tlsKey, f.clientCA); err != nil {
			return err
		}
	}
	endpoints := f.endpoints
	maint := &policyserver.Maintenance{Log: log, Metrics: policyserver.NewMetrics()}
	if f.dataDir != "" {
		ec := policyserver.EmbedConfig{DataDir: f.dataDir, Name: f.etcdName, ClientURL: f.etcdClientURL, PeerURL: f.etcdPeerURL,
			InitialCluster: f.etcdCluster, QuotaBytes: f.etcdQuota}
		e, err := policyserver.StartEmbedded(ctx, ec)
		if err != nil {
			return err
		}
		defer e.Close()
		endpoints = []string{ec.Endpoint()}
		maint.Quota, maint.Repair = f.etcdQuota, true
		if !strings.HasPrefix(ec.Endpoint(), "unix://") {
			log.Warn("embedded etcd serves clients over TCP without authentication: every local user can read and write the policy", "client", ec.Endpoint())
		}
		log.Info("embedded etcd running", "data-dir", f.dataDir, "client", ec.Endpoint(), "peer", f.etcdPeerURL, "quota-bytes", f.etcdQuota)
	} else if f.etcdCA != "" || f.etcdCert != "" {
		if etcdTLS, err = pki.ClientTLS(f.etcdCA, f.etcdCert, f.etcdKey); err != nil {
			return err
		}
	}
	maint.Endpoint = endpoints[0]
	cli, err := policyserver.Connect(endpoints, etcdTLS)
	if err != nil {
		return err
	}
	defer cli.Close()
	maint.Cli = cli
	lim := bounded.Default()
	lim.MaxConns, lim.MaxConnsPerIP = f.maxConns, f.maxConnsPerIP
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", f.listen, err)
	}
	var metricsLn net.Listener
	if f.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", f.metricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-addr %s: %w", f.metricsAddr, err)
		}
	}
	st := policyserver.NewStore(cli)
	st.MaxWatchesPerClient = f.maxWatches
	scheme := "http"
	if serverTLS != nil {
		scheme = "https"
	}
	log.Info("wnvd policy running", "url", scheme+"://"+ln.Addr().String(), "etcd", strings.Join(endpoints, ","), "mutual-tls", f.clientCA != "", "metrics", f.metricsAddr)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return policyserver.Serve(ctx, ln, policyserver.NewHandler(st, log), serverTLS, lim) })
	g.Go(func() error { maint.Run(ctx); return nil })
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", maint.Metrics.Handler())
		g.Go(func() error { return policyserver.Serve(ctx, metricsLn, mux, nil, bounded.Default()) })
	}
	err = g.Wait()
	log.Info("wnvd policy stopped")
	return err
}
