package policyserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/policyapi"
)

// TestStoreFull fills a tiny quota with history: a write then gets a 507
// with one line, changes nothing and leaves every read working; the alarm
// shows on /metrics; maintenance compacts, defragments and disarms, and
// writes work again.
func TestStoreFull(t *testing.T) {
	const quota = 4 << 20
	cfg := EmbedConfig{DataDir: t.TempDir(), QuotaBytes: quota, UnsafeNoFsync: true}
	e, err := StartEmbedded(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli := must2(Connect([]string{cfg.Endpoint()}, nil))(t)
	t.Cleanup(func() { cli.Close() })
	c := serve(t, cli)
	provision(t, c)
	ctx := ctxT(t)
	must(t)(c.CreateVM(ctx, policyapi.VM{Name: "blue1", MACAddress: mac(1), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.0.5")}}))

	// History of one key fills the quota: what compaction gives back.
	filler := strings.Repeat("x", 256<<10)
	for {
		_, err := cli.Put(ctx, "/wet-filler", filler)
		if errors.Is(err, rpctypes.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	before := snapshot(t, cli)
	_, err = c.CreateVM(ctx, policyapi.VM{Name: "blue2", MACAddress: mac(2), VirtualSubnetID: 5001, Host: "host1",
		CustomerAddresses: []netip.Addr{addr("10.0.0.6"), addr("fd00:0:0:1::6")}})
	var se *jsonapi.Error
	if !errors.As(err, &se) || se.Status != http.StatusInsufficientStorage || !strings.HasPrefix(se.Message, "policy store is full: ") || strings.Contains(se.Message, "\n") {
		t.Fatalf("write to a full store: %v", err)
	}
	if after := snapshot(t, cli); !mapsEqual(before, after) {
		t.Fatal("a write refused for space changed etcd")
	}
	p := must2(c.Policy(ctx, rdBlue))(t)
	if len(p.Records) != 1 || p.Records[0].VMName != "blue1" {
		t.Fatalf("policy of a full store: %+v", p.Records)
	}
	must(t)(c.VM(ctx, "blue1"))

	m := NewMetrics()
	metrics := httptest.NewServer(m.Handler())
	t.Cleanup(metrics.Close)
	mt := &Maintenance{Cli: cli, Endpoint: cfg.Endpoint(), Quota: quota, Every: 20 * time.Millisecond, Log: quiet, Metrics: m}
	if err := mt.check(ctx); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, metrics.URL); !strings.Contains(got, "\nwnv_policy_store_nospace 1\n") {
		t.Fatalf("metrics of a full store:\n%s", got)
	}

	mt.Repair = true
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { mt.Run(mctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	for {
		_, err := c.CreateVM(ctx, policyapi.VM{Name: "blue2", MACAddress: mac(2), VirtualSubnetID: 5001, Host: "host1",
			CustomerAddresses: []netip.Addr{addr("10.0.0.6")}})
		if err == nil {
			break
		}
		if !errors.As(err, &se) || se.Status != http.StatusInsufficientStorage {
			t.Fatalf("write while the store recovers: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
	if got := scrape(t, metrics.URL); !strings.Contains(got, "\nwnv_policy_store_nospace 0\n") || !strings.Contains(got, "\nwnv_policy_store_defrags_total 1\n") {
		t.Fatalf("metrics after recovery:\n%s", got)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMaintenancePlan: when to defragment and when the alarm may go.
func TestMaintenancePlan(t *testing.T) {
	const q = 800
	cases := []struct {
		h            health
		defrag, room bool
	}{
		{health{dbSize: 400, inUse: 390, quota: q}, false, true},
		{health{dbSize: 400, inUse: 300, quota: q}, true, true},
		{health{dbSize: 800, inUse: 790, quota: q, nospace: true}, true, false},
		{health{dbSize: 800, inUse: 800, quota: q, nospace: true}, false, false},
		{health{dbSize: 719, inUse: 719, quota: q, nospace: true}, false, true},
		{health{dbSize: 720, inUse: 720, quota: q, nospace: true}, false, false},
		{health{dbSize: 400, inUse: 100}, false, false},
	}
	for _, c := range cases {
		if wantsDefrag(c.h) != c.defrag || hasRoom(c.h) != c.room {
			t.Errorf("%+v: defrag %v room %v, want %v %v", c.h, wantsDefrag(c.h), hasRoom(c.h), c.defrag, c.room)
		}
	}
}
