package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyserver"
)

func init() { rootCmd.AddCommand(policyCmd()) }

type policyFlags struct {
	listen                     string
	dataDir                    string
	endpoints                  []string
	etcdClientURL, etcdPeerURL string
	etcdName, etcdCluster      string
	tlsCert, tlsKey            string
	pkiDir                     string
	serverNames                []string
	insecurePlainHTTP          bool
	etcdCA, etcdCert, etcdKey  string
	logLevel                   string
}

func policyCmd() *cobra.Command {
	var f policyFlags
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Run the policy server: datacenter policy in etcd, served over HTTP/JSON",
		Long: `Run the policy server. With --data-dir it starts an embedded etcd member
(single node by default); with --etcd-endpoints it uses an external cluster.
Several policy servers may serve one etcd cluster (give each a copy of the
same --pki-dir).

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
			if (f.dataDir == "") == (len(f.endpoints) == 0) {
				return errors.New("give exactly one of --data-dir (embedded etcd) and --etcd-endpoints (external cluster)")
			}
			if (f.tlsCert == "") != (f.tlsKey == "") {
				return errors.New("--tls-cert and --tls-key go together: give both or neither")
			}
			if f.insecurePlainHTTP && f.tlsCert != "" {
				return errors.New("--insecure-plain-http serves no TLS: drop --tls-cert/--tls-key or it")
			}
			if f.pkiDir == "" && !f.insecurePlainHTTP {
				if f.dataDir == "" {
					return errors.New("--pki-dir is needed with --etcd-endpoints: the directory of the policy server's CA (copy it to every replica)")
				}
				f.pkiDir = filepath.Join(f.dataDir, "pki")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runPolicy(ctx, f, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8440", "HTTP API address")
	fl.StringVar(&f.dataDir, "data-dir", "", "run an embedded etcd member keeping its data here")
	fl.StringSliceVar(&f.endpoints, "etcd-endpoints", nil, "use this external etcd cluster (comma-separated client URLs)")
	fl.StringVar(&f.etcdClientURL, "etcd-client-url", "http://127.0.0.1:2379", "embedded etcd: client URL")
	fl.StringVar(&f.etcdPeerURL, "etcd-peer-url", "http://127.0.0.1:2380", "embedded etcd: peer URL")
	fl.StringVar(&f.etcdName, "etcd-name", "wnv", "embedded etcd: member name")
	fl.StringVar(&f.etcdCluster, "etcd-initial-cluster", "", "embedded etcd: name=peerURL,... of every member (default: this member alone)")
	fl.StringVar(&f.pkiDir, "pki-dir", "", "the policy server's CA, server certificate and first admin credential (default <data-dir>/pki; created on first start)")
	fl.StringSliceVar(&f.serverNames, "server-name", nil, "extra DNS name or IP address for the server certificate (repeatable; the --listen address and localhost are always in it)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve this certificate (PEM) instead of one from --pki-dir's CA; clients are still authenticated by that CA")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fl.BoolVar(&f.insecurePlainHTTP, "insecure-plain-http", false, "INSECURE, for tests only: serve plain HTTP with no authentication; anyone who reaches --listen is an admin")
	fl.StringVar(&f.etcdCA, "etcd-ca", "", "external etcd: CA to trust")
	fl.StringVar(&f.etcdCert, "etcd-cert", "", "external etcd: client certificate")
	fl.StringVar(&f.etcdKey, "etcd-key", "", "external etcd: client key")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
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
	if f.dataDir != "" {
		e, err := policyserver.StartEmbedded(ctx, policyserver.EmbedConfig{DataDir: f.dataDir, Name: f.etcdName,
			ClientURL: f.etcdClientURL, PeerURL: f.etcdPeerURL, InitialCluster: f.etcdCluster})
		if err != nil {
			return err
		}
		defer e.Close()
		endpoints = []string{f.etcdClientURL}
		log.Info("embedded etcd running", "data-dir", f.dataDir, "client", f.etcdClientURL, "peer", f.etcdPeerURL)
	} else if f.etcdCA != "" || f.etcdCert != "" {
		if etcdTLS, err = pki.ClientTLS(f.etcdCA, f.etcdCert, f.etcdKey); err != nil {
			return err
		}
	}
	cli, err := policyserver.Connect(endpoints, etcdTLS)
	if err != nil {
		return err
	}
	defer cli.Close()
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", f.listen, err)
	}
	st := policyserver.NewStore(cli)
	if f.insecurePlainHTTP {
		log.Warn("INSECURE: --insecure-plain-http serves plain HTTP without authentication: anyone who reaches this address is an admin of every tenant; use it for tests only", "url", "http://"+ln.Addr().String())
		err = policyserver.Serve(ctx, ln, policyserver.NewHandler(st, log), nil)
		log.Info("wnvd policy stopped")
		return err
	}
	auth, err := policyserver.NewAuth(ctx, st, sp, log)
	if err != nil {
		return err
	}
	serverTLS := sp.TLSConfig()
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert %s / --tls-key %s could not be loaded: %w", f.tlsCert, f.tlsKey, err)
		}
		serverTLS.Certificates = []tls.Certificate{cert}
	}
	log.Info("wnvd policy running", "url", "https://"+ln.Addr().String(), "etcd", strings.Join(endpoints, ","), "mutual-tls", true, "pki-dir", sp.Dir)
	err = policyserver.Serve(ctx, ln, policyserver.NewSecureHandler(st, log, auth), serverTLS)
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
