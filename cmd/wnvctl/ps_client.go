package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyclient"
)

// Commands that talk to the policy server (vm, tenant, routing-domain,
// subnet, host) share these flags, set on each group, and the global
// --credentials.
var (
	flagServer                         string
	flagTLSCA, flagTLSCert, flagTLSKey string
)

// policyServerGroup returns a command group with the policy server flags.
func policyServerGroup(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := group(use, short, subs...)
	pf := cmd.PersistentFlags()
	pf.StringVar(&flagServer, "server", envOr("WNV_SERVER", "https://127.0.0.1:8440"), "policy server URL (env WNV_SERVER)")
	pf.StringVar(&flagTLSCA, "tls-ca", os.Getenv("WNV_TLS_CA"), "CA to trust for an https --server (env WNV_TLS_CA)")
	pf.StringVar(&flagTLSCert, "tls-cert", os.Getenv("WNV_TLS_CERT"), "client certificate for mutual TLS (env WNV_TLS_CERT)")
	pf.StringVar(&flagTLSKey, "tls-key", os.Getenv("WNV_TLS_KEY"), "client key for mutual TLS (env WNV_TLS_KEY)")
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// serverClient returns a policy server client and a context bounded by
// requestTimeout.
func serverClient(cmd *cobra.Command) (*policyclient.Client, context.Context, context.CancelFunc, error) {
	cfg, err := clientTLS()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
	return policyclient.New(flagServer, cfg), ctx, cancel, nil
}

// serverRun wraps a command body that needs a policy server client.
func serverRun(f func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, ctx, cancel, err := serverClient(cmd)
		if err != nil {
			return err
		}
		defer cancel()
		return f(ctx, cmd, c, args)
	}
}

// clientTLS is the TLS configuration of --credentials or --tls-*; an https
// server without a client credential is a one-line error here, before any
// request.
func clientTLS() (*tls.Config, error) {
	var cfg *tls.Config
	var err error
	switch {
	case flagCredentials != "":
		if flagTLSCert != "" || flagTLSKey != "" {
			return nil, errors.New("give --credentials or --tls-cert/--tls-key, not both")
		}
		if cfg, err = pki.CredentialsTLS(flagCredentials); err != nil {
			return nil, err
		}
	case flagTLSCA != "" || flagTLSCert != "" || flagTLSKey != "":
		if cfg, err = pki.ClientTLS(flagTLSCA, flagTLSCert, flagTLSKey); err != nil {
			return nil, err
		}
	}
	if strings.HasPrefix(flagServer, "https://") && (cfg == nil || len(cfg.Certificates) == 0) {
		return nil, fmt.Errorf("policy server %s needs a client credential: give --credentials DIR or set WNV_CREDENTIALS (an admin writes one with `wnvctl pki issue`; the local admin's is <pki-dir>/admin of wnvd policy)", flagServer)
	}
	return cfg, nil
}
