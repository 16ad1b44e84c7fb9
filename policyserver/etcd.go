package policyserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EmbedConfig describes one embedded etcd member.
type EmbedConfig struct {
	DataDir string
	Name    string // member name; default "wnv"
	// ClientURL is where the member serves clients; default the Unix socket
	// DataDir/etcd.sock, which only the data dir's owner reaches (the dir is
	// 0700, the socket 0600). A TCP URL is reachable by every local user:
	// only for the members of a multi-member cluster.
	ClientURL string
	// PeerURL is where the member talks to the other members; required with
	// InitialCluster. A single member listens for no peers.
	PeerURL string
	// InitialCluster lists every member as name=peerURL,...; empty for a
	// single-node cluster.
	InitialCluster string
	// QuotaBytes is the space quota of etcd's backend; default
	// DefaultQuotaBytes. When it is reached etcd refuses writes (its NOSPACE
	// alarm) until Maintain frees space.
	QuotaBytes int64
	// UnsafeNoFsync trades durability for speed (benchmarks only).
	UnsafeNoFsync bool
}

// DefaultQuotaBytes is etcd's own recommended default backend quota.
const DefaultQuotaBytes = 2 << 30

// maxTxnOps lets one transaction move every VM of a host to its new PA
// (etcd's default is 128 operations).
const maxTxnOps = 16384

// Endpoint is the client URL of the member c describes.
func (c EmbedConfig) Endpoint() string {
	if c.ClientURL != "" {
		return c.ClientURL
	}
	return "unix://" + filepath.Join(c.DataDir, "etcd.sock")
}

// maxSocketPath is the longest path a Unix socket address holds.
const maxSocketPath = 107

// StartEmbedded starts an etcd member and waits until it serves clients.
func StartEmbedded(ctx context.Context, c EmbedConfig) (*embed.Etcd, error) {
	if c.InitialCluster != "" && c.PeerURL == "" {
		return nil, errors.New("embedded etcd: an initial cluster needs this member's peer URL: give --etcd-peer-url")
	}
	// etcd keeps the dir 0700 too; making it so before the socket exists
	// leaves no moment in which another user could reach the socket.
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data dir %s could not be created: %w", c.DataDir, err)
	}
	if err := os.Chmod(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data dir %s could not be made 0700: %w", c.DataDir, err)
	}
	cfg := embed.NewConfig()
	cfg.Dir = c.DataDir
	cfg.Name = cmpOr(c.Name, "wnv")
	cu, err := url.Parse(c.Endpoint())
	if err != nil {
		return nil, fmt.Errorf("etcd client URL %q is malformed: use unix:///path/etcd.sock or http://10.0.0.1:2379", c.ClientURL)
	}
	sock := ""
	if cu.Scheme == "unix" {
		sock = cu.Host + cu.Path
		if len(sock) > maxSocketPath {
			return nil, fmt.Errorf("etcd client socket %s is longer than %d bytes: use a shorter --data-dir", sock, maxSocketPath)
		}
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	// A single member advertises a peer URL (etcd requires one) but listens on none.
	pu, err := url.Parse(cmpOr(c.PeerURL, "http://127.0.0.1:2380"))
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL %q is malformed: use http://10.0.0.1:2380", c.PeerURL)
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = nil, []url.URL{*pu}
	if c.PeerURL != "" {
		cfg.ListenPeerUrls = []url.URL{*pu}
	}
	cfg.InitialCluster = cmpOr(c.InitialCluster, cfg.Name+"="+pu.String())
	cfg.InitialClusterToken = "wnv"
	cfg.LogLevel = "error"
	// etcd reports its own shutdown as errors; its failures reach us through
	// StartEtcd and Err().
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = c.UnsafeNoFsync
	cfg.WatchProgressNotifyInterval = progressEvery
	cfg.QuotaBackendBytes = c.QuotaBytes
	if cfg.QuotaBackendBytes == 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBytes
	}
	cfg.MaxTxnOps = maxTxnOps
	// Watchers can resume from any revision of the last hour.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = embed.CompactorModePeriodic, "1h"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s did not start: %w", c.DataDir, err)
	}
	if sock != "" {
		if err := os.Chmod(sock, 0o600); err != nil {
			e.Close()
			return nil, fmt.Errorf("etcd client socket %s could not be made 0600: %w", sock, err)
		}
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
