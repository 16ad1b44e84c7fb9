package policyapi

import (
	"context"
	"iter"
	"net/netip"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// Wire types of the policy server's HTTP/JSON API. Field names follow the
// original policy properties so that they read like the provider API's.

// Tenant is a customer. Identity: CustomerID.
type Tenant struct {
	CustomerID policy.GUID `json:"CustomerID"`
	Name       string      `json:"Name"`
}

// RoutingDomain is one tenant network. Identity: RoutingDomainID.
type RoutingDomain struct {
	RoutingDomainID policy.GUID `json:"RoutingDomainID"`
	CustomerID      policy.GUID `json:"CustomerID"`
	Name            string      `json:"Name,omitempty"`
}

// Encapsulation is the wire format of a virtual subnet.
type Encapsulation string

const (
	NVGRE Encapsulation = "NVGRE"
	VXLAN Encapsulation = "VXLAN"
)

// Rule is how a subnet's VMs cross the underlay: the Rule of their lookup
// records.
type Rule string

const (
	// RuleEncap encapsulates (NVGRE or VXLAN) to the PA of the VM's host.
	RuleEncap Rule = "Encap"
	// RuleNat is IP Rewrite: every CA of a VM has a PA of its own,
	// allocated from the subnet's ProviderPrefixes and configured on the
	// VM's host; packets between two such VMs cross with CA and PA swapped
	// and nothing added.
	RuleNat Rule = "Nat"
)

// Subnet is a virtual subnet. Identity: VirtualSubnetID (unique in the
// datacenter). Gateways defaults to the first host address of each prefix;
// CustomerID is copied from the routing domain; Encapsulation defaults to
// NVGRE, Rule to Encap. A Nat subnet has ProviderPrefixes, the pool its VMs'
// PAs come from: one provider prefix per family of Prefixes, carved from
// the datacenter's provider network, holding no host's PA.
type Subnet struct {
	VirtualSubnetID  policy.VSID    `json:"VirtualSubnetID"`
	RoutingDomainID  policy.GUID    `json:"RoutingDomainID"`
	CustomerID       policy.GUID    `json:"CustomerID"`
	Prefixes         []netip.Prefix `json:"Prefixes"`
	Gateways         []netip.Addr   `json:"Gateways"`
	Encapsulation    Encapsulation  `json:"Encapsulation"`
	Rule             Rule           `json:"Rule,omitempty"`
	ProviderPrefixes []netip.Prefix `json:"ProviderPrefixes,omitempty"`
}

// Nat reports whether the subnet's VMs use IP Rewrite.
func (s *Subnet) Nat() bool { return s.Rule == RuleNat }

// Host is a hypervisor host, registered by its host agent. Alive is true
// while the agent keeps the host's liveness lease (TTLSeconds) going with
// heartbeats; the server fills it on reads. The first of ProviderAddresses is
// the PA its VMs' lookup records point at.
type Host struct {
	Name              string       `json:"Name"`
	ProviderAddresses []netip.Addr `json:"ProviderAddresses"`
	TTLSeconds        int64        `json:"TTLSeconds"`
	Alive             bool         `json:"Alive"`
	RegisteredAt      time.Time    `json:"RegisteredAt"`
}

// VM is a virtual machine's network identity. Name, MACAddress,
// CustomerAddresses, VirtualSubnetID and Host are given; the server fills
// RoutingDomainID, CustomerID, ProviderAddress (the PA of Host) and, in a
// Nat subnet, RewriteAddresses: the PA of each CA, in the order of
// CustomerAddresses, with the length of the pool it came from. It stays the
// VM's until the VM is deleted, moving with it when it migrates. A
// migration sets PreviousHost, PreviousProviderAddress and MigratedAt, which
// the old host uses to forward for a grace period and to send redirects.
type VM struct {
	Name string `json:"Name"`
	// Interface is the VM's network interface on its host: the TAP its
	// hypervisor creates (the same name on every host it migrates to), or
	// the host end of a container's veth. Empty: the VM's name.
	Interface         string         `json:"Interface,omitempty"`
	MACAddress        packet.MAC     `json:"MACAddress"`
	CustomerAddresses []netip.Addr   `json:"CustomerAddresses"`
	VirtualSubnetID   policy.VSID    `json:"VirtualSubnetID"`
	Host              string         `json:"Host"`
	RoutingDomainID   policy.GUID    `json:"RoutingDomainID"`
	CustomerID        policy.GUID    `json:"CustomerID"`
	ProviderAddress   netip.Addr     `json:"ProviderAddress"`
	RewriteAddresses  []netip.Prefix `json:"RewriteAddresses,omitempty"`
	// L2Only marks a VM that configures its CAs itself, as Windows Server
	// 2012 R2's L2Only records: it gets an L2Only record (CA 0.0.0.0 and
	// ::) besides the Static records of its CustomerAddresses, which may
	// be empty, and its host learns the CAs it sends from (see Learned).
	L2Only                  bool       `json:"L2Only,omitempty"`
	PreviousHost            string     `json:"PreviousHost,omitempty"`
	PreviousProviderAddress netip.Addr `json:"PreviousProviderAddress,omitzero"`
	MigratedAt              time.Time  `json:"MigratedAt,omitzero"`
	CreatedAt               time.Time  `json:"CreatedAt"`
}

// Gateway is a VM that forwards a routing domain's traffic to and from
// outside addresses. It yields a Static record for each of its customer
// addresses, a GatewayWildcard record (CA 0.0.0.0 or ::) and a default
// customer route (0.0.0.0/0 or ::/0) through that address, per family.
// CustomerAddress6 is the IPv6 address of a dual-stack gateway whose
// CustomerAddress is IPv4.
//
// Without a Mode the gateway is a VM or appliance of its own, placed and
// plugged by whoever runs it. With one, the gateway host's agent builds it
// (see docs/architecture.md, "Edge gateways"): a network namespace joined to
// the virtual subnet through a port, with an interface on the host's
// ExternalInterface (a macvlan) that has the ExternalAddresses (one per
// family, with their prefix length) and default routes via
// ExternalGateways (one per family, optional). Server-filled fields are as
// for VM.
type Gateway struct {
	Name              string         `json:"Name"`
	VirtualSubnetID   policy.VSID    `json:"VirtualSubnetID"`
	MACAddress        packet.MAC     `json:"MACAddress"`
	CustomerAddress   netip.Addr     `json:"CustomerAddress"`
	CustomerAddress6  netip.Addr     `json:"CustomerAddress6,omitzero"`
	Host              string         `json:"Host"`
	Mode              GatewayMode    `json:"Mode,omitempty"`
	ExternalInterface string         `json:"ExternalInterface,omitempty"`
	ExternalAddresses []netip.Prefix `json:"ExternalAddresses,omitempty"`
	ExternalGateways  []netip.Addr   `json:"ExternalGateways,omitempty"`
	RoutingDomainID   policy.GUID    `json:"RoutingDomainID"`
	CustomerID        policy.GUID    `json:"CustomerID"`
	ProviderAddress   netip.Addr     `json:"ProviderAddress"`
}

// Learned is a CA a host learned on the port of an L2Only VM: the body of
// POST /v1/hosts/{name}/learned, which only that host may send, and what
// the server keeps. The host gives VirtualSubnetID, CustomerAddress,
// MACAddress (the VM's) and ProviderAddress (one of its own PAs); the
// server fills the rest. Every host of the routing domain gets its Dynamic
// record (LearnedRecords); a Static record of the CA always wins.
type Learned struct {
	VirtualSubnetID policy.VSID `json:"VirtualSubnetID"`
	CustomerAddress netip.Addr  `json:"CustomerAddress"`
	MACAddress      packet.MAC  `json:"MACAddress"`
	ProviderAddress netip.Addr  `json:"ProviderAddress"`
	Host            string      `json:"Host"`
	VMName          string      `json:"VMName"`
	RoutingDomainID policy.GUID `json:"RoutingDomainID"`
	CustomerID      policy.GUID `json:"CustomerID"`
	LearnedAt       time.Time   `json:"LearnedAt"`
}

// CustomerAddresses returns the gateway's customer addresses, IPv4 first.
func (g *Gateway) CustomerAddresses() []netip.Addr {
	if g.CustomerAddress6.IsValid() {
		return []netip.Addr{g.CustomerAddress, g.CustomerAddress6}
	}
	return []netip.Addr{g.CustomerAddress}
}

// GatewayMode is how a gateway host's agent builds a gateway.
type GatewayMode string

const (
	// GatewayForward routes both ways: outside hosts reach the VMs' CAs
	// (the outside network routes the routing domain's prefixes to the
	// gateway's external addresses) and VMs reach outside addresses.
	GatewayForward GatewayMode = "forward"
	// GatewayNAT masquerades the VMs' outbound connections behind the
	// gateway's external addresses; nothing outside can open one inwards.
	GatewayNAT GatewayMode = "nat"
)

// Migration is the body of POST /v1/vms/{name}/migrate.
type Migration struct {
	Host string `json:"Host"`
}

// VMFilter selects VMs in GET /v1/vms; zero fields match anything.
type VMFilter struct {
	Host            string      `json:"host,omitempty"`
	VirtualSubnetID policy.VSID `json:"vsid,omitempty"`
	RoutingDomainID policy.GUID `json:"routingDomain,omitzero"`
}

// Policy is everything a host installs for one routing domain, read at one
// etcd Revision: install Routes before Records (a record needs the on-link
// route of its CA). Watching from Revision continues exactly after it.
type Policy struct {
	RoutingDomainID policy.GUID            `json:"RoutingDomainID"`
	Revision        int64                  `json:"Revision"`
	Subnets         []Subnet               `json:"Subnets"`
	Records         []policy.LookupRecord  `json:"Records"`
	Routes          []policy.CustomerRoute `json:"Routes"`
}

// LookupAnswer is the answer of GET /v1/lookup: the record of a CA in the
// routing domain of the asked VSID (its own VSID may differ when the CA is
// in another subnet of that routing domain), with the encapsulation of the
// record's subnet.
type LookupAnswer struct {
	Revision      int64               `json:"Revision"`
	Record        policy.LookupRecord `json:"Record"`
	Encapsulation Encapsulation       `json:"Encapsulation"`
}

// EventType says what an Event is.
type EventType string

const (
	// EventPut: an object was created or changed (a migration is a put of
	// the VM with a new Host).
	EventPut EventType = "put"
	// EventDelete: an object was removed; the Prev fields hold it.
	EventDelete EventType = "delete"
	// EventProgress carries no change: the stream is alive and has seen
	// everything up to Revision. It is the first event of every stream.
	EventProgress EventType = "progress"
	// EventResync: the asked revision is compacted away. The stream ends;
	// re-read the Policy and watch again from its Revision.
	EventResync EventType = "resync"
)

// Kind is the kind of object an event is about.
type Kind string

const (
	KindTenant        Kind = "tenant"
	KindRoutingDomain Kind = "routingDomain"
	KindSubnet        Kind = "subnet"
	KindHost          Kind = "host"
	KindLiveness      Kind = "liveness" // a host's lease appeared (put) or expired (delete)
	KindVM            Kind = "vm"
	KindGateway       Kind = "gateway"
	KindLearned       Kind = "learned" // a CA learned by a host (Learned)
)

// Event is one line of the NDJSON stream of GET /v1/watch. Records/Routes
// are the host-side objects derived from the object after the change,
// PrevRecords/PrevRoutes those of the object before it; a host removes the
// Prev ones it has and adds the new ones.
type Event struct {
	Type            EventType   `json:"Type"`
	Kind            Kind        `json:"Kind,omitempty"`
	Revision        int64       `json:"Revision"`
	Name            string      `json:"Name,omitempty"`
	RoutingDomainID policy.GUID `json:"RoutingDomainID,omitzero"`

	Tenant            *Tenant        `json:"Tenant,omitempty"`
	PrevTenant        *Tenant        `json:"PrevTenant,omitempty"`
	RoutingDomain     *RoutingDomain `json:"RoutingDomain,omitempty"`
	PrevRoutingDomain *RoutingDomain `json:"PrevRoutingDomain,omitempty"`
	Subnet            *Subnet        `json:"Subnet,omitempty"`
	PrevSubnet        *Subnet        `json:"PrevSubnet,omitempty"`
	Host              *Host          `json:"Host,omitempty"`
	PrevHost          *Host          `json:"PrevHost,omitempty"`
	VM                *VM            `json:"VM,omitempty"`
	PrevVM            *VM            `json:"PrevVM,omitempty"`
	Gateway           *Gateway       `json:"Gateway,omitempty"`
	PrevGateway       *Gateway       `json:"PrevGateway,omitempty"`
	Learned           *Learned       `json:"Learned,omitempty"`
	PrevLearned       *Learned       `json:"PrevLearned,omitempty"`

	Records     []policy.LookupRecord  `json:"Records,omitempty"`
	PrevRecords []policy.LookupRecord  `json:"PrevRecords,omitempty"`
	Routes      []policy.CustomerRoute `json:"Routes,omitempty"`
	PrevRoutes  []policy.CustomerRoute `json:"PrevRoutes,omitempty"`
}

// HostAPI is what a host agent needs from the policy server;
// policyclient.Client implements it, and tests of the agent can fake it.
type HostAPI interface {
	RegisterHost(ctx context.Context, h Host) (Host, error)
	Heartbeat(ctx context.Context, name string) (Host, error)
	Policy(ctx context.Context, rd policy.GUID) (Policy, error)
	Lookup(ctx context.Context, vsid policy.VSID, ca netip.Addr) (LookupAnswer, error)
	VM(ctx context.Context, name string) (VM, error)
	VMs(ctx context.Context, f VMFilter) ([]VM, error)
	Gateways(ctx context.Context) ([]Gateway, error)
	Subnet(ctx context.Context, vsid policy.VSID) (Subnet, error)
	// WatchHost watches the routing domains rds plus the VMs placed on or
	// taken from host.
	WatchHost(ctx context.Context, rev int64, host string, rds ...policy.GUID) iter.Seq2[Event, error]
	RedirectKeys(ctx context.Context, host string) ([]RedirectKey, error)
	// ReportLearned tells the server that host learned a CA;
	// ForgetLearned that host forgot the CA it learned (aged out).
	ReportLearned(ctx context.Context, host string, l Learned) (Learned, error)
	ForgetLearned(ctx context.Context, host string, vsid policy.VSID, ca netip.Addr) error
}

// DefaultTTL is a host's liveness lease when it registers without one.
const DefaultTTL = 10
