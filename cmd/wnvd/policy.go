package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/bounded"
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
	tlsCert, tlsKey, clientCA  string
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
Several policy servers may serve one etcd cluster.`,
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
			if f.clientCA != "" && f.tlsCert == "" {
				return errors.New("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS runs over HTTPS")
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
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fl.StringVar(&f.clientCA, "tls-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	fl.StringVar(&f.etcdCA, "etcd-ca", "", "external etcd: CA to trust")
	fl.StringVar(&f.etcdCert, "etcd-cert", "", "external etcd: client certificate")
	fl.StringVar(&f.etcdKey, "etcd-key", "", "external etcd: client key")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
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
	scheme := "http"
	if serverTLS != nil {
		scheme = "https"
	}
	log.Info("wnvd policy running", "url", scheme+"://"+ln.Addr().String(), "etcd", strings.Join(endpoints, ","), "mutual-tls", f.clientCA != "")
	err = policyserver.Serve(ctx, ln, policyserver.NewHandler(policyserver.NewStore(cli), log), serverTLS, bounded.Default())
	log.Info("wnvd policy stopped")
	return err
}
