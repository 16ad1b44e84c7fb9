package fastpath

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/wnv/wnv/monitor"
	"github.com/wnv/wnv/vswitch"
)

// TestLayout checks that the Go types have the sizes of the C structs in
// the committed object's BTF, and that the maps hold what the Go side
// reads and writes.
func TestLayout(t *testing.T) {
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"config": datapathConfig{}, "port": datapathPort{}, "addr_key": datapathAddrKey{}, "pa_key": datapathPaKey{},
		"egress": datapathEgress{}, "ingress_key": datapathIngressKey{}, "ingress": datapathIngress{},
		"rewrite_key": datapathRewriteKey{}, "rewrite_in": datapathRewriteIn{}, "vm_mac": datapathVmMac{},
		"port_stats": datapathPortStats{}, "vsid_stats": datapathVsidStats{}, "underlay_stats": datapathUnderlayStats{},
		"monitor_config": datapathMonitorConfig{}, "monitor_state": datapathMonitorState{}, "monitor_event": datapathMonitorEvent{},
	} {
		var s *btf.Struct
		if err := spec.Types.TypeByName(name, &s); err != nil {
			t.Errorf("struct %s: %v", name, err)
			continue
		}
		if got := binary.Size(v); got != int(s.Size) {
			t.Errorf("struct %s: Go size %d, C size %d", name, got, s.Size)
		}
	}
	for name, kv := range map[string][2]int{
		datapathMapWnvPorts:     {4, binary.Size(datapathPort{})},
		datapathMapWnvPortCas:   {binary.Size(datapathAddrKey{}), 1},
		datapathMapWnvEgress:    {binary.Size(datapathAddrKey{}), binary.Size(datapathEgress{})},
		datapathMapWnvFwdSrcs:   {binary.Size(datapathAddrKey{}), 8},
		datapathMapWnvIngress:   {binary.Size(datapathIngressKey{}), binary.Size(datapathIngress{})},
		datapathMapWnvRewriteIn: {binary.Size(datapathRewriteKey{}), binary.Size(datapathRewriteIn{})},
		datapathMapWnvVmMacs:    {binary.Size(datapathPaKey{}), binary.Size(datapathVmMac{})},
		datapathMapWnvReasons:   {4, 8},
		datapathMapWnvPaVlans:   {binary.Size(datapathPaKey{}), 2},
	} {
		m := spec.Maps[name]
		if int(m.KeySize) != kv[0] || int(m.ValueSize) != kv[1] {
			t.Errorf("map %s: key %d value %d bytes, want %d, %d", name, m.KeySize, m.ValueSize, kv[0], kv[1])
		}
	}
	if m := spec.Maps[datapathMapWnvPortStats]; m.MaxEntries != MaxPorts {
		t.Errorf("port counters hold %d ports, want %d", m.MaxEntries, MaxPorts)
	}
	if n := len(datapathMonitorEvent{}.Data); n != SnapLen || SnapLen != monitor.SnapLen {
		t.Errorf("a drop sample holds %d bytes, fastpath.SnapLen is %d, monitor.SnapLen %d", n, SnapLen, monitor.SnapLen)
	}
	if m := spec.Maps[datapathMapWnvReasons]; m.MaxEntries != NumReasonSlots {
		t.Errorf("reason counters hold %d, want %d", m.MaxEntries, NumReasonSlots)
	}
}

// TestReasons keeps the reason numbers in step with vswitch's.
func TestReasons(t *testing.T) {
	for _, c := range []struct {
		got  int
		want vswitch.Reason
	}{
		{ReasonMalformed, vswitch.ReasonMalformed},
		{ReasonSpoofedMAC, vswitch.ReasonSpoofedMAC},
		{ReasonSlowPathDown, vswitch.ReasonHoldOverflow + 1},
		{ReasonWrongVLAN, vswitch.ReasonWrongVLAN},
	} {
		if c.got != int(c.want) {
			t.Errorf("reason %d, vswitch's %v is %d", c.got, c.want, c.want)
		}
	}
	if ReasonSlowPathDown >= NumReasonSlots || ReasonWrongVLAN >= NumReasonSlots {
		t.Errorf("slow-path-down (%d) or wrong-vlan (%d) has no counter", ReasonSlowPathDown, ReasonWrongVLAN)
	}
}

// TestReasonDefines keeps every REASON_ define of datapath.h at the number
// of the vswitch reason of the same name (REASON_WRONG_VLAN: wrong-vlan).
func TestReasonDefines(t *testing.T) {
	h, err := os.ReadFile("bpf/datapath.h")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]vswitch.Reason{}
	for _, r := range vswitch.Reasons() {
		byName[r.String()] = r
	}
	n := 0
	for _, line := range strings.Split(string(h), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "#define" || !strings.HasPrefix(f[1], "REASON_") {
			continue
		}
		n++
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(f[1], "REASON_"), "_", "-"))
		r, ok := byName[name]
		if !ok {
			t.Errorf("%s: vswitch has no reason %q", f[1], name)
			continue
		}
		if f[2] != strconv.Itoa(int(r)) {
			t.Errorf("%s is %s, vswitch's %s is %d", f[1], f[2], name, r)
		}
	}
	if n == 0 {
		t.Error("datapath.h defines no REASON_")
	}
}

// TestVLANMarkDefine keeps VLANMark the VLAN_MARK of datapath.h.
func TestVLANMarkDefine(t *testing.T) {
	h, err := os.ReadFile("bpf/datapath.h")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(h), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#define" && f[1] == "VLAN_MARK" {
			if v, err := strconv.ParseUint(f[2], 0, 32); err != nil || uint32(v) != VLANMark {
				t.Errorf("VLAN_MARK is %s, VLANMark %#x", f[2], VLANMark)
			}
			return
		}
	}
	t.Error("datapath.h defines no VLAN_MARK")
}
