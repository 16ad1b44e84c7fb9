package main

import (
	"strings"
	"testing"

	"github.com/wnv/wnv/policy"
)

func TestVirtualSubnetCommands(t *testing.T) {
	b, sock := setup(t)
	out := ok(t, sock, "virtual-subnet", "new", "--VirtualSubnetID", "5001", "--Encapsulation", "vxlan")
	if want := "VirtualSubnetID  Encapsulation\n5001             VXLAN\n"; out != want {
		t.Fatalf("new printed\n%s\nwant\n%s", out, want)
	}
	if got := b.Store().Table().Encapsulation(5001); got != policy.EncapVXLAN {
		t.Fatalf("store has %v for 5001, want VXLAN", got)
	}
	ok(t, sock, "virtual-subnet", "new", "--VirtualSubnetID", "5002")
	out = ok(t, sock, "-o", "json", "virtual-subnet", "get", "--VirtualSubnetID", "5002")
	if !strings.Contains(out, `"Encapsulation": "NVGRE"`) {
		t.Fatalf("get -o json printed %s", out)
	}
	ok(t, sock, "virtual-subnet", "set", "--VirtualSubnetID", "5001", "--Encapsulation", "NVGRE")
	if got := b.Store().Table().Encapsulation(5001); got != policy.EncapNVGRE {
		t.Fatalf("after set: %v, want NVGRE", got)
	}
	if _, err := wnvctl(t, sock, "virtual-subnet", "new", "--VirtualSubnetID", "5003", "--Encapsulation", "GENEVE"); err == nil ||
		err.Error() != `--Encapsulation "GENEVE" is malformed: use NVGRE or VXLAN` {
		t.Errorf("bad encapsulation: %v", err)
	}
	if _, err := wnvctl(t, sock, "virtual-subnet", "set", "--VirtualSubnetID", "6000", "--Encapsulation", "VXLAN"); err == nil ||
		err.Error() != "no virtual subnet has VirtualSubnetID 6000" {
		t.Errorf("set missing: %v", err)
	}
	out = ok(t, sock, "virtual-subnet", "remove")
	if want := "VirtualSubnetID  Encapsulation\n5001             NVGRE\n5002             NVGRE\n"; out != want {
		t.Fatalf("remove printed\n%s\nwant\n%s", out, want)
	}
}
