package policyserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/wnv/wnv/bounded"
)

// Serve runs h on ln with the limits lim until ctx ends, then shuts down
// gracefully (watch streams are cut at once). tlsConfig, when not nil, makes
// it HTTPS.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, tlsConfig *tls.Config, lim bounded.Limits) error {
	srv := lim.Server(ctx, h)
	srv.TLSConfig = tlsConfig
	ln = lim.Listener(ln)
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
		return e
	}
	return err
}

// clientOf names the client of r for per-client limits: the CommonName of
// its TLS client certificate, else its IP address.
func clientOf(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return "CN=" + r.TLS.PeerCertificates[0].Subject.CommonName
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
