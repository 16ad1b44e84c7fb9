package policyserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// freeURL returns an http:// URL on a port free right now, on a random
// address of 127.0.0.0/8: the port is released before etcd binds it, and a
// private loopback address keeps other tests' sockets (which use 127.0.0.1)
// from taking it meanwhile.
func freeURL(t *testing.T) string {
	t.Helper()
	ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// startEtcd starts a single-node embedded etcd in a temp dir and returns a
// client of it.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	cfg := EmbedConfig{DataDir: t.TempDir(), UnsafeNoFsync: true}
	e, err := StartEmbedded(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := Connect([]string{cfg.Endpoint()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// serve runs an API server on cli and returns a client of it.
func serve(t *testing.T, cli *clientv3.Client) *policyclient.Client {
	t.Helper()
	srv := httptest.NewServer(NewHandler(NewStore(cli), quiet))
	t.Cleanup(srv.Close)
	c := policyclient.New(srv.URL, nil)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

var (
	tenantA = policy.MustParseGUID("{aaaaaaaa-0000-0000-0000-000000000001}")
	rdBlue  = policy.MustParseGUID("{11111111-2222-3333-4444-000000000001}")
	rdRed   = policy.MustParseGUID("{11111111-2222-3333-4444-000000000002}")
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mac(i int) packet.MAC { return packet.MAC{0x00, 0x15, 0x5d, 0, byte(i >> 8), byte(i)} }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// provision creates a tenant, two routing domains (blue: 5001 10.0.0.0/24
// + fd00:0:0:1::/64, 5002 10.0.1.0/24; red: 6001 10.0.0.0/24) and hosts
// host1..host3 with PAs 198.18.0.1..3.
func provision(t *testing.T, c *policyclient.Client) {
	t.Helper()
	ctx := ctxT(t)
	must(t)(c.CreateTenant(ctx, policyapi.Tenant{CustomerID: tenantA, Name: "contoso"}))
	must(t)(c.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rdBlue, CustomerID: tenantA, Name: "blue"}))
	must(t)(c.CreateRoutingDomain(ctx, policyapi.RoutingDomain{RoutingDomainID: rdRed, CustomerID: tenantA, Name: "red"}))
	must(t)(c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5001, RoutingDomainID: rdBlue,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00:0:0:1::/64")}}))
	must(t)(c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 5002, RoutingDomainID: rdBlue,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}, Encapsulation: "vxlan"}))
	must(t)(c.CreateSubnet(ctx, policyapi.Subnet{VirtualSubnetID: 6001, RoutingDomainID: rdRed,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}))
	for i := 1; i <= 3; i++ {
		must(t)(c.RegisterHost(ctx, policyapi.Host{Name: fmt.Sprintf("host%d", i),
			ProviderAddresses: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})}, TTLSeconds: 30}))
	}
}

// must fails the test on a non-nil error of a (value, error) call.
func must(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
