package policy

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestVirtualSubnets(t *testing.T) {
	s := NewStore()
	if got := s.Table().Encapsulation(5001); got != EncapNVGRE {
		t.Fatalf("default encapsulation = %v, want NVGRE", got)
	}
	if _, err := s.AddVirtualSubnet(VirtualSubnet{VirtualSubnetID: 5001, Encapsulation: EncapVXLAN}); err != nil {
		t.Fatal(err)
	}
	old := s.Table()
	if got := old.Encapsulation(5001); got != EncapVXLAN {
		t.Fatalf("Encapsulation(5001) = %v, want VXLAN", got)
	}
	_, err := s.AddVirtualSubnet(VirtualSubnet{VirtualSubnetID: 5001})
	if !errors.Is(err, ErrExists) || err.Error() != "VirtualSubnetID 5001 already has a virtual subnet: change it with Set" {
		t.Errorf("duplicate add: %v", err)
	}
	_, err = s.AddVirtualSubnet(VirtualSubnet{VirtualSubnetID: 4095})
	if !errors.Is(err, ErrInvalid) || err.Error() != "VirtualSubnetID 4095 is reserved: use 4096..16777214" {
		t.Errorf("reserved VSID: %v", err)
	}
	_, err = s.AddVirtualSubnet(VirtualSubnet{VirtualSubnetID: 5002, Encapsulation: 7})
	if !errors.Is(err, ErrInvalid) || err.Error() != "Encapsulation 7 of VirtualSubnetID 5002 is unknown: use NVGRE (0) or VXLAN (1)" {
		t.Errorf("bad encapsulation: %v", err)
	}
	if s.Table() != old {
		t.Error("failed adds published a new table")
	}

	nv := EncapNVGRE
	got, err := s.SetVirtualSubnets(VirtualSubnetFilter{VirtualSubnetID: 5001}, VirtualSubnetChange{Encapsulation: &nv})
	if err != nil || len(got) != 1 || got[0].Encapsulation != EncapNVGRE {
		t.Fatalf("set: %v %v", got, err)
	}
	if old.Encapsulation(5001) != EncapVXLAN {
		t.Error("an old snapshot changed")
	}
	if _, err := s.SetVirtualSubnets(VirtualSubnetFilter{VirtualSubnetID: 6000}, VirtualSubnetChange{Encapsulation: &nv}); !errors.Is(err, ErrNotFound) ||
		err.Error() != "no virtual subnet has VirtualSubnetID 6000" {
		t.Errorf("set missing: %v", err)
	}
	if _, err := s.AddVirtualSubnet(VirtualSubnet{VirtualSubnetID: 6001, Encapsulation: EncapVXLAN}); err != nil {
		t.Fatal(err)
	}
	if l := s.VirtualSubnets(VirtualSubnetFilter{}); len(l) != 2 || l[0].VirtualSubnetID != 5001 || l[1].Encapsulation != EncapVXLAN {
		t.Errorf("list = %v", l)
	}
	rm, err := s.RemoveVirtualSubnets(VirtualSubnetFilter{})
	if err != nil || len(rm) != 2 {
		t.Fatalf("remove all: %v %v", rm, err)
	}
	if s.Table().Encapsulation(6001) != EncapNVGRE {
		t.Error("a removed virtual subnet still uses VXLAN")
	}
	if _, err := s.RemoveVirtualSubnets(VirtualSubnetFilter{VirtualSubnetID: 6001}); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove missing: %v", err)
	}
}

func TestEncapsulationJSON(t *testing.T) {
	b, err := json.Marshal(VirtualSubnet{VirtualSubnetID: 5001, Encapsulation: EncapVXLAN})
	if err != nil || string(b) != `{"VirtualSubnetID":5001,"Encapsulation":"VXLAN"}` {
		t.Fatalf("%s %v", b, err)
	}
	var v VirtualSubnet
	if err := json.Unmarshal([]byte(`{"VirtualSubnetID":5001,"Encapsulation":"vxlan"}`), &v); err != nil || v.Encapsulation != EncapVXLAN {
		t.Fatalf("%+v %v", v, err)
	}
	if err := json.Unmarshal([]byte(`{"Encapsulation":"geneve"}`), &v); err == nil {
		t.Fatal("geneve accepted")
	}
}
