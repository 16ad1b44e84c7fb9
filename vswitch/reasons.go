package vswitch

// Reason says why the switch dropped a frame. Every drop has one; each is
// counted globally, per port and per VSID.
type Reason uint8

const (
	ReasonNone Reason = iota
	ReasonMalformed
	ReasonUnknownPort
	ReasonSpoofedMAC
	ReasonSpoofedCA
	ReasonUnsupportedEtherType
	ReasonMulticast
	ReasonARPUnknownTarget
	ReasonARPNotRequest
	ReasonNDUnknownTarget
	ReasonNoRoute
	ReasonOtherRoutingDomain
	ReasonNoLookupRecord
	ReasonRuleUnsupported
	ReasonNoLocalPA
	ReasonNoLocalPort
	ReasonTTLExceeded
	ReasonTooBig
	ReasonToGateway
	ReasonMalformedGRE
	ReasonMalformedVXLAN
	ReasonUnknownVSID
	ReasonPolicyMismatch
	ReasonNotForLocalPA
	ReasonBadRedirect
	ReasonStaleRedirect
	ReasonMissTimeout
	ReasonHoldOverflow
	// ReasonSlowPathDown: the kernel fast path dropped a frame that needed
	// the slow path while wnvd was not running.
	ReasonSlowPathDown
	// ReasonMissRateLimited: the port sent to CAs without a lookup record
	// faster than its share of lookups (Limits.MissRate).
	ReasonMissRateLimited
	// ReasonLookupFailed: the destination's lookup failed lately (negative
	// cache, Limits.NegativeTTL).
	ReasonLookupFailed
	// ReasonStormControl: the port flooded faster than Limits.FloodRate.
	ReasonStormControl
	// ReasonHoldPortShare: the port has its share of the hold table.
	ReasonHoldPortShare
	// Redirects refused before they could move a record: without a valid
	// MAC or with an old sequence number, or naming a NewPA no other host
	// can have.
	ReasonRedirectUnauthenticated
	ReasonRedirectBadMAC
	ReasonRedirectReplay
	ReasonRedirectLoopback
	ReasonRedirectUnspecified
	ReasonRedirectNotUnicast
	ReasonRedirectOwnPA
	ReasonRedirectFamily
	// ReasonNoExternalRouter: UseExternalRouter is on and no customer route
	// for the destination names a next hop in the sender's subnet.
	ReasonNoExternalRouter
	// ReasonWrongVLAN: an underlay frame for a PA came with another VLAN
	// than the PA's VlanID, or untagged for a PA with one (kernel only).
	ReasonWrongVLAN
	// ReasonRewriteMismatch: an IP Rewrite packet whose source PA is no
	// usable Nat record's, or whose PA pair maps to CAs that cannot talk
	// (other routing domains, or a destination the source's subnet does
	// not route to).
	ReasonRewriteMismatch
	// ReasonStaticCA: a VM of a subnet with L2Only records sent from a CA
	// that a Static lookup record gives another VM; it is not learned.
	ReasonStaticCA
	// ReasonLearnLimit: the port sent from a new CA with
	// Limits.LearnedPerPort CAs learned already.
	ReasonLearnLimit
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:                    "none",
	ReasonMalformed:               "malformed",
	ReasonUnknownPort:             "unknown-port",
	ReasonSpoofedMAC:              "spoofed-mac",
	ReasonSpoofedCA:               "spoofed-ca",
	ReasonUnsupportedEtherType:    "unsupported-ethertype",
	ReasonMulticast:               "multicast",
	ReasonARPUnknownTarget:        "arp-unknown-target",
	ReasonARPNotRequest:           "arp-not-request",
	ReasonNDUnknownTarget:         "nd-unknown-target",
	ReasonNoRoute:                 "no-route",
	ReasonOtherRoutingDomain:      "other-routing-domain",
	ReasonNoLookupRecord:          "no-lookup-record",
	ReasonRuleUnsupported:         "rule-unsupported",
	ReasonNoLocalPA:               "no-local-pa",
	ReasonNoLocalPort:             "no-local-port",
	ReasonTTLExceeded:             "ttl-exceeded",
	ReasonTooBig:                  "too-big",
	ReasonToGateway:               "to-gateway",
	ReasonMalformedGRE:            "malformed-gre",
	ReasonMalformedVXLAN:          "malformed-vxlan",
	ReasonUnknownVSID:             "unknown-vsid",
	ReasonPolicyMismatch:          "policy-mismatch",
	ReasonNotForLocalPA:           "not-for-local-pa",
	ReasonBadRedirect:             "bad-redirect",
	ReasonStaleRedirect:           "stale-redirect",
	ReasonMissTimeout:             "miss-timeout",
	ReasonHoldOverflow:            "hold-overflow",
	ReasonSlowPathDown:            "slow-path-down",
	ReasonMissRateLimited:         "miss-rate-limited",
	ReasonLookupFailed:            "lookup-failed",
	ReasonStormControl:            "storm-control",
	ReasonHoldPortShare:           "hold-port-share",
	ReasonRedirectUnauthenticated: "redirect-unauthenticated",
	ReasonRedirectBadMAC:          "redirect-bad-mac",
	ReasonRedirectReplay:          "redirect-replay",
	ReasonRedirectLoopback:        "redirect-loopback",
	ReasonRedirectUnspecified:     "redirect-unspecified",
	ReasonRedirectNotUnicast:      "redirect-not-unicast",
	ReasonRedirectOwnPA:           "redirect-own-pa",
	ReasonRedirectFamily:          "redirect-family",
	ReasonNoExternalRouter:        "no-external-router",
	ReasonWrongVLAN:               "wrong-vlan",
	ReasonRewriteMismatch:         "rewrite-mismatch",
	ReasonStaticCA:                "static-ca",
	ReasonLearnLimit:              "learn-limit",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every drop reason, in order, for reports that show zeros too.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := ReasonNone + 1; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}
