package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// A credentials directory holds one client credential: ca.pem (the policy
// server's CA, to trust), cert.pem and key.pem (0600). `wnvctl pki issue
// --out DIR` writes one; `wnvd policy` writes the local operator's admin
// credential to <pki-dir>/admin.
const (
	CAFile   = "ca.pem"
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// CredentialFiles returns the CA, certificate and key paths of dir.
func CredentialFiles(dir string) (ca, cert, key string) {
	return filepath.Join(dir, CAFile), filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
}

// WriteCredentials writes a credentials directory (0700; the key 0600).
func WriteCredentials(dir string, caPEM, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, cert, key := CredentialFiles(dir)
	if err := writeFile(key, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFile(cert, certPEM, 0o644); err != nil {
		return err
	}
	return writeFile(ca, caPEM, 0o644)
}

// writeFile writes data atomically with mode perm.
func writeFile(path string, data []byte, perm fs.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ServerPKI is what the policy server keeps in its --pki-dir: its CA (which
// signs every credential), its own TLS certificate, and the local
// operator's admin credential.
type ServerPKI struct {
	Dir  string
	CA   *CA
	Cert tls.Certificate
	// Admin is the certificate of <Dir>/admin, created on first start.
	Admin *x509.Certificate
	// Created is true when this start created the CA.
	Created bool
}

// AdminDir is the credentials directory of the local operator.
func (p *ServerPKI) AdminDir() string { return filepath.Join(p.Dir, "admin") }

// Pool is the CA as a certificate pool.
func (p *ServerPKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Cert)
	return pool
}

// TLSConfig is the server's TLS configuration: its certificate, and client
// certificates requested but verified per request (pki.Verify), so that a
// client without one, or with a bad one, gets a 401 with a reason instead
// of a failed handshake.
func (p *ServerPKI) TLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
}

// EnsureServerPKI loads the CA of dir, creating it (and the admin
// credential) on first use, and issues the server a fresh certificate for
// its names (always including localhost, 127.0.0.1 and ::1).
func EnsureServerPKI(dir string, dnsNames []string, ips []netip.Addr, now time.Time) (*ServerPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--pki-dir %s: %w", dir, err)
	}
	p := &ServerPKI{Dir: dir}
	caPath, caKeyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	certPEM, err1 := os.ReadFile(caPath)
	keyPEM, err2 := os.ReadFile(caKeyPath)
	switch {
	case err1 == nil && err2 == nil:
		ca, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("--pki-dir %s: CA %s / %s: %w", dir, caPath, caKeyPath, err)
		}
		p.CA = ca
	case errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist):
		ca, key, err := NewCA("wnv policy server CA", now)
		if err != nil {
			return nil, err
		}
		if err := writeFile(caKeyPath, key, 0o600); err != nil {
			return nil, err
		}
		if err := writeFile(caPath, ca.PEM, 0o644); err != nil {
			return nil, err
		}
		p.CA, p.Created = ca, true
	default:
		return nil, fmt.Errorf("--pki-dir %s has only one of ca.pem and ca-key.pem: restore both or remove both to start a new CA", dir)
	}
	dnsNames = append([]string{"localhost"}, dnsNames...)
	ips = append([]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}, ips...)
	cert, sPEM, sKey, err := p.CA.IssueKey(Request{Role: Server, Name: "wnv-policy-server", DNSNames: dnsNames, IPs: ips}, now)
	if err != nil {
		return nil, err
	}
	_ = cert
	if err := writeFile(filepath.Join(dir, "server-key.pem"), sKey, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "server.pem"), sPEM, 0o644); err != nil {
		return nil, err
	}
	if p.Cert, err = tls.X509KeyPair(sPEM, sKey); err != nil {
		return nil, err
	}
	_, adminCert, _ := CredentialFiles(p.AdminDir())
	if data, err := os.ReadFile(adminCert); err == nil {
		if c, err := ParseCert(data); err == nil && c.CheckSignatureFrom(p.CA.Cert) == nil && now.Before(c.NotAfter) {
			p.Admin = c
			return p, nil
		}
	}
	c, aPEM, aKey, err := p.CA.IssueKey(Request{Role: Admin, Name: "admin"}, now)
	if err != nil {
		return nil, err
	}
	if err := WriteCredentials(p.AdminDir(), p.CA.PEM, aPEM, aKey); err != nil {
		return nil, err
	}
	p.Admin = c
	return p, nil
}
