package vswitch

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

const benchRecords = 1_000_000

// bigSwitch has benchRecords lookup records in one /8 virtual subnet spread
// over 1000 remote hosts, and blue1 (10.0.0.10) on port 0.
func bigSwitch(b *testing.B) *Switch {
	st := policy.NewStore()
	batch := policy.Batch{AddCustomerRoutes: []policy.CustomerRoute{{RoutingDomainID: blueRD, VirtualSubnetID: 5001, DestinationPrefix: netip.MustParsePrefix("10.0.0.0/8")}}}
	batch.AddLookupRecords = make([]policy.LookupRecord, 0, benchRecords)
	for i := range benchRecords {
		ca := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if i == 10 {
			batch.AddLookupRecords = append(batch.AddLookupRecords, policy.LookupRecord{CustomerAddress: ca, VirtualSubnetID: 5001, MACAddress: macBlue1, ProviderAddress: pa1, Rule: policy.TranslationMethodEncap})
			continue
		}
		h := i % 1000
		pa := netip.AddrFrom4([4]byte{198, 19, byte(h >> 8), byte(h)})
		mac := packet.MAC{2, 1, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		batch.AddLookupRecords = append(batch.AddLookupRecords, policy.LookupRecord{CustomerAddress: ca, VirtualSubnetID: 5001, MACAddress: mac, ProviderAddress: pa, Rule: policy.TranslationMethodEncap})
	}
	if err := st.Apply(batch); err != nil {
		b.Fatal(err)
	}
	if _, err := st.AddProviderAddress(policy.ProviderAddress{ProviderAddress: pa1, PrefixLength: 15}); err != nil {
		b.Fatal(err)
	}
	sw := New(Config{UnderlayMTU: 9000, Events: &recorder{}})
	sw.SetPolicy(st.Table())
	sw.SetPorts(must(NewPortTable([]PortConfig{{Index: 0, Name: "blue1", MAC: macBlue1, VSID: 5001, CAs: addrs("10.0.0.10")}})))
	return sw
}

var big *Switch

// destinations picks CAs spread over the whole table so lookups miss caches
// as they would with many flows.
func destination(i int) (netip.Addr, packet.MAC) {
	j := (i*7919 + 12345) % benchRecords
	if j == 10 {
		j++
	}
	return netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)}), packet.MAC{2, 1, byte(j >> 24), byte(j >> 16), byte(j >> 8), byte(j)}
}

// BenchmarkEgress is lookup and encapsulation as a port worker runs it, with
// its decision cache (Flows), for 1024 flows to destinations spread over the
// 1,000,000 records.
func BenchmarkEgress(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { benchEgress(b, size, NewFlows()) })
	}
}

// BenchmarkEgressUncached is BenchmarkEgress with every packet resolved
// against the policy table.
func BenchmarkEgressUncached(b *testing.B) { benchEgress(b, 64, nil) }

func benchEgress(b *testing.B, size int, f *Flows) {
	if big == nil {
		big = bigSwitch(b)
	}
	const flows = 1024
	bufs := make([][]byte, flows)
	lens := make([]int, flows)
	for i := range bufs {
		dst, mac := destination(i)
		buf, n := udpFrame(mac, macBlue1, "10.0.0.10", dst.String(), size-14-20-8, false)
		// Frame-sized buffers, as a worker's batch would hold: 1024 buffers
		// of 9 KiB would make every packet a cache miss of the benchmark's
		// own making.
		bufs[i], lens[i] = append([]byte(nil), buf[:Headroom+n]...), n
	}
	sc := scratch()
	var r Result
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i & (flows - 1)
		if big.FromPortFlows(&r, f, 0, bufs[k], Headroom, lens[k], 0, sc); r.Action != ToUnderlay {
			b.Fatalf("%v %v", r.Action, r.Reason)
		}
	}
}

func BenchmarkIngress(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			if big == nil {
				big = bigSwitch(b)
			}
			const flows = 1024
			payloads := make([][]byte, flows)
			srcs := make([]netip.Addr, flows)
			for i := range payloads {
				src, mac := destination(i)
				j := (i*7919 + 12345) % benchRecords
				if j == 10 {
					j++
				}
				h := j % 1000
				srcs[i] = netip.AddrFrom4([4]byte{198, 19, byte(h >> 8), byte(h)})
				payloads[i] = encapSized(5001, macBlue1, mac, src.String(), "10.0.0.10", size-14-20-8)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i & (flows - 1)
				if r := big.FromUnderlay(srcs[k], pa1, payloads[k]); r.Action != ToPort {
					b.Fatalf("%v %v", r.Action, r.Reason)
				}
			}
		})
	}
}

func encapSized(vsid uint32, dstMAC, srcMAC packet.MAC, src, dst string, payloadLen int) []byte {
	buf, n := udpFrame(dstMAC, srcMAC, src, dst, payloadLen, true)
	packet.PutNVGRE(buf[Headroom-8:], vsid, 7)
	return buf[Headroom-8 : Headroom+n]
}
