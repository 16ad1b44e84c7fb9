package policyserver

import (
	"context"
	"crypto/x509"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/wnv/wnv/pki"
)

// TestExternalEtcdClientCert: against an etcd that demands client
// certificates (as an external cluster should), the server's Connect with
// the files of --etcd-ca, --etcd-cert and --etcd-key serves policy, and a
// client without a certificate reads nothing.
func TestExternalEtcdClientCert(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	issue(t, dir, "etcd", ca, caKey, x509.ExtKeyUsageAny)
	issue(t, dir, "policy", ca, caKey, x509.ExtKeyUsageClientAuth)
	f := func(n string) string { return filepath.Join(dir, n) }

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cu := url.URL{Scheme: "https", Host: ln.Addr().String()}
	ln.Close()
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "data")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	pu := url.URL{Scheme: "http", Host: "127.0.0.1:2380"}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = nil, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ClientTLSInfo = transport.TLSInfo{CertFile: f("etcd.pem"), KeyFile: f("etcd-key.pem"), TrustedCAFile: f("ca.pem"), ClientCertAuth: true}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	<-e.Server.ReadyNotify()

	withCert := must2(Connect([]string{cu.String()}, must2(pki.ClientTLS(f("ca.pem"), f("policy.pem"), f("policy-key.pem")))(t)))(t)
	t.Cleanup(func() { withCert.Close() })
	c := serve(t, withCert)
	provision(t, c)
	if hs := must2(c.Hosts(ctxT(t)))(t); len(hs) != 3 {
		t.Fatalf("hosts through a client certificate: %+v", hs)
	}

	anon := must2(Connect([]string{cu.String()}, must2(pki.ClientTLS(f("ca.pem"), "", ""))(t)))(t)
	t.Cleanup(func() { anon.Close() })
	// The bound only ends the refused read; a permitted one answers at once.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if resp, err := anon.Get(ctx, Prefix, clientv3.WithPrefix()); err == nil {
		t.Fatalf("a client without a certificate read %d keys", resp.Count)
	}
}
