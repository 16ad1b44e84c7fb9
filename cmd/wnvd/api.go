package main

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/spf13/pflag"

	"github.com/wnv/wnv/pki"
)

// apiFlags are the `wnvd host` flags of the remote provider API, what
// wnvctl --host reaches from another machine.
type apiFlags struct {
	listen      string
	credentials string
}

func (a *apiFlags) register(f *pflag.FlagSet) {
	f.StringVar(&a.listen, "api-listen", "", "also serve the provider API to other machines on this TCP `ADDR:PORT` (e.g. 0.0.0.0:8450) over mutual TLS: admins manage, observers read (wnvctl --host); off when empty")
	f.StringVar(&a.credentials, "api-credentials", "", "this host's credential for --api-listen: the `DIR` of ca.pem, cert.pem, key.pem written by wnvctl pki issue host NAME --provider-address PA --out DIR (default: --policy-credentials)")
}

// open loads the host's credential, checks that it is one of host, and
// listens; it returns a nil listener without --api-listen.
func (a *apiFlags) open(host, policyCredentials string) (net.Listener, *tls.Config, error) {
	if a.listen == "" {
		return nil, nil, nil
	}
	dir := cmp.Or(a.credentials, policyCredentials)
	if dir == "" {
		return nil, nil, fmt.Errorf("--api-listen %s needs this host's credential: give --api-credentials DIR (an admin writes it with `wnvctl pki issue host %s --provider-address PA --out DIR`)", a.listen, host)
	}
	cfg, err := pki.CredentialsServerTLS(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("--api-credentials: %w", err)
	}
	if _, err := hostIdentity("the --api-credentials credential", cfg.Certificates[0], host); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", a.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("--api-listen %s: %w", a.listen, err)
	}
	return ln, cfg, nil
}

// hostIdentity is the identity of cert, what, if it is a host credential
// of host: a host serves and calls the policy server only as itself.
func hostIdentity(what string, cert tls.Certificate, host string) (pki.Identity, error) {
	id, err := pki.IdentityOf(cert.Leaf)
	if err != nil {
		return id, fmt.Errorf("%s: %w", what, err)
	}
	if id.Role != pki.Host || id.Name != host {
		return id, fmt.Errorf("%s is for %s, not host %s: issue one with `wnvctl pki issue host %s --provider-address PA`", what, id, host, host)
	}
	return id, nil
}
