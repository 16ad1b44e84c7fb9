package policy

import (
	"net/netip"

	"github.com/wnv/wnv/packet"
)

// VSID is a 24-bit virtual subnet ID. Legal values are 4096..16777214.
type VSID uint32

const (
	MinVSID VSID = 0x1000
	MaxVSID VSID = 0xFFFFFE
)

// Rule is how a lookup record's CA is translated on the wire.
//
// In the original enum TranslationMethodNat is 0, so a record built in Go
// without a Rule would silently be Nat. Rule's zero value is therefore
// RuleUnset, and the constants are the original numbers plus one; JSON and
// text carry the original numbers (Nat 0, Encap 1, None 2), and RuleUnset
// is JSON null, which the provider API reads as absent and gives its
// default, Encap. The store refuses RuleUnset.
type Rule uint8

const (
	RuleUnset Rule = iota
	TranslationMethodNat
	TranslationMethodEncap
	TranslationMethodNone
)

// RecordType says where a lookup record came from and how it is matched.
type RecordType uint8

const (
	Static          RecordType = 0
	Dynamic         RecordType = 1
	GatewayWildcard RecordType = 2
	L2Only          RecordType = 3
)

// AddressState is the DAD state of a provider address (NL_DAD_STATE).
type AddressState uint8

const (
	AddressInvalid    AddressState = 0
	AddressTentative  AddressState = 1
	AddressDuplicate  AddressState = 2
	AddressDeprecated AddressState = 3
	AddressPreferred  AddressState = 4
)

// LookupRecord maps a customer address of a virtual subnet to the provider
// address of the host where it lives. Identity: CustomerAddress +
// VirtualSubnetID + MACAddress.
type LookupRecord struct {
	CustomerAddress netip.Addr `json:"CustomerAddress"`
	VirtualSubnetID VSID       `json:"VirtualSubnetID"`
	MACAddress      packet.MAC `json:"MACAddress"`
	ProviderAddress netip.Addr `json:"ProviderAddress"`
	Rule            Rule       `json:"Rule"`
	Type            RecordType `json:"Type"`
	CustomerID      GUID       `json:"CustomerID"`
	VMName          string     `json:"VMName,omitempty"`
	Context         string     `json:"Context,omitempty"`
	UseVmMACAddress bool       `json:"UseVmMACAddress"`
	// Unusable is derived state, recomputed by every change: the record is
	// stored but the data path ignores it, for the reason UnusableReason
	// gives, until the objects it lacks are provisioned.
	Unusable       bool   `json:"Unusable"`
	UnusableReason string `json:"UnusableReason,omitempty"`
	// Unsynchronized marks a record the host agent has not confirmed with
	// the policy server: one a redirect moved, until a Set or Put of it
	// clears it, or one the agent keeps while the server is away. The store
	// keeps it as given.
	Unsynchronized bool `json:"Unsynchronized"`
}

// CustomerRoute routes CA space inside one routing domain. Identity:
// RoutingDomainID + VirtualSubnetID + DestinationPrefix + NextHop. Only Metric
// is settable.
type CustomerRoute struct {
	RoutingDomainID   GUID         `json:"RoutingDomainID"`
	VirtualSubnetID   VSID         `json:"VirtualSubnetID"`
	DestinationPrefix netip.Prefix `json:"DestinationPrefix"`
	NextHop           netip.Addr   `json:"NextHop"`
	Metric            uint32       `json:"Metric"`
	CustomerID        GUID         `json:"CustomerID"`
}

// OnLink reports whether the route has no next hop (0.0.0.0 or ::).
func (r *CustomerRoute) OnLink() bool { return !r.NextHop.IsValid() || r.NextHop.IsUnspecified() }

// ProviderAddress is a PA owned by this host. Identity: ProviderAddress.
type ProviderAddress struct {
	ProviderAddress  netip.Addr   `json:"ProviderAddress"`
	InterfaceIndex   int          `json:"InterfaceIndex"`
	PrefixLength     uint8        `json:"PrefixLength"`
	VlanID           uint16       `json:"VlanID,omitempty"`
	MACAddress       packet.MAC   `json:"MACAddress"`
	AddressState     AddressState `json:"AddressState"`
	ManagedByCluster bool         `json:"ManagedByCluster"`
}

// ProviderRoute routes PA space. Identity: InterfaceIndex + DestinationPrefix +
// NextHop. Only Metric is settable.
type ProviderRoute struct {
	InterfaceIndex    int          `json:"InterfaceIndex"`
	DestinationPrefix netip.Prefix `json:"DestinationPrefix"`
	NextHop           netip.Addr   `json:"NextHop"`
	Metric            uint32       `json:"Metric"`
	CustomerID        GUID         `json:"CustomerID"`
}

// Global is the host-wide setting.
type Global struct {
	UseExternalRouter bool `json:"UseExternalRouter"`
}
