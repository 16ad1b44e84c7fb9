package vswitch

import (
	"fmt"
	"net/netip"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// NextHopResult answers Select-NextHop: where a packet from a CA in a VSID to
// another CA goes under policy t.
type NextHopResult struct {
	NextHopAddress    netip.Addr
	SourceMACAddress  packet.MAC
	NextHopMACAddress packet.MAC
	ProviderAddress   netip.Addr
	VirtualSubnetID   policy.VSID
}

// NextHop resolves dst as the switch does for a VM with address src in vsid.
func NextHop(t *policy.Table, vsid policy.VSID, src, dst netip.Addr) (NextHopResult, error) {
	var r NextHopResult
	srcRec, ok := t.LookupCA(vsid, src)
	if !ok {
		return r, fmt.Errorf("SourceCustomerAddress %s has no lookup record in VirtualSubnetID %d", src, vsid)
	}
	if src.Is4() != dst.Is4() {
		return r, fmt.Errorf("DestinationCustomerAddress %s is not of the family of SourceCustomerAddress %s", dst, src)
	}
	r.SourceMACAddress, r.NextHopAddress = srcRec.MACAddress, dst
	if _, onLink := t.OnLinkPrefix(vsid, dst); !onLink && t.Global().UseExternalRouter {
		rec, nh, reason := externalRouter(nil, t, vsid, srcRec.MACAddress, dst)
		if reason != ReasonNone {
			return r, fmt.Errorf("DestinationCustomerAddress %s is unreachable from VirtualSubnetID %d under UseExternalRouter: %s", dst, vsid, reason)
		}
		r.NextHopAddress, r.NextHopMACAddress, r.ProviderAddress, r.VirtualSubnetID = nh, rec.MACAddress, rec.ProviderAddress, vsid
		return r, nil
	}
	rec, dstVSID, gw, reason := resolve(t, vsid, dst)
	if reason == ReasonNone && isGatewayRecord(t, rec) {
		reason = ReasonToGateway // the host's, as the switch has it (see target)
	}
	if reason != ReasonNone {
		return r, fmt.Errorf("DestinationCustomerAddress %s is unreachable from VirtualSubnetID %d: %s", dst, vsid, reason)
	}
	if !gw.IsZero() {
		r.SourceMACAddress = gw
	}
	if rec.Type == policy.GatewayWildcard || rec.CustomerAddress != dst {
		r.NextHopAddress = rec.CustomerAddress
	}
	r.NextHopMACAddress = rec.MACAddress
	r.ProviderAddress = rec.ProviderAddress
	r.VirtualSubnetID = dstVSID
	return r, nil
}
