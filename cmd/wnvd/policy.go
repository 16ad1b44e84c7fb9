package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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
	tlsCert, tlsKey            string
	pkiDir                     string
	serverNames                []string
	insecurePlainHTTP          bool
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
serve one etcd cluster (give each a copy of the same --pki-dir).

It serves HTTPS and authenticates every client by its certificate (mutual
TLS), authorizing by the certificate's role: admin, tenant, host or observer
(docs/security.md). On first start it creates its CA in --pki-dir and an
admin credential for the local operator in <pki-dir>/admin (use it with
wnvctl --credentials <pki-dir>/admin).`,
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
	fl.StringVar(&f.pkiDir, "pki-dir", "", "the policy server's CA, server certificate and first admin credential (default <data-dir>/pki; created on first start)")
	fl.StringSliceVar(&f.serverNames, "server-name", nil, "extra DNS name or IP address for the server certificate (repeatable; the --listen address and localhost are always in it)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve this certificate (PEM) instead of one from --pki-dir's CA; clients are still authenticated by that CA")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fl.BoolVar(&f.insecurePlainHTTP, "insecure-plain-http", false, "INSECURE, for tests only: serve plain HTTP with no authentication; anyone who reaches --listen is an admin")
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
	case f.insecurePlainHTTP && f.tlsCert != "":
		return errors.New("--insecure-plain-http serves no TLS: drop --tls-cert/--tls-key or it")
	case f.pkiDir == "" && !f.insecurePlainHTTP && !embedded:
		return errors.New("--pki-dir is needed with --etcd-endpoints: the directory of the policy server's CA (copy it to every replica)")
	case embedded && (f.etcdCA != "" || f.etcdCert != "" || f.etcdKey != ""):
		return errors.New("--etcd-ca, --etcd-cert and --etcd-key are for an external cluster: use them with --etcd-endpoints")
	case (f.etcdCert == "") != (f.etcdKey == ""):
		return errors.New("--etcd-cert and --etcd-key go together: give both or neither")
	case f.etcdQuota <= 0:
		return fmt.Errorf("--etcd-quota-bytes %d is not positive: use e.g. %d (2 GiB)", f.etcdQuota, policyserver.DefaultQuotaBytes)
	}
	if f.pkiDir == "" && !f.insecurePlainHTTP {
		f.pkiDir = filepath.Join(f.dataDir, "pki")
	}
	return nil
}

func runPolicy(ctx context.Context, f policyFlags, log *slog.Logger) error {
	var etcdTLS *tls.Config
	var err error
	var sp *pki.ServerPKI
	if !f.insecurePlainHTTP {
		if sp, err = serverPKI(f); err != nil {
			return err
		}
		if sp.Created {
			log.Info("created the policy server's CA and the local admin credential", "pki-dir", sp.Dir, "admin", sp.AdminDir())
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
	st := policyserver.NewStore(cli)
	st.MaxWatchesPerClient = f.maxWatches
	var handler http.Handler
	var serverTLS *tls.Config
	url := "http://" + ln.Addr().String()
	if f.insecurePlainHTTP {
		log.Warn("INSECURE: --insecure-plain-http serves plain HTTP without authentication: anyone who reaches this address is an admin of every tenant; use it for tests only", "url", url)
		handler = policyserver.NewHandler(st, log)
	} else {
		auth, err := policyserver.NewAuth(ctx, st, sp, log)
		if err != nil {
			ln.Close()
			return err
		}
		handler, serverTLS, url = policyserver.NewSecureHandler(st, log, auth), sp.TLSConfig(), "https://"+ln.Addr().String()
		if f.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
			if err != nil {
				ln.Close()
				return fmt.Errorf("--tls-cert %s / --tls-key %s could not be loaded: %w", f.tlsCert, f.tlsKey, err)
			}
			serverTLS.Certificates = []tls.Certificate{cert}
		}
	}
	var metricsLn net.Listener
	if f.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", f.metricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-addr %s: %w", f.metricsAddr, err)
		}
	}
	log.Info("wnvd policy running", "url", url, "etcd", strings.Join(endpoints, ","), "mutual-tls", serverTLS != nil, "metrics", f.metricsAddr)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return policyserver.Serve(ctx, ln, handler, serverTLS, lim) })
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

// serverPKI loads (or creates) the CA and issues the server a certificate
// for its --listen address, host name and --server-name entries.
func serverPKI(f policyFlags) (*pki.ServerPKI, error) {
	var dns []string
	var ips []netip.Addr
	if host, _, err := net.SplitHostPort(f.listen); err == nil && host != "" {
		if a, err := netip.ParseAddr(host); err == nil {
			if !a.IsUnspecified() {
				ips = append(ips, a)
			}
		} else {
			dns = append(dns, host)
		}
	}
	if h, err := os.Hostname(); err == nil {
		dns = append(dns, h)
	}
	for _, n := range f.serverNames {
		if a, err := netip.ParseAddr(n); err == nil {
			ips = append(ips, a)
		} else {
			dns = append(dns, n)
		}
	}
	return pki.EnsureServerPKI(f.pkiDir, dns, ips, time.Now())
}
