package policyserver

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/netip"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/policyapi"
)

// redirectMasterKey holds the 32-byte master secret of redirect keys. It is
// outside Prefix: no watch event or GET carries it.
const redirectMasterKey = "/wnv/secret/redirect-master"

// redirectLabel starts every redirect key's HMAC input.
const redirectLabel = "wnv redirect v1"

// RedirectKey derives the pairwise redirect key of two PAs:
// HMAC-SHA256(master, "wnv redirect v1" || lower || higher), each address as
// 16 bytes (IPv4 mapped into IPv6) in ascending byte order, so that both
// ends derive the same key.
func RedirectKey(master []byte, a, b netip.Addr) []byte {
	x, y := a.Unmap().As16(), b.Unmap().As16()
	if bytes.Compare(x[:], y[:]) > 0 {
		x, y = y, x
	}
	m := hmac.New(sha256.New, master)
	m.Write([]byte(redirectLabel))
	m.Write(x[:])
	m.Write(y[:])
	return m.Sum(nil)
}

// redirectMaster returns the master secret, creating it atomically on
// first use (concurrent replicas agree on the first one written).
func (s *Store) redirectMaster(ctx context.Context) ([]byte, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(redirectMasterKey), "=", 0)).
		Then(clientv3.OpPut(redirectMasterKey, string(secret))).
		Else(clientv3.OpGet(redirectMasterKey)).Commit()
	if err != nil {
		return nil, etcdError(err)
	}
	if resp.Succeeded {
		return secret, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 || len(kvs[0].Value) != 32 {
		return nil, fmt.Errorf("etcd key %s is not a 32-byte secret", redirectMasterKey)
	}
	return kvs[0].Value, nil
}

// RedirectKeys returns the keys of each PA of host with each PA of the same
// family of every other registered host.
func (s *Store) RedirectKeys(ctx context.Context, host string) ([]policyapi.RedirectKey, error) {
	me, err := s.Host(ctx, host)
	if err != nil {
		return nil, err
	}
	hosts, err := s.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	master, err := s.redirectMaster(ctx)
	if err != nil {
		return nil, err
	}
	out := []policyapi.RedirectKey{}
	for _, local := range me.ProviderAddresses {
		for _, h := range hosts {
			if h.Name == host {
				continue
			}
			for _, peer := range h.ProviderAddresses {
				if peer.Unmap().Is4() != local.Unmap().Is4() {
					continue
				}
				out = append(out, policyapi.RedirectKey{LocalPA: local, PeerPA: peer, Key: RedirectKey(master, local, peer)})
			}
		}
	}
	return out, nil
}
