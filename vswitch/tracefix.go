package vswitch

import (
	"fmt"
	"net/netip"

	"github.com/wnv/wnv/policy"
)

// fix names, for a drop for r in a trace, the object to look at and what to
// change. It only explains: the verdict was the pipeline's.
func (tr *tracer) fix(r Reason) (object, fix string) {
	t := tr.t
	vsid, dst := tr.vsid, tr.dst
	if tr.dstVSID != 0 {
		vsid = tr.dstVSID
	}
	portName := fmt.Sprintf("port index %d", tr.port)
	if tr.p != nil {
		portName = "port " + tr.p.Name
	}
	rec := func(ca netip.Addr, v policy.VSID) string { return fmt.Sprintf("lookup record %s in VSID %d", ca, v) }
	switch r {
	case ReasonMalformed:
		return "the frame", "the frame does not parse (Ethernet, IP or ARP header, or it carries an 802.1Q tag): fix the sender"
	case ReasonUnknownPort:
		return portName, "no port is attached at this index: attach the VM's port (wnvctl port attach)"
	case ReasonSpoofedMAC:
		return portName, fmt.Sprintf("source MAC %s is not the port's MAC %s: fix the VM's MAC or the port's MACAddress", tr.srcMAC, tr.p.MAC)
	case ReasonSpoofedCA:
		return portName, fmt.Sprintf("source CA %s is not one of the port's CAs %s: add it to the port (wnvctl port attach --customer-address) with a lookup record for it in VSID %d", tr.src, addrList(tr.p.CAs), tr.p.VSID)
	case ReasonUnsupportedEtherType:
		return "the frame", fmt.Sprintf("only ARP, IPv4 and IPv6 are switched in VSID %d (L2Only records would switch other frames by MAC)", tr.vsid)
	case ReasonMulticast:
		return "the frame", fmt.Sprintf("multicast and broadcast frames are not forwarded in VSID %d (L2Only records would flood broadcasts)", tr.vsid)
	case ReasonARPUnknownTarget, ReasonNDUnknownTarget:
		return rec(dst, tr.vsid), fmt.Sprintf("nobody answers for %s: add a lookup record for %s in VSID %d, or a customer route for it in the routing domain", dst, dst, tr.vsid)
	case ReasonARPNotRequest:
		return "the frame", "only ARP requests are answered; replies and other operations from a VM are dropped outside L2Only subnets"
	case ReasonNoRoute:
		if t != nil {
			if _, ok := t.RoutingDomain(tr.vsid); !ok {
				return fmt.Sprintf("customer routes of VSID %d", tr.vsid), fmt.Sprintf("VSID %d has no customer route, so no routing domain: add its on-link customer route", tr.vsid)
			}
		}
		return fmt.Sprintf("customer routes of VSID %d's routing domain", tr.vsid), fmt.Sprintf("the next hop towards %s is not on-link in the routing domain: add an on-link customer route for it", dst)
	case ReasonOtherRoutingDomain:
		rd := "?"
		if t != nil {
			if g, ok := t.RoutingDomain(tr.vsid); ok {
				rd = g.String()
			}
		}
		return "customer routes of routing domain " + rd, fmt.Sprintf("no customer route of routing domain %s matches %s: add one (or the destination is another tenant's)", rd, dst)
	case ReasonNoLookupRecord:
		return rec(dst, vsid), fmt.Sprintf("add a lookup record for %s in VSID %d%s", dst, vsid, tr.unusable(vsid, dst))
	case ReasonRuleUnsupported:
		return rec(dst, vsid), fmt.Sprintf("the lookup record for %s in VSID %d has a Rule other than Encap: only Encap (NVGRE or VXLAN) is forwarded", dst, vsid)
	case ReasonNoLocalPA:
		return "provider addresses of this host", "this host has no provider address of the destination PA's family: add one (wnvctl provider-address create)"
	case ReasonNoLocalPort:
		if tr.port < 0 {
			return rec(dst, vsid), fmt.Sprintf("no port in VSID %d here has MAC %s and CA %s: the sender's lookup record for %s names this host's PA %s wrongly, or attach the VM here", vsid, tr.dstMAC, dst, dst, tr.dstPA)
		}
		return rec(dst, vsid), fmt.Sprintf("the lookup record for %s in VSID %d names this host, but no port with its MAC is attached in VSID %d: attach the VM's port here, or point the record at the VM's host", dst, vsid, vsid)
	case ReasonTTLExceeded:
		return "the packet", fmt.Sprintf("the TTL of the packet to %s ran out while routed (an ICMP time exceeded went back): a routing loop, or a TTL too small", dst)
	case ReasonTooBig:
		return "MTU of " + portName, fmt.Sprintf("the %d-byte frame does not fit the underlay MTU %s once encapsulated (an ICMP error went back): lower the VM's MTU or raise the underlay's", tr.frameLen, tr.mtu())
	case ReasonToGateway:
		return "the gateway address", fmt.Sprintf("%s is a subnet's virtual gateway address, which only answers ARP and ND: send to an address behind it", dst)
	case ReasonMalformedGRE, ReasonMalformedVXLAN:
		return "the sender at PA " + tr.srcPA.String(), "the encapsulation header does not parse: fix the sending host"
	case ReasonUnknownVSID:
		return fmt.Sprintf("ports in VSID %d", tr.vsid), fmt.Sprintf("no port of VSID %d is attached on this host: the sender's lookup record for %s points at the wrong PA, or attach the VM here", tr.vsid, dst)
	case ReasonPolicyMismatch:
		return rec(tr.src, tr.vsid), fmt.Sprintf("this host has no lookup record for the inner source %s (MAC %s) in VSID %d at PA %s%s: add or correct it here",
			tr.src, tr.srcMAC, tr.vsid, tr.srcPA, tr.found(tr.vsid, tr.src))
	case ReasonNotForLocalPA:
		return "provider address " + tr.dstPA.String(), fmt.Sprintf("%s is not a provider address of this host: add it here, or correct the sender's lookup record that names it", tr.dstPA)
	case ReasonBadRedirect, ReasonStaleRedirect, ReasonRedirectUnauthenticated, ReasonRedirectBadMAC, ReasonRedirectReplay, ReasonRedirectLoopback,
		ReasonRedirectUnspecified, ReasonRedirectNotUnicast, ReasonRedirectOwnPA, ReasonRedirectFamily:
		return "redirect from PA " + tr.srcPA.String(), fmt.Sprintf("the redirect is refused (%s): check that both hosts' agents installed the redirect keys the policy server hands out (their logs say 'redirect keys installed'; the provider API's PUT /v1/redirect-keys), and the sending host's lookup records", r)
	case ReasonMissRateLimited:
		return portName, fmt.Sprintf("the port sends to CAs without lookup records faster than its share of lookups: add a lookup record for %s in VSID %d", dst, vsid)
	case ReasonLookupFailed:
		return rec(dst, vsid), fmt.Sprintf("the last lookup of %s in VSID %d failed moments ago: add the lookup record on the policy server", dst, vsid)
	case ReasonStormControl:
		return portName, "the port floods faster than storm control allows (Limits.FloodRate)"
	case ReasonRewriteMismatch:
		return "lookup record at PA " + tr.srcPA.String(), fmt.Sprintf("no Nat lookup record here gives PA %s to a VM that may send to %s in VSID %d (the same subnet, or one its routing domain routes to): add or correct the sender's record on this host",
			tr.srcPA, dst, vsid)
	case ReasonStaticCA:
		owner := ""
		if t != nil {
			if rec, ok := t.LookupCA(tr.vsid, tr.src); ok {
				owner = fmt.Sprintf(" (MAC %s%s)", rec.MACAddress, vmName(rec))
			}
		}
		return rec(tr.src, tr.vsid), fmt.Sprintf("%s is another VM's by a Static lookup record%s, which learning never overrides: configure another address on the VM of %s, or remove the Static record", tr.src, owner, portName)
	case ReasonLearnLimit:
		return portName, fmt.Sprintf("the VM has learned as many CAs as a port may (LearnedPerPort): it learns %s once one of its CAs ages out, or remove CAs it no longer uses", tr.src)
	case ReasonNoExternalRouter:
		return fmt.Sprintf("customer routes of VSID %d", tr.vsid), fmt.Sprintf("UseExternalRouter is on and no customer route for %s names a next hop in VSID %d other than the sender: add one", dst, tr.vsid)
	}
	return "", r.String()
}

// unusable says why a stored record for ca is ignored, if one is.
func (tr *tracer) unusable(vsid policy.VSID, ca netip.Addr) string {
	if tr.t == nil {
		return ""
	}
	for _, rec := range tr.t.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{ca}, VirtualSubnetID: []policy.VSID{vsid}}) {
		if rec.Unusable {
			return " (one is stored but unusable: " + rec.UnusableReason + ")"
		}
	}
	return ""
}

// found describes the record this host has for ca, if any.
func (tr *tracer) found(vsid policy.VSID, ca netip.Addr) string {
	if tr.t == nil {
		return ""
	}
	if rec, ok := tr.t.LookupCA(vsid, ca); ok {
		return fmt.Sprintf(" (it has one with MAC %s at PA %s)", rec.MACAddress, rec.ProviderAddress)
	}
	return ""
}

func (tr *tracer) mtu() string {
	if tr.mtuVal == 0 {
		return "?"
	}
	return fmt.Sprint(tr.mtuVal)
}
