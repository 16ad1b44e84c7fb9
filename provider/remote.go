package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/wnv/wnv/bounded"
	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
)

// ServeRemote serves h to other machines on ln (TCP) over mutual TLS, what
// the original cmdlets' -CimSession reaches, with the limits of
// bounded.Default until ctx is done; it closes ln. tlsConfig must require
// client certificates of a CA (pki.CredentialsServerTLS), so that a client
// without one fails the handshake; each request is then authorized by its
// certificate's role (Access). The Unix socket of Serve needs none of this:
// its file permissions are its access control.
func ServeRemote(ctx context.Context, ln net.Listener, tlsConfig *tls.Config, h http.Handler) error {
	if tlsConfig == nil || len(tlsConfig.Certificates) == 0 || tlsConfig.ClientCAs == nil || tlsConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		ln.Close()
		return errors.New("the remote provider API needs a certificate and must require client certificates of a CA: load them with pki.CredentialsServerTLS")
	}
	lim := bounded.Default()
	srv := lim.Server(context.Background(), authorize(tlsConfig.ClientCAs, h))
	srv.TLSConfig = tlsConfig
	// The connection caps apply before the handshake, so that a flood of
	// handshakes is cut off like any other.
	return serve(ctx, "remote provider API on "+ln.Addr().String(), srv, func() error { return srv.ServeTLS(lim.Listener(ln), "", "") })
}

// authorize passes a request to h if its client certificate, verified again
// here (the handshake checked it when the connection, maybe long kept
// alive, opened), is of a role that may make it; a refusal is one line of
// JSON and changes nothing.
func authorize(roots *x509.CertPool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var chain []*x509.Certificate
		if r.TLS != nil {
			chain = r.TLS.PeerCertificates
		}
		id, err := pki.Verify(chain, roots, time.Now())
		if err != nil {
			jsonapi.WriteError(w, &policy.Error{Kind: policy.ErrUnauthenticated, Msg: "credential refused: " + err.Error()})
			return
		}
		if err := Access(id, r.Method, r.URL.Path); err != nil {
			jsonapi.WriteError(w, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Access decides whether id may make a request of the remote provider API:
// an admin everything, an observer reads (GET) and traces (a dry run); a tenant or a host nothing,
// since this API manages the whole host, every tenant's policy on it. The
// refusal wraps policy.ErrForbidden.
func Access(id pki.Identity, method, path string) error {
	switch {
	case id.Role == pki.Admin:
		return nil
	case id.Role == pki.Observer && (method == http.MethodGet || method == http.MethodHead):
		return nil
	case id.Role == pki.Observer && method == http.MethodPost && path == TracePath:
		return nil // a dry run changes nothing
	case id.Role == pki.Observer:
		return &policy.Error{Kind: policy.ErrForbidden, Msg: fmt.Sprintf("%q (role observer) refused: observers only read; %s %s needs an admin credential", id.Name, method, path)}
	}
	return &policy.Error{Kind: policy.ErrForbidden, Msg: fmt.Sprintf("%q (role %s) refused: a host's provider API serves admins, and observers to read; %s %s needs an admin credential", id.Name, id.Role, method, path)}
}
