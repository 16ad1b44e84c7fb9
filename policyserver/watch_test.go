package policyserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// next returns the next non-progress event, failing after a timeout.
func next(t *testing.T, ch <-chan policyapi.Event) policyapi.Event {
	t.Helper()
	for {
		select {
		case ev := <-ch:
			if ev.Type != policyapi.EventProgress {
				return ev
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no watch event within 20s")
		}
	}
}

// watch runs c.Watch in the background and returns its events.
func watch(t *testing.T, c *policyclient.Client, rev int64, rds ...policy.GUID) <-chan policyapi.Event {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := make(chan policyapi.Event, 1024)
	go func() {
		for ev, err := range c.Watch(ctx, rev, rds...) {
			if err == nil {
				ch <- ev
			}
		}
	}()
	return ch
}

func TestWatchResumeAndFilter(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	p, err := c.Policy(ctx, rdBlue)
	if err != nil {
		t.Fatal(err)
	}
	// Changes made before anyone watches are delivered from p.Revision.
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1", CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "red1", MACAddress: mac(1), VirtualSubnetID: 6001, Host: "host1", CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))
	must(t)(c.MigrateVM(ctx, "blue1", "host3"))

	ch := watch(t, c, p.Revision, rdBlue)
	ev := next(t, ch)
	if ev.Type != policyapi.EventPut || ev.Kind != policyapi.KindVM || ev.VM.Name != "blue1" || ev.PrevVM != nil || len(ev.Records) != 1 {
		t.Fatalf("first event: %+v", ev)
	}
	created := ev.Revision
	ev = next(t, ch) // red1 is filtered out
	if ev.Kind != policyapi.KindVM || ev.VM.Host != "host3" || ev.PrevVM.Host != "host1" ||
		ev.Records[0].ProviderAddress != addr("198.18.0.3") || ev.PrevRecords[0].ProviderAddress != addr("198.18.0.1") {
		t.Fatalf("migration event: %+v", ev)
	}
	must(t)(nil, c.DeleteVM(ctx, "blue1"))
	ev = next(t, ch)
	if ev.Type != policyapi.EventDelete || ev.PrevVM == nil || ev.VM != nil || len(ev.PrevRecords) != 1 {
		t.Fatalf("delete event: %+v", ev)
	}
	// Resuming from the creation revision replays exactly what followed it.
	ch2 := watch(t, c, created)
	if ev := next(t, ch2); ev.Kind != policyapi.KindVM || ev.Name != "red1" {
		t.Fatalf("resumed stream starts with %+v", ev)
	}
	if ev := next(t, ch2); ev.Kind != policyapi.KindVM || ev.Name != "blue1" || ev.Type != policyapi.EventPut {
		t.Fatalf("resumed stream then has %+v", ev)
	}
	// Host events reach filtered watchers too.
	must(t)(c.RegisterHost(ctx, policyapi.Host{Name: "host9", ProviderAddresses: []netip.Addr{addr("198.18.0.9")}}))
	for {
		ev := next(t, ch)
		if ev.Kind == policyapi.KindHost && ev.Host.Name == "host9" {
			break
		}
		if ev.Kind != policyapi.KindLiveness {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
}

func TestWatchCompacted(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1", CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))
	must(t)(c.MigrateVM(ctx, "blue1", "host2"))
	p := must2(c.Policy(ctx, rdBlue))(t)
	if _, err := cli.Compact(ctx, p.Revision); err != nil {
		t.Fatal(err)
	}
	var got []policyapi.Event
	for ev, err := range c.Watch(ctx, 2, rdBlue) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if n := len(got); n == 0 || got[n-1].Type != policyapi.EventResync || got[n-1].Revision != p.Revision {
		t.Fatalf("events of a compacted watch: %+v", got)
	}
}

// must2 returns v, failing the test given to its result on an error:
// must2(f())(t).
func must2[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestThreeMemberCluster starts three etcd members, serves policy through
// two servers attached to different members, stops one member, and checks
// that policy stays readable and writable and a watcher keeps receiving.
func TestThreeMemberCluster(t *testing.T) {
	var members [3]*embed.Etcd
	clientURLs := make([]string, 3)
	peerURLs := make([]string, 3)
	var initial []string
	for i := range 3 {
		clientURLs[i], peerURLs[i] = freeURL(t), freeURL(t)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peerURLs[i]))
	}
	errc := make(chan error, 3)
	for i := range 3 {
		go func() {
			e, err := StartEmbedded(context.Background(), EmbedConfig{DataDir: t.TempDir(), Name: fmt.Sprintf("m%d", i),
				ClientURL: clientURLs[i], PeerURL: peerURLs[i], InitialCluster: strings.Join(initial, ","), UnsafeNoFsync: true})
			members[i] = e
			errc <- err
		}()
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	stopped := -1
	t.Cleanup(func() {
		for i, m := range members {
			if i != stopped {
				m.Close()
			}
		}
	})
	// Server A talks to member 0 only, server B to all three members.
	cliA := must2(Connect(clientURLs[:1], nil))(t)
	cliB := must2(Connect(clientURLs, nil))(t)
	t.Cleanup(func() { cliA.Close(); cliB.Close() })
	a, b := serve(t, cliA), serve(t, cliB)
	provision(t, a)
	ctx := ctxT(t)
	for i := range 20 {
		must(t)(a.CreateVM(ctx, policyapi.VM{Name: fmt.Sprintf("vm%d", i), MACAddress: mac(i + 1), VirtualSubnetID: 5001, Host: "host1",
			CustomerAddresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})}}))
	}
	p := must2(b.Policy(ctx, rdBlue))(t)
	ch := watch(t, b, p.Revision, rdBlue)

	// Stop the leader if it is not member 0 (server A's only member), else
	// member 1: either way a member serving a client goes away.
	stopped = 1
	for i, m := range members {
		if i != 0 && m.Server.Leader() == m.Server.MemberID() {
			stopped = i
		}
	}
	members[stopped].Close()

	deadline := time.Now().Add(30 * time.Second)
	for i := range 20 {
		for {
			_, err := b.MigrateVM(ctx, fmt.Sprintf("vm%d", i), "host2")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("migration after stopping member %d: %v", stopped, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i := range 20 {
		ev := next(t, ch)
		if ev.Kind != policyapi.KindVM || ev.VM.Name != fmt.Sprintf("vm%d", i) || ev.VM.Host != "host2" {
			t.Fatalf("watch event %d after stopping member %d: %+v", i, stopped, ev)
		}
	}
	for _, c := range []*policyclient.Client{a, b} {
		p := must2(c.Policy(ctx, rdBlue))(t)
		if len(p.Records) != 20 {
			t.Fatalf("%d records after stopping a member, want 20", len(p.Records))
		}
		for _, r := range p.Records {
			if r.ProviderAddress != addr("198.18.0.2") {
				t.Fatalf("record %s still points at %s", r.CustomerAddress, r.ProviderAddress)
			}
		}
	}
	must(t)(a.CreateVM(ctx, policyapi.VM{Name: "late", MACAddress: mac(500), VirtualSubnetID: 5001, Host: "host3", CustomerAddresses: []netip.Addr{addr("10.0.0.200")}}))
}

// TestTLS serves the API over HTTPS, first server-authenticated, then with
// mutual TLS, where a client without a certificate is refused.
func TestTLS(t *testing.T) {
	cli := startEtcd(t)
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	issue(t, dir, "server", ca, caKey, x509.ExtKeyUsageServerAuth)
	issue(t, dir, "client", ca, caKey, x509.ExtKeyUsageClientAuth)
	f := func(n string) string { return filepath.Join(dir, n) }

	for _, mutual := range []bool{false, true} {
		clientCA := ""
		if mutual {
			clientCA = f("ca.pem")
		}
		scfg, err := pki.ServerTLS(f("server.pem"), f("server-key.pem"), clientCA)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(NewHandler(NewStore(cli), quiet))
		srv.TLS = scfg
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
		srv.StartTLS()
		ctx := ctxT(t)

		anon := policyclient.New(srv.URL, must2(pki.ClientTLS(f("ca.pem"), "", ""))(t))
		_, err = anon.Tenants(ctx)
		if mutual == (err == nil) {
			t.Fatalf("mutual=%v: client without a certificate got err %v", mutual, err)
		}
		withCert := policyclient.New(srv.URL, must2(pki.ClientTLS(f("ca.pem"), f("client.pem"), f("client-key.pem")))(t))
		if _, err := withCert.Tenants(ctx); err != nil {
			t.Fatalf("mutual=%v: client with a certificate: %v", mutual, err)
		}
		untrusting := policyclient.New(srv.URL, &tls.Config{})
		if _, err := untrusting.Tenants(ctx); err == nil {
			t.Fatalf("mutual=%v: a client not trusting the CA connected", mutual)
		}
		// Watch streams work over TLS too.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		for ev, err := range withCert.Watch(wctx, 0) {
			if err != nil || ev.Type != policyapi.EventProgress {
				t.Fatalf("first watch event over TLS: %+v %v", ev, err)
			}
			break
		}
		cancel()
		anon.CloseIdleConnections()
		withCert.CloseIdleConnections()
		srv.Close()
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key := must2(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wnv test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der := must2(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key))(t)
	return must2(x509.ParseCertificate(der))(t), key
}

func issue(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) {
	key := must2(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der := must2(x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey))(t)
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", must2(x509.MarshalPKCS8PrivateKey(key))(t))
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWatchSharedReplay: streams served by the server's shared watch get
// live events, and a stream resuming from a revision the server holds
// replays exactly what followed it.
func TestWatchSharedReplay(t *testing.T) {
	cli := startEtcd(t)
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	live := watch(t, c, 0, rdBlue)
	if ev := <-live; ev.Type != policyapi.EventProgress {
		t.Fatalf("first event %+v", ev)
	}
	var revs []int64
	for i := range 5 {
		vm := must2(c.CreateVM(ctx, policyapi.VM{Name: fmt.Sprintf("vm%d", i), MACAddress: mac(i + 1), VirtualSubnetID: 5001, Host: "host1",
			CustomerAddresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})}}))(t)
		ev := next(t, live)
		if ev.VM == nil || ev.VM.Name != vm.Name {
			t.Fatalf("live event %d: %+v", i, ev)
		}
		revs = append(revs, ev.Revision)
	}
	resumed := watch(t, c, revs[1], rdBlue)
	for i := 2; i < 5; i++ {
		if ev := next(t, resumed); ev.Revision != revs[i] || ev.VM.Name != fmt.Sprintf("vm%d", i) {
			t.Fatalf("replayed event: %+v, want vm%d at %d", ev, i, revs[i])
		}
	}
	must(t)(c.MigrateVM(ctx, "vm0", "host2"))
	for _, ch := range []<-chan policyapi.Event{live, resumed} {
		if ev := next(t, ch); ev.VM == nil || ev.VM.Host != "host2" {
			t.Fatalf("migration event: %+v", ev)
		}
	}
}
