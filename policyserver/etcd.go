package policyserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EmbedConfig describes one embedded etcd member.
type EmbedConfig struct {
	DataDir   string
	Name      string // member name; default "wnv"
	ClientURL string // default http://127.0.0.1:2379
	PeerURL   string // default http://127.0.0.1:2380
	// InitialCluster lists every member as name=peerURL,...; empty for a
	// single-node cluster.
	InitialCluster string
	// UnsafeNoFsync trades durability for speed (benchmarks only).
	UnsafeNoFsync bool
}

// StartEmbedded starts an etcd member and waits until it serves clients.
func StartEmbedded(ctx context.Context, c EmbedConfig) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = c.DataDir
	cfg.Name = cmpOr(c.Name, "wnv")
	cu, err := url.Parse(cmpOr(c.ClientURL, "http://127.0.0.1:2379"))
	if err != nil {
		return nil, fmt.Errorf("etcd client URL %q is malformed: use http://127.0.0.1:2379", c.ClientURL)
	}
	pu, err := url.Parse(cmpOr(c.PeerURL, "http://127.0.0.1:2380"))
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL %q is malformed: use http://127.0.0.1:2380", c.PeerURL)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cmpOr(c.InitialCluster, cfg.Name+"="+pu.String())
	cfg.InitialClusterToken = "wnv"
	cfg.LogLevel = "error"
	// etcd reports its own shutdown as errors; its failures reach us through
	// StartEtcd and Err().
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = c.UnsafeNoFsync
	cfg.WatchProgressNotifyInterval = progressEvery
	// Watchers can resume from any revision of the last hour.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = embed.CompactorModePeriodic, "1h"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s did not start: %w", c.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s failed: %w", c.DataDir, err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

// Connect returns an etcd client for endpoints; tlsConfig may be nil.
func Connect(endpoints []string, tlsConfig *tls.Config) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  tlsConfig,
		Logger:               nopZap(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// nopZap silences the etcd client's own logging; its errors reach callers.
func nopZap() *zap.Logger { return zap.NewNop() }
