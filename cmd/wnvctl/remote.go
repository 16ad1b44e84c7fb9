package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/provider"
)

// providerClient returns a provider API client and a context bounded by
// requestTimeout. The client calls the wnvd at --host over mutual TLS with
// --credentials, as the original cmdlets' -CimSession manages another
// machine, else the local one at --socket. A bad --host or credential is a
// one-line error here, before any request.
func providerClient(cmd *cobra.Command) (*provider.Client, context.Context, context.CancelFunc, error) {
	var c *provider.Client
	if flagHost == "" {
		c = provider.NewClient(flagSocket)
	} else {
		if cmd.Flags().Changed("socket") {
			return nil, nil, nil, errors.New("give --socket (this machine's wnvd) or --host (another's), not both")
		}
		if _, _, err := net.SplitHostPort(flagHost); err != nil {
			return nil, nil, nil, fmt.Errorf("--host %q is not ADDR:PORT: give the address and port of the host's wnvd --api-listen, e.g. host1:8450", flagHost)
		}
		if flagCredentials == "" {
			return nil, nil, nil, fmt.Errorf("--host %s needs a client credential: give --credentials DIR or set WNV_CREDENTIALS (an admin's to manage, an observer's to read; `wnvctl pki issue`)", flagHost)
		}
		cfg, err := pki.CredentialsTLS(flagCredentials)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--credentials: %w", err)
		}
		c = provider.NewRemoteClient(flagHost, cfg)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
	return c, ctx, cancel, nil
}
