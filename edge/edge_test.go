package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wnv/wnv/packet"
)

func TestScriptNATMasqueradesAndAdmitsOnlyReplies(t *testing.T) {
	nat := Spec{NAT: true}.Script()
	for _, want := range []string{"delete table inet wnv-gateway", `iifname "external" oifname "tenant" ct state established,related accept`, `oifname "external" masquerade`, "policy drop"} {
		if !strings.Contains(nat, want) {
			t.Errorf("NAT script lacks %q:\n%s", want, nat)
		}
	}
	fwd := Spec{}.Script()
	if strings.Contains(fwd, "masquerade") || strings.Contains(fwd, "ct state") || !strings.Contains(fwd, `iifname "external" oifname "tenant" accept`) {
		t.Errorf("forwarding script should pass both ways without NAT:\n%s", fwd)
	}
}

func TestSpecEqualComparesEveryField(t *testing.T) {
	a := Spec{Name: "g", Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.254/24")}, Routes: []Route{{Prefix: netip.MustParsePrefix("10.0.1.0/24"), Via: netip.MustParseAddr("10.0.0.1")}}}
	b := a
	b.Routes = []Route{{Prefix: netip.MustParsePrefix("10.0.2.0/24"), Via: netip.MustParseAddr("10.0.0.1")}}
	c := a
	c.NAT = true
	if !a.Equal(a) || a.Equal(b) || a.Equal(c) {
		t.Errorf("Equal: a=a %v, a=b %v, a=c %v; want true, false, false", a.Equal(a), a.Equal(b), a.Equal(c))
	}
}

// TestReconcileBuildsAdoptsAndRemoves builds a NAT gateway from a test
// namespace standing in for wnvd's, builds it again (adoption: nothing
// changes), and removes it.
func TestReconcileBuildsAdoptsAndRemoves(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	id := make([]byte, 3)
	rand.Read(id)
	prefix := "wgx" + hex.EncodeToString(id) + "-gw-"
	// The host's outside interface: one end of a veth in this namespace.
	parent := "wgx" + hex.EncodeToString(id)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: parent}, PeerName: parent + "b"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(parent); err == nil {
			netlink.LinkDel(l)
		}
	})
	l := &Linux{Prefix: prefix}
	t.Cleanup(func() { l.Reconcile(context.Background(), nil) })
	s := Spec{
		Name: "red", Namespace: prefix + "red", Port: "wgx" + hex.EncodeToString(id)[:4] + "p", MAC: packet.MAC{2, 0, 0, 0, 0x60, 0xfe}, MTU: 1400, NAT: true,
		Addresses:         []netip.Prefix{netip.MustParsePrefix("10.0.0.254/24"), netip.MustParsePrefix("fd00:0:0:1::fe/64")},
		Routes:            []Route{{Prefix: netip.MustParsePrefix("10.0.1.0/24"), Via: netip.MustParseAddr("10.0.0.1")}},
		ExternalInterface: parent,
		ExternalAddresses: []netip.Prefix{netip.MustParsePrefix("203.0.113.3/24"), netip.MustParsePrefix("2001:db8:e::3/64")},
		ExternalGateways:  []netip.Addr{netip.MustParseAddr("203.0.113.1")},
	}
	ctx := context.Background()
	for round := range 2 {
		if err := l.Reconcile(ctx, []Spec{s}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		ns, err := netns.GetFromName(s.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			t.Fatal(err)
		}
		tl, err := h.LinkByName(TenantLink)
		if err != nil || tl.Attrs().HardwareAddr.String() != s.MAC.String() || tl.Attrs().MTU != 1400 {
			t.Fatalf("round %d: tenant link %+v, %v; want MAC %s MTU 1400", round, tl, err, s.MAC)
		}
		addrs, _ := h.AddrList(tl, netlink.FAMILY_ALL)
		if n := countGlobal(addrs); n != 2 {
			t.Errorf("round %d: tenant link has %d global addresses, want 2 (no duplicates): %v", round, n, addrs)
		}
		if _, err := h.LinkByName(ExternalLink); err != nil {
			t.Errorf("round %d: no external link: %v", round, err)
		}
		routes, _ := h.RouteList(tl, netlink.FAMILY_V4)
		found := false
		for _, r := range routes {
			found = found || r.Dst != nil && r.Dst.String() == "10.0.1.0/24" && r.Gw.String() == "10.0.0.1"
		}
		if !found {
			t.Errorf("round %d: no route to 10.0.1.0/24 via 10.0.0.1: %v", round, routes)
		}
		h.Close()
		out, err := exec.Command("ip", "netns", "exec", s.Namespace, "nft", "list", "table", "inet", Table).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "masquerade") {
			t.Errorf("round %d: nft table: %v\n%s", round, err, out)
		}
		if _, err := netlink.LinkByName(s.Port); err != nil {
			t.Errorf("round %d: port end %s missing: %v", round, s.Port, err)
		}
	}
	if err := l.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + s.Namespace); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there after Reconcile(nil): %v", s.Namespace, err)
	}
	// The kernel tears a namespace's links down after its last reference.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := netlink.LinkByName(s.Port); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port end %s still there 10 s after its namespace went", s.Port)
		}
	}
}

func countGlobal(addrs []netlink.Addr) int {
	n := 0
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLinkLocalUnicast() {
			n++
		}
	}
	return n
}
