package policy

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"sync"
	"testing"

	"github.com/wnv/wnv/packet"
)

// bulk describes n records spread over VSIDs of 1024 addresses each, all in
// rd1: record i has CA 10.0.0.0+i, VSID 5000+i/1024 and MAC 02:00:00+i.
func bulk(n int) Batch {
	var b Batch
	for v := 0; v*1024 < n; v++ {
		b.AddCustomerRoutes = append(b.AddCustomerRoutes, CustomerRoute{RoutingDomainID: rd1, VirtualSubnetID: VSID(5000 + v),
			DestinationPrefix: netip.PrefixFrom(caOf(v*1024), 22)})
	}
	b.AddLookupRecords = make([]LookupRecord, n)
	for i := range n {
		b.AddLookupRecords[i] = LookupRecord{CustomerAddress: caOf(i), VirtualSubnetID: VSID(5000 + i/1024),
			MACAddress: macOf(i), ProviderAddress: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8 & 1), byte(i)}), Rule: TranslationMethodEncap}
	}
	return b
}

func caOf(i int) netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], 10<<24+uint32(i))
	return netip.AddrFrom4(a)
}

func macOf(i int) packet.MAC {
	return packet.MAC{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
}

func mapID[K comparable, V any](m map[K]V) uintptr { return reflect.ValueOf(m).Pointer() }

// TestSingleChangeCopiesFewShards is the scale property: after a bulk
// install, one Add copies only the shards its keys fall in and shares all
// the others with the previous snapshot.
func TestSingleChangeCopiesFewShards(t *testing.T) {
	s := NewStore()
	if err := s.Apply(bulk(50_000)); err != nil {
		t.Fatal(err)
	}
	before := s.Table()
	ok(s.AddLookupRecord(LookupRecord{CustomerAddress: caOf(50_000), VirtualSubnetID: 5000 + 48, MACAddress: macOf(50_000),
		ProviderAddress: addr("198.18.0.1"), Rule: TranslationMethodEncap}))
	after := s.Table()
	for name, pair := range map[string][2]*[nShards]uintptr{
		"byCA":  {ids(before.byCA), ids(after.byCA)},
		"byMAC": {ids(before.byMAC), ids(after.byMAC)},
	} {
		changed := 0
		for i := range nShards {
			if pair[0][i] != pair[1][i] {
				changed++
			}
		}
		if changed != 1 {
			t.Errorf("%s: %d shards copied by one Add, want 1", name, changed)
		}
	}
	pages := 0
	for pi := range nPages {
		if before.byCA[pi] != after.byCA[pi] {
			pages++
		}
	}
	if pages != 1 {
		t.Errorf("byCA: %d pages copied by one Add, want 1", pages)
	}
	if before.byZero != after.byZero {
		t.Errorf("byZero array copied although no zero-CA record changed")
	}
	if n, _, _, _ := before.Counts(); n != 50_000 {
		t.Errorf("old snapshot counts %d records", n)
	}
}

func ids[K shardKey, V any](a *shardArray[K, V]) *[nShards]uintptr {
	var out [nShards]uintptr
	for pi, p := range a {
		if p != nil {
			for si, m := range p {
				out[pi*pageSize+si] = mapID(m)
			}
		}
	}
	return &out
}

func TestLookupsDoNotAllocate(t *testing.T) {
	s := lpmStore(t)
	ok(s.AddLookupRecord(rec("10.0.0.5", 5001, "00:15:5d:00:00:05", "198.18.0.2")))
	ok(s.AddProviderAddress(ProviderAddress{ProviderAddress: addr("198.18.0.1"), AddressState: AddressPreferred}))
	tb := s.Table()
	ca, dst6, m := addr("10.0.0.5"), addr("fd00:0:0:1::8000:5"), mac("00:15:5d:00:00:05")
	allocs := testing.AllocsPerRun(100, func() {
		tb.LookupCA(5001, ca)
		tb.LookupMAC(5001, m)
		tb.GatewayWildcard(5001, false)
		tb.RoutingDomain(5001)
		tb.Route(rd1, ca)
		tb.Route(rd1, dst6)
		tb.OnLinkPrefix(5001, ca)
		tb.IsLocalPA(ca)
		tb.LocalPA(false)
		tb.L2Only(5001).Records(m)
	})
	if allocs != 0 {
		t.Errorf("lookups allocate %v times per run, want 0", allocs)
	}
}

const million = 1_000_000

var (
	bigOnce  sync.Once
	bigStore *Store
)

func millionStore(b *testing.B) *Store {
	bigOnce.Do(func() {
		bigStore = NewStore()
		if err := bigStore.Apply(bulk(million)); err != nil {
			b.Fatal(err)
		}
	})
	return bigStore
}

func BenchmarkLookupCA1M(b *testing.B) {
	tb := millionStore(b).Table()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i * 7919 % million
		if _, ok := tb.LookupCA(VSID(5000+j/1024), caOf(j)); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkLookupCA1MHot looks up 1024 records spread over the million, a
// cache-resident working set like a switch's active flows: the CPU cost of a
// lookup without DRAM misses.
func BenchmarkLookupCA1MHot(b *testing.B) {
	tb := millionStore(b).Table()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i % 1024 * 977
		if _, ok := tb.LookupCA(VSID(5000+j/1024), caOf(j)); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkLookupMAC1M(b *testing.B) {
	tb := millionStore(b).Table()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i * 7919 % million
		if _, ok := tb.LookupMAC(VSID(5000+j/1024), macOf(j)); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkRoute1M(b *testing.B) {
	tb := millionStore(b).Table()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := tb.Route(rd1, caOf(i*7919%million)); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkAddInto1M is one Add plus one Remove against a million records;
// compare with BenchmarkApply1M (a rebuild) to see that a change does not
// copy the table.
// BenchmarkLookupCA1MPlainMapBaseline is one unsharded map of the same keys:
// random lookups in a million entries cost what a cache miss costs, and
// sharding adds nothing measurable to that.
func BenchmarkLookupCA1MPlainMapBaseline(b *testing.B) {
	m := make(map[caKey]*LookupRecord, million)
	r := &LookupRecord{}
	for i := range million {
		m[makeCAKey(VSID(5000+i/1024), caOf(i))] = r
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i * 7919 % million
		if _, ok := m[makeCAKey(VSID(5000+j/1024), caOf(j))]; !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkAddInto1M(b *testing.B) {
	s := millionStore(b)
	r := LookupRecord{CustomerAddress: caOf(million), VirtualSubnetID: 5000 + million/1024, MACAddress: macOf(million),
		ProviderAddress: addr("198.18.0.1"), Rule: TranslationMethodEncap}
	ok(s.AddCustomerRoute(CustomerRoute{RoutingDomainID: rd1, VirtualSubnetID: r.VirtualSubnetID, DestinationPrefix: netip.PrefixFrom(r.CustomerAddress, 32)}))
	f := LookupRecordFilter{CustomerAddress: []netip.Addr{r.CustomerAddress}, VirtualSubnetID: []VSID{r.VirtualSubnetID}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AddLookupRecord(r); err != nil {
			b.Fatal(err)
		}
		if _, err := s.RemoveLookupRecords(f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApply1M(b *testing.B) {
	batch := bulk(million)
	b.ReportAllocs()
	for b.Loop() {
		s := NewStore()
		if err := s.Apply(batch); err != nil {
			b.Fatal(err)
		}
	}
}
