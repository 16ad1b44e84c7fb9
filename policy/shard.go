package policy

import (
	"encoding/binary"
	"maps"
	"net/netip"

	"github.com/wnv/wnv/packet"
)

// The big indexes (one entry per lookup record) are split into shards by a
// hash of the key, and the shards are grouped in pages. A change copies only
// the page table, the pages and the shards it touches, so a single Add into a
// million-record table copies about a hundred entries and a few hundred
// pointers, while readers keep using the old shards of their snapshot.
const (
	shardBits = 13
	nShards   = 1 << shardBits
	pageSize  = 64
	nPages    = nShards / pageSize
)

// v6Bit marks an IPv6 key in the otherwise 24-bit VSID word, so 10.0.0.1 and
// ::ffff:10.0.0.1 style collisions cannot happen between families.
const v6Bit = 1 << 31

// caKey is (VSID, CA) without pointers or padding, so the maps need no GC
// scanning of keys and hash the key as one block of memory.
type caKey struct {
	hi, lo uint64
	vf     uint64 // VSID | v6Bit
}

func makeCAKey(vsid VSID, a netip.Addr) caKey {
	a = a.Unmap()
	b := a.As16()
	vf := uint64(vsid)
	if !a.Is4() {
		vf |= v6Bit
	}
	return caKey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), vf: vf}
}

func (k caKey) shard() uint32 {
	return mix(k.hi*0x9e3779b97f4a7c15 ^ k.lo ^ k.vf<<17)
}

// macKey is (VSID, MAC), optionally with v6Bit for per-family indexes,
// packed without padding.
type macKey struct {
	vf  uint64
	mac uint64
}

func makeMACKey(vf uint32, m packet.MAC) macKey {
	return macKey{vf: uint64(vf), mac: uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 |
		uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])}
}

func (k macKey) shard() uint32 { return mix(k.mac ^ k.vf<<48 ^ k.vf>>16) }

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

type shardPage[K shardKey, V any] [pageSize]map[K]V

// shardArray is the page table; nil pages have only empty shards.
type shardArray[K shardKey, V any] [nPages]*shardPage[K, V]

func (a *shardArray[K, V]) get(k K) (V, bool) { return a.getAt(k.shard(), k) }

// getAt is get with k's shard i computed by the caller: the fast path calls it
// from non-generic code, where shard() inlines.
func (a *shardArray[K, V]) getAt(i uint32, k K) (V, bool) {
	if a != nil {
		if p := a[i/pageSize]; p != nil {
			v, ok := p[i%pageSize][k]
			return v, ok
		}
	}
	var zero V
	return zero, false
}

// all yields every value, in no particular order.
func (a *shardArray[K, V]) all(yield func(V) bool) {
	if a == nil {
		return
	}
	for _, p := range a {
		if p == nil {
			continue
		}
		for _, m := range p {
			for _, v := range m {
				if !yield(v) {
					return
				}
			}
		}
	}
}

// cowShards is the writable view of a shardArray inside one transaction: the
// page table, each page and each shard are copied the first time they are
// written.
type cowShards[K shardKey, V any] struct {
	arr        *shardArray[K, V]
	copied     bool
	ownedPages [nPages / 64]uint64
	owned      [nShards / 64]uint64
	hint       int // expected new entries per shard, to size copied shards once
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
	pi := i / pageSize
	if c.ownedPages[pi/64]&(1<<(pi%64)) == 0 {
		c.ownedPages[pi/64] |= 1 << (pi % 64)
		np := new(shardPage[K, V])
		if op := c.arr[pi]; op != nil {
			*np = *op
		}
		c.arr[pi] = np
	}
	page := c.arr[pi]
	si := i % pageSize
	if c.owned[i/64]&(1<<(i%64)) == 0 {
		c.owned[i/64] |= 1 << (i % 64)
		old := page[si]
		var m map[K]V
		if c.hint > 0 {
			m = make(map[K]V, len(old)+c.hint)
			maps.Copy(m, old)
		} else if old != nil {
			m = maps.Clone(old)
		} else {
			m = make(map[K]V)
		}
		page[si] = m
	}
	return page[si]
}

func (c *cowShards[K, V]) set(k K, v V) { c.own(k.shard())[k] = v }

func (c *cowShards[K, V]) del(k K) {
	if _, ok := c.arr.get(k); ok {
		delete(c.own(k.shard()), k)
	}
}
