package dataplane

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addrFlags returns the flags of p on ifname and whether it is there.
func addrFlags(t *testing.T, h *netlink.Handle, ifname string, p netip.Prefix) (int, bool) {
	t.Helper()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if got, _ := netip.AddrFromSlice(a.IP); got.Unmap() == p.Addr() && ones == p.Bits() {
			return a.Flags, true
		}
	}
	return 0, false
}

func TestAddAndRemoveAddress(t *testing.T) {
	l := newLab(t)
	v4, v6 := netip.MustParsePrefix("198.18.3.1/24"), netip.MustParsePrefix("fd00:3::1/64")
	inNS(t, l.a, func() error {
		for _, p := range []netip.Prefix{v4, v6} {
			if err := AddAddress(l.ifA, p); err != nil {
				return err
			}
		}
		return nil
	})
	if _, ok := addrFlags(t, l.ha, l.ifA, v4); !ok {
		t.Errorf("%s not on %s after AddAddress", v4, l.ifA)
	}
	flags, ok := addrFlags(t, l.ha, l.ifA, v6)
	if !ok || flags&unix.IFA_F_NODAD != 0 {
		t.Errorf("%s on %s: present %v, flags %#x; want present without IFA_F_NODAD", v6, l.ifA, ok, flags)
	}
	inNS(t, l.a, func() error {
		for _, p := range []netip.Prefix{v4, v6} {
			if err := RemoveAddress(l.ifA, p); err != nil {
				return err
			}
		}
		return nil
	})
	for _, p := range []netip.Prefix{v4, v6} {
		if _, ok := addrFlags(t, l.ha, l.ifA, p); ok {
			t.Errorf("%s still on %s after RemoveAddress", p, l.ifA)
		}
	}
}

func TestAddressErrorsNameTheInput(t *testing.T) {
	l := newLab(t)
	inNS(t, l.a, func() error {
		for _, tc := range []struct {
			err  error
			want string
		}{
			{AddAddress("nosuch0", netip.MustParsePrefix("198.18.3.1/24")), `"nosuch0"`},
			{AddAddress(l.ifA, netip.Prefix{}), "invalid Prefix"},
			{AddAddress(l.ifA, netip.MustParsePrefix("0.0.0.0/0")), "0.0.0.0/0"},
			{RemoveAddress(l.ifA, netip.MustParsePrefix("198.18.9.9/24")), "198.18.9.9/24"},
		} {
			if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %s", tc.err, tc.want)
			}
		}
		return nil
	})
}

func TestLinkIndexMACAndMTU(t *testing.T) {
	l := newLab(t)
	link, err := l.ha.LinkByName(l.ifA)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.ha.LinkSetMTU(link, 1450); err != nil {
		t.Fatal(err)
	}
	inNS(t, l.a, func() error {
		idx, err := LinkIndex(l.ifA)
		if err != nil || idx != link.Attrs().Index {
			t.Errorf("LinkIndex = %d, %v; want %d", idx, err, link.Attrs().Index)
		}
		mac, err := LinkMAC(l.ifA)
		if err != nil || !bytes.Equal(mac[:], l.macA) {
			t.Errorf("LinkMAC = %s, %v; want %s", mac, err, l.macA)
		}
		mtu, err := LinkMTU(l.ifA)
		if err != nil || mtu != 1450 {
			t.Errorf("LinkMTU = %d, %v; want 1450", mtu, err)
		}
		if _, err := LinkMTU("nosuch0"); err == nil {
			t.Error("LinkMTU of a missing interface succeeded")
		}
		return nil
	})
}
