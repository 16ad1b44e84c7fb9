package host

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

// TestL2OnlyLearning: in a subnet with an L2Only VM (vm0 on host 0, which
// configures 10.91.0.10 itself) and a Static VM (vm1, 10.91.0.11, on host
// 1), vm0's first packets teach host 0 its CA: a Dynamic record appears
// there and a customer-address-added event comes through the notification
// API. The test then plays the policy server, handing the record to host 1
// as the host agent would have it. Afterwards vm1 reaches vm0 by IP without
// any flooding on either host, and vm0 claiming vm1's Static CA is refused.
func TestL2OnlyLearning(t *testing.T) {
	needRoot(t)
	b := newTwoHosts(t, "lr")
	pa := [2]netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")}
	ca := [2]netip.Addr{netip.MustParseAddr("10.91.0.10"), netip.MustParseAddr("10.91.0.11")}
	mac := [2]packet.MAC{{2, 0, 0, 0, 0x91, 1}, {2, 0, 0, 0, 0x91, 2}}
	const vsid = 9101
	rd := policy.GUID{0x91}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	check := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	notifySock := filepath.Join(t.TempDir(), "notify.sock")
	var clients [2]*provider.Client
	for i := range 2 {
		// No IPv6 in the VMs: their link-local DAD would be flooded.
		run(t, "ip", "netns", "exec", b.vms[i], "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		env := []string{}
		if i == 0 {
			env = append(env, envNotify+"="+notifySock)
		}
		c, _ := startHostEnv(t, b.hosts[i], b.under[i], env...)
		clients[i] = c
		check(c.AddCustomerRoute(ctx, policy.CustomerRoute{RoutingDomainID: rd, VirtualSubnetID: vsid, DestinationPrefix: netip.MustParsePrefix("10.91.0.0/24")}))
		check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: netip.IPv4Unspecified(), VirtualSubnetID: vsid, MACAddress: mac[0],
			ProviderAddress: pa[0], Rule: policy.TranslationMethodEncap, Type: policy.L2Only}))
		check(c.AddLookupRecord(ctx, policy.LookupRecord{CustomerAddress: ca[1], VirtualSubnetID: vsid, MACAddress: mac[1],
			ProviderAddress: pa[1], Rule: policy.TranslationMethodEncap, Type: policy.Static}))
		check(c.AddProviderAddress(ctx, policy.ProviderAddress{ProviderAddress: pa[i], PrefixLength: 24}))
		vmNIC(t, b.hosts[i], b.taps[i], b.vms[i], mac[i])
		spec := provider.PortSpec{Name: "vm", Interface: b.taps[i], MACAddress: mac[i], VirtualSubnetID: vsid}
		if i == 1 {
			spec.CustomerAddresses = []netip.Addr{ca[1]}
		}
		check(c.AttachPort(ctx, spec))
		run(t, "ip", "-n", b.vms[i], "addr", "add", ca[i].String()+"/24", "dev", "eth0")
	}
	for i := range 2 {
		waitPreferred(t, clients[i], pa[i])
	}
	events, err := notify.Open(notifySock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	added := make(chan notify.CustomerAddressChange, 16)
	go func() {
		for ev, err := range events.Events(ctx, notify.ObjectChangeType) {
			if err == nil && ev.ObjectChange.CustomerAddress != nil {
				added <- *ev.ObjectChange.CustomerAddress
			}
		}
	}()

	// vm0 speaks first (to vm1, whose Static CA host 0 answers ARP for).
	probeBothWays(t, b.vms[0], b.vms[1], ca)
	wantRec := policy.LookupRecord{CustomerAddress: ca[0], VirtualSubnetID: vsid, MACAddress: mac[0], ProviderAddress: pa[0],
		Rule: policy.TranslationMethodEncap, Type: policy.Dynamic}
	select {
	case ev := <-added:
		want := notify.CustomerAddressChange{MACAddress: mac[0], CA: ca[0], VirtualSubnetID: vsid, PA: pa[0], NotificationReason: notify.CustomerAddressAdded}
		if ev != want {
			t.Errorf("customer address event %+v, want %+v", ev, want)
		}
	case <-ctx.Done():
		t.Fatal("no customer-address-added event from host 0")
	}
	recs, err := clients[0].LookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca[0]}})
	if err != nil || len(recs) != 1 || !sameRecord(recs[0], wantRec) || !recs[0].Unsynchronized || recs[0].Unusable {
		t.Fatalf("host 0's records of %s: %+v (%v), want one usable, Unsynchronized %+v", ca[0], recs, err, wantRec)
	}
	// The policy server's part: every host of the subnet gets the record.
	check(clients[1].AddLookupRecord(ctx, wantRec))

	// vm1 resolves and reaches vm0 by IP, and nothing is flooded.
	run(t, "ip", "-n", b.vms[1], "neigh", "flush", "all")
	run(t, "ip", "-n", b.vms[0], "neigh", "flush", "all")
	before := [2]uint64{flooded(t, clients[0], vsid), flooded(t, clients[1], vsid)}
	probeBothWays(t, b.vms[1], b.vms[0], [2]netip.Addr{ca[1], ca[0]})
	for i := range 2 {
		if now := flooded(t, clients[i], vsid); now != before[i] {
			t.Errorf("host %d flooded %d copies in VSID %d after learning, want none", i, now-before[i], vsid)
		}
	}

	// vm0 claims vm1's Static CA: host 0 drops what it sends from it.
	run(t, "ip", "-n", b.vms[0], "addr", "add", ca[1].String()+"/32", "dev", "eth0")
	err = inNetns(b.vms[0], func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ca[1], 0)), net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.91.0.12:7")))
		if err != nil {
			return err
		}
		defer c.Close()
		for range 3 {
			c.Write([]byte("mine")) // the ARP for 10.91.0.12 goes out from 10.91.0.11
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "host 0 counts static-ca drops", func() error {
		cs, err := clients[0].Counters(ctx)
		if err != nil {
			return err
		}
		for _, d := range cs.Drops {
			if d.Reason == "static-ca" && d.Count > 0 {
				return nil
			}
		}
		return fmt.Errorf("drops %+v", cs.Drops)
	})
	for i, c := range clients {
		recs, err := c.LookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca[1]}})
		if err != nil || len(recs) != 1 || recs[0].Type != policy.Static || recs[0].MACAddress != mac[1] {
			t.Errorf("host %d's records of %s: %+v (%v), want vm1's Static record only", i, ca[1], recs, err)
		}
	}
}

// sameRecord compares what learning sets of a record.
func sameRecord(a, b policy.LookupRecord) bool {
	return a.CustomerAddress == b.CustomerAddress && a.VirtualSubnetID == b.VirtualSubnetID && a.MACAddress == b.MACAddress &&
		a.ProviderAddress == b.ProviderAddress && a.Rule == b.Rule && a.Type == b.Type
}

func flooded(t *testing.T, c *provider.Client, vsid policy.VSID) uint64 {
	t.Helper()
	cs, err := c.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range cs.VSIDs {
		if v.VirtualSubnetID == vsid {
			return v.Flooded
		}
	}
	return 0
}
