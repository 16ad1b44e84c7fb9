package host

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMetricsListenOnLocalhostByDefault(t *testing.T) {
	l, err := ListenMetrics(":0", MetricsTLS{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf("--metrics-addr :0 listens on %s, want localhost", ip)
	}
	for name, tl := range map[string]MetricsTLS{
		"cert without key":   {CertFile: "c.pem"},
		"client CA alone":    {ClientCAFile: "ca.pem"},
		"missing cert files": {CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"},
	} {
		if l, err := ListenMetrics(":0", tl); err == nil {
			l.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestMetricsTLSRequiresClientCertificate serves over TLS with a client CA:
// a client with a certificate of that CA gets an answer, one without none.
func TestMetricsTLSRequiresClientCertificate(t *testing.T) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wdp test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (certFile, keyFile string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
		return certFile, keyFile
	}
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	srvCert, srvKey := issue("server", 2, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := issue("client", 3, x509.ExtKeyUsageClientAuth)

	l, err := ListenMetrics("127.0.0.1:0", MetricsTLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("wnv_up 1\n")) })}
	go srv.Serve(l)
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	url := "https://" + l.Addr().String() + "/metrics"
	get := func(certs []tls.Certificate) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(nil); err == nil {
		t.Error("a client without a certificate got /metrics")
	}
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := get([]tls.Certificate{pair}); err != nil {
		t.Errorf("a client with a certificate of the CA: %v", err)
	}
}
