package main

import (
	"strings"
	"testing"

	"github.com/wnv/wnv/policy"
)

func TestVirtualSubnetCommands(t *testing.T) {
	b, sock := setup(t)
	out := ok(t, sock, "virtual-subnet", "create", "--virtual-subnet-id", "5001", "--encapsulation", "vxlan")
	if want := "VirtualSubnetID  Encapsulation\n5001             VXLAN\n"; out != want {
		t.Fatalf("new printed\n%s\nwant\n%s", out, want)
	}
	if got := b.Store().Table().Encapsulation(5001); got != policy.EncapVXLAN {
		t.Fatalf("store has %v for 5001, want VXLAN", got)
	}
	ok(t, sock, "virtual-subnet", "create", "--virtual-subnet-id", "5002")
	out = ok(t, sock, "-o", "json", "virtual-subnet", "get", "--virtual-subnet-id", "5002")
	if !strings.Contains(out, `"Encapsulation": "NVGRE"`) {
		t.Fatalf("get -o json printed %s", out)
	}
	ok(t, sock, "virtual-subnet", "set", "--virtual-subnet-id", "5001", "--encapsulation", "NVGRE")
	if got := b.Store().Table().Encapsulation(5001); got != policy.EncapNVGRE {
		t.Fatalf("after set: %v, want NVGRE", got)
	}
	if _, err := wnvctl(t, sock, "virtual-subnet", "create", "--virtual-subnet-id", "5003", "--encapsulation", "GENEVE"); err == nil ||
		err.Error() != `--encapsulation "GENEVE" is malformed: use NVGRE or VXLAN` {
		t.Errorf("bad encapsulation: %v", err)
	}
	if _, err := wnvctl(t, sock, "virtual-subnet", "set", "--virtual-subnet-id", "6000", "--encapsulation", "VXLAN"); err == nil ||
		err.Error() != "no virtual subnet has VirtualSubnetID 6000" {
		t.Errorf("set missing: %v", err)
	}
	out = ok(t, sock, "virtual-subnet", "delete")
	if want := "VirtualSubnetID  Encapsulation\n5001             NVGRE\n5002             NVGRE\n"; out != want {
		t.Fatalf("remove printed\n%s\nwant\n%s", out, want)
	}
}
