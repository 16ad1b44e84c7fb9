package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"
)

// ServerTLS loads the server certificate; with clientCAFile set, clients
// must present a certificate signed by that CA (mutual TLS).
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s could not be loaded: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pool, err := LoadPool(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca %s: %w", clientCAFile, err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS trusts caFile (the system roots when empty) and, with
// certFile/keyFile, presents a client certificate. A client certificate
// that has expired, or is not signed by caFile's CA, is an error here,
// before any request.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: %w", caFile, err)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("a client certificate needs both its certificate and its key file")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s / key %s could not be loaded: %w", certFile, keyFile, err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("client certificate %s: %w", certFile, err)
		}
		if now := time.Now(); now.After(leaf.NotAfter) {
			return nil, fmt.Errorf("client certificate %s (%s) expired at %s: ask an admin for a new one (wnvctl pki issue)", certFile, leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if cfg.RootCAs != nil {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				return nil, fmt.Errorf("client certificate %s (%s) is not signed by the CA of %s: %v", certFile, leaf.Subject.CommonName, caFile, err)
			}
		}
		cert.Leaf = leaf
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// CredentialsTLS is ClientTLS of a credentials directory; a missing file is
// named in the error.
func CredentialsTLS(dir string) (*tls.Config, error) {
	ca, cert, key := CredentialFiles(dir)
	for _, f := range []string{ca, cert, key} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("credentials directory %s: %s is missing: write one with `wnvctl pki issue ... --out %s`", dir, f, dir)
		}
	}
	return ClientTLS(ca, cert, key)
}

// LoadPool reads a PEM file of CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// CredentialsServerTLS serves the certificate of a credentials directory
// (a host's, for its remote provider API) over TLS 1.3 only, and requires
// every client to present a certificate of the directory's CA: a client
// without one, or with another CA's, fails the handshake.
func CredentialsServerTLS(dir string) (*tls.Config, error) {
	c, err := CredentialsTLS(dir)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: c.Certificates, ClientCAs: c.RootCAs, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13}, nil
}
