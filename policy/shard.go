package policy

import (
	"encoding/binary"
	"maps"
	"net/netip"

	"github.com/wnv/wnv/packet"
)

// The big indexes (one entry per lookup record) are split into shards by a
// hash of the key. A change copies only the shards it touches, so a single
// Add into a million-record table copies about a thousand entries, while
// readers keep using the old shards of their snapshot.
const (
	shardBits = 10
	nShards   = 1 << shardBits
)

// v6Bit marks an IPv6 key in the otherwise 24-bit VSID word, so 10.0.0.1 and
// ::ffff:10.0.0.1 style collisions cannot happen between families.
const v6Bit = 1 << 31

// caKey is (VSID, CA) without pointers, so the maps need no GC scanning of
// keys and hash cheaply.
type caKey struct {
	hi, lo uint64
	vf     uint32 // VSID | v6Bit
}

func makeCAKey(vsid VSID, a netip.Addr) caKey {
	a = a.Unmap()
	b := a.As16()
	vf := uint32(vsid)
	if !a.Is4() {
		vf |= v6Bit
	}
	return caKey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), vf: vf}
}

func (k caKey) shard() uint32 {
	return mix(k.hi*0x9e3779b97f4a7c15 ^ k.lo ^ uint64(k.vf)<<17)
}

// macKey is (VSID, MAC), optionally with v6Bit for per-family indexes.
type macKey struct {
	vf  uint32
	mac packet.MAC
}

func makeMACKey(vf uint32, m packet.MAC) macKey { return macKey{vf: vf, mac: m} }

func (k macKey) shard() uint32 {
	m := uint64(k.mac[0])<<40 | uint64(k.mac[1])<<32 | uint64(k.mac[2])<<24 |
		uint64(k.mac[3])<<16 | uint64(k.mac[4])<<8 | uint64(k.mac[5])
	return mix(m ^ uint64(k.vf)<<48 ^ uint64(k.vf)>>16)
}

// mix is a 64-bit finalizer (murmur3 fmix64); the top bits pick the shard.
func mix(h uint64) uint32 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return uint32(h >> (64 - shardBits))
}

type shardKey interface {
	comparable
	shard() uint32
}

type shardArray[K shardKey, V any] [nShards]map[K]V

func (a *shardArray[K, V]) get(k K) (V, bool) {
	v, ok := a[k.shard()][k]
	return v, ok
}

// cowShards is the writable view of a shardArray inside one transaction: the
// array and each shard are copied the first time they are written.
type cowShards[K shardKey, V any] struct {
	arr    *shardArray[K, V]
	copied bool
	owned  [nShards / 64]uint64
	hint   int // expected new entries per shard, to size copied shards once
}

func newCOW[K shardKey, V any](a *shardArray[K, V]) cowShards[K, V] {
	if a == nil {
		return cowShards[K, V]{arr: new(shardArray[K, V]), copied: true}
	}
	return cowShards[K, V]{arr: a}
}

func (c *cowShards[K, V]) get(k K) (V, bool) { return c.arr.get(k) }

func (c *cowShards[K, V]) own(i uint32) map[K]V {
	if !c.copied {
		a := *c.arr
		c.arr = &a
		c.copied = true
	}
	if c.owned[i/64]&(1<<(i%64)) == 0 {
		c.owned[i/64] |= 1 << (i % 64)
		old := c.arr[i]
		var m map[K]V
		if c.hint > 0 {
			m = make(map[K]V, len(old)+c.hint)
			maps.Copy(m, old)
		} else if old != nil {
			m = maps.Clone(old)
		} else {
			m = make(map[K]V)
		}
		c.arr[i] = m
	}
	return c.arr[i]
}

func (c *cowShards[K, V]) set(k K, v V) { c.own(k.shard())[k] = v }

func (c *cowShards[K, V]) del(k K) {
	i := k.shard()
	if _, ok := c.arr[i][k]; ok {
		delete(c.own(i), k)
	}
}
