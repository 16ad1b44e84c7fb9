package dataplane

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// detect runs DetectDuplicate inside ns and returns the states it reported.
func detect(t *testing.T, ns netns.NsHandle, ifname string, p netip.Prefix, before func() error) []policy.AddressState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		mu     sync.Mutex
		states []policy.AddressState
	)
	inNS(t, ns, func() error {
		if before != nil {
			if err := before(); err != nil {
				return err
			}
		}
		return DetectDuplicate(ctx, ifname, p, 0, func(a netip.Addr, s policy.AddressState) {
			if a != p.Addr() {
				t.Errorf("report for %s, want %s", a, p.Addr())
			}
			mu.Lock()
			states = append(states, s)
			mu.Unlock()
		})
	})
	mu.Lock()
	defer mu.Unlock()
	return states
}

func wantStates(t *testing.T, got []policy.AddressState, want ...policy.AddressState) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
}

func TestDADIPv6Unique(t *testing.T) {
	l := newLab(t)
	p := netip.MustParsePrefix("fd00:dad::1/64")
	got := detect(t, l.a, l.ifA, p, func() error { return AddAddress(l.ifA, p) })
	wantStates(t, got, policy.AddressTentative, policy.AddressPreferred)
}

func TestDADIPv6Duplicate(t *testing.T) {
	l := newLab(t)
	p := netip.MustParsePrefix("fd00:dad::1/64")
	addNoDAD(t, l.hb, l.ifB, p)
	got := detect(t, l.a, l.ifA, p, func() error { return AddAddress(l.ifA, p) })
	wantStates(t, got, policy.AddressTentative, policy.AddressDuplicate)
}

// Watching may start before the address exists: it then waits for it.
func TestDADIPv6WatchBeforeAdd(t *testing.T) {
	l := newLab(t)
	p := netip.MustParsePrefix("fd00:dad::1/64")
	go func() {
		time.Sleep(200 * time.Millisecond)
		inNS(t, l.a, func() error { return AddAddress(l.ifA, p) })
	}()
	got := detect(t, l.a, l.ifA, p, nil)
	wantStates(t, got, policy.AddressTentative, policy.AddressPreferred)
}

func TestDADIPv4Unique(t *testing.T) {
	l := newLab(t)
	start := time.Now()
	got := detect(t, l.a, l.ifA, netip.MustParsePrefix("198.18.7.1/24"), nil)
	wantStates(t, got, policy.AddressTentative, policy.AddressPreferred)
	if d := time.Since(start); d < arpProbeTotal {
		t.Errorf("probing took %v, want at least %v", d, arpProbeTotal)
	}
}

func TestDADIPv4DuplicateAnswered(t *testing.T) {
	l := newLab(t)
	p := netip.MustParsePrefix("198.18.7.2/24")
	addNoDAD(t, l.hb, l.ifB, p)
	got := detect(t, l.a, l.ifA, p, nil)
	wantStates(t, got, policy.AddressTentative, policy.AddressDuplicate)
}

// Two hosts probing for the same address at once never both win. Which ones
// back off depends on timing: a host that hears the other's first probe stops
// before the other may hear any of its own.
func TestDADIPv4SimultaneousProbes(t *testing.T) {
	l := newLab(t)
	p := netip.MustParsePrefix("198.18.7.3/24")
	var other []policy.AddressState
	done := make(chan struct{})
	go func() {
		defer close(done)
		other = detect(t, l.b, l.ifB, p, nil)
	}()
	got := detect(t, l.a, l.ifA, p, nil)
	<-done
	for _, states := range [][]policy.AddressState{got, other} {
		if len(states) != 2 || states[0] != policy.AddressTentative || (states[1] != policy.AddressPreferred && states[1] != policy.AddressDuplicate) {
			t.Errorf("states %v, want Tentative then Preferred or Duplicate", states)
		}
	}
	if len(got) == 2 && slices.Equal(got, other) && got[1] == policy.AddressPreferred {
		t.Errorf("both hosts claimed %s", p.Addr())
	}
}

func TestDADIPv4ProbeFromAnotherMAC(t *testing.T) {
	l := newLab(t)
	p := netip.MustParsePrefix("198.18.7.5/24")
	var sock int
	inNS(t, l.b, func() (err error) { sock, err = packetSocket(l.ifB); return })
	defer unix.Close(sock)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		probe := arpProbe(packet.MAC(l.macB), p.Addr())
		for {
			unix.Write(sock, probe)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	got := detect(t, l.a, l.ifA, p, nil)
	wantStates(t, got, policy.AddressTentative, policy.AddressDuplicate)
}

func TestDADCancelled(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	for _, p := range []string{"198.18.7.4/24", "fd00:dad::4/64"} { // the IPv6 one is never added
		inNS(t, l.a, func() error {
			err := DetectDuplicate(ctx, l.ifA, netip.MustParsePrefix(p), 0, func(netip.Addr, policy.AddressState) {})
			if err != context.DeadlineExceeded {
				t.Errorf("%s: DetectDuplicate after the deadline returned %v, want context.DeadlineExceeded", p, err)
			}
			return nil
		})
	}
}

func TestARPConflict(t *testing.T) {
	own := packet.MAC{2, 0, 0, 0, 0, 1}
	other := packet.MAC{2, 0, 0, 0, 0, 2}
	a := netip.MustParseAddr("198.18.7.1")
	reply := arpRequest(other, a)
	copy(reply[ethHeaderLen+14:ethHeaderLen+18], []byte{198, 18, 7, 1}) // sender IP = a
	reply[ethHeaderLen+7] = 2
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"our own probe", arpProbe(own, a), false},
		{"another host's probe", arpProbe(other, a), true},
		{"a probe for another address", arpProbe(other, netip.MustParseAddr("198.18.7.2")), false},
		{"a reply from the owner", reply, true},
		{"a request from someone else", arpRequest(other, a), false},
		{"a short frame", reply[:30], false},
	} {
		if got := arpConflict(tc.frame, own, a); got != tc.want {
			t.Errorf("%s: arpConflict = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzARPConflict(f *testing.F) {
	own := packet.MAC{2, 0, 0, 0, 0, 1}
	a := netip.MustParseAddr("198.18.7.1")
	f.Add(arpProbe(packet.MAC{2, 0, 0, 0, 0, 2}, a))
	f.Add(arpProbe(own, a))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if arpConflict(frame, own, a) && packet.MAC(frame[ethHeaderLen+8:ethHeaderLen+14]) == own {
			t.Fatal("our own ARP counted as a conflict")
		}
	})
}

// auxdata is the control message a packet socket reads beside a frame,
// with tci as its 802.1Q tag (none when valid is false).
func auxdata(tci uint16, valid bool) []byte {
	data := make([]byte, tpacketAuxdataLen)
	if valid {
		binary.NativeEndian.PutUint32(data[0:4], unix.TP_STATUS_VLAN_VALID)
	}
	binary.NativeEndian.PutUint16(data[16:18], tci)
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_PACKET, unix.PACKET_AUXDATA
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func TestFrameVLAN(t *testing.T) {
	for _, c := range []struct {
		name string
		oob  []byte
		want uint16
	}{
		{"no auxdata", nil, 0},
		{"untagged", auxdata(0, false), 0},
		{"VLAN 100", auxdata(100, true), 100},
		{"VLAN 200 with priority 5", auxdata(5<<13|200, true), 200},
		{"a stale tci without the valid flag", auxdata(300, false), 0},
	} {
		if got := frameVLAN(c.oob); got != c.want {
			t.Errorf("%s: frameVLAN = %d, want %d", c.name, got, c.want)
		}
	}
}
