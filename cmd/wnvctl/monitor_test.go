package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/provider/providertest"
	"github.com/wnv/wnv/vswitch"
)

// spoofedSample is a kernel drop of a UDP frame from port blue1.
func spoofedSample(t *testing.T) monitor.Sample {
	t.Helper()
	b := make([]byte, 14+20+8+4)
	n := packet.PutEthernet(b, packet.MAC{2, 0, 0, 0, 0, 2}, packet.MAC{2, 0, 0, 0, 0, 0x66}, packet.EtherTypeIPv4)
	n += packet.PutIPv4(b[n:], netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), packet.ProtoUDP, 64, 12, 1, true)
	packet.PutUDP(b[n:], 40000, 7777, 4)
	s := monitor.Sample{Time: time.Now(), Kind: monitor.KindDrop, Path: monitor.PathKernel, Reason: uint8(vswitch.ReasonSpoofedMAC),
		Port: "blue1", VSID: 5001, Weight: 1}
	s.SetFrame(b)
	return s
}

// monitorRun runs wnvctl monitor with args until it returns, publishing
// smp once it subscribed.
func monitorRun(t *testing.T, b *providertest.Backend, sock string, smp monitor.Sample, args ...string) string {
	t.Helper()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := wnvctl(t, sock, append([]string{"monitor", "--count", "1"}, args...)...)
		done <- result{out, err}
	}()
	// Publish until it ends: an earlier stream may still be subscribed
	// when this one is not yet.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.MonitorHub().Publish(&smp)
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("wnvctl monitor: %v\n%s", r.err, r.out)
			}
			return r.out
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("wnvctl monitor did not end after its one event")
	return ""
}

func TestMonitorCommand(t *testing.T) {
	b := providertest.NewBackend()
	sock := providertest.Serve(t, b)
	smp := spoofedSample(t)

	pcapFile := filepath.Join(t.TempDir(), "drops.pcap")
	out := monitorRun(t, b, sock, smp, "--vm", "blue1", "--reason", "spoofed-mac", "--pcap", pcapFile)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "# monitoring test-host: 1 in 1, at most 100 a second" || !strings.HasPrefix(lines[1], "TIME") {
		t.Fatalf("output:\n%s", out)
	}
	for _, want := range []string{"kernel", "test-host", "spoofed-mac", "blue1", "5001", "10.0.0.1 > 10.0.0.2  UDP 40000 > 7777"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("drop line %q lacks %q", lines[2], want)
		}
	}
	f, err := os.Open(pcapFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := r.ReadPacketData()
	if err != nil || !bytes.Equal(data, smp.Frame()) {
		t.Errorf("pcap frame %x (%v), want %x", data, err, smp.Frame())
	}

	out = monitorRun(t, b, sock, smp, "-o", "json")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	var e monitor.Event
	if len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &e) != nil || e.Type != "drop" || e.Reason != "spoofed-mac" ||
		e.Port != "blue1" || e.VirtualSubnetID != 5001 || !bytes.Equal(e.Frame, smp.Frame()) {
		t.Errorf("json output:\n%s", out)
	}
}

func TestMonitorCommandRefusals(t *testing.T) {
	b := providertest.NewBackend()
	sock := providertest.Serve(t, b)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--reason", "nonsense"}, `Reason "nonsense" is not a drop reason`},
		{[]string{"--rate", "20000"}, "Rate 20000 is too high: use 1..10000"},
		{[]string{"--count", "-1"}, "--count -1 is negative"},
	} {
		_, err := wnvctl(t, sock, append([]string{"monitor"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("monitor %v: %v, want %q", c.args, err, c.want)
		}
	}
}
