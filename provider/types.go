package provider

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
)

// PortSpec asks wnvd to attach a VM port: an interface that already exists
// in wnvd's network namespace (the TAP a hypervisor created for the VM, or
// the host end of a container's veth pair), whose frames belong to
// VirtualSubnetID. wnvd never creates, deletes or reconfigures it (beyond
// bringing it up).
type PortSpec struct {
	Name              string       `json:"Name"`
	Interface         string       `json:"Interface,omitempty"`
	MACAddress        packet.MAC   `json:"MACAddress"`
	VirtualSubnetID   policy.VSID  `json:"VirtualSubnetID"`
	CustomerAddresses []netip.Addr `json:"CustomerAddresses"`
	// ManagedBy names who attached the port ("policy-server" for the host
	// agent); each manager leaves the ports of others alone.
	ManagedBy string `json:"ManagedBy,omitempty"`
}

// Port is an attached port as wnvd reports it: the interface's index and MTU
// as the kernel has them.
type Port struct {
	PortSpec
	Index    int          `json:"Index"`
	Ifindex  int          `json:"Ifindex"`
	MTU      int          `json:"MTU"`
	Counters PortCounters `json:"Counters"`
}

// PortCounters count the frames a port received from its VM (Rx), sent to it
// (Tx), and dropped for any reason.
type PortCounters struct {
	RxFrames uint64 `json:"RxFrames"`
	RxBytes  uint64 `json:"RxBytes"`
	TxFrames uint64 `json:"TxFrames"`
	TxBytes  uint64 `json:"TxBytes"`
	Drops    uint64 `json:"Drops"`
}

// NamedPortCounters are one port's counters in [Counters].
type NamedPortCounters struct {
	Name string `json:"Name"`
	PortCounters
}

// VSIDCounters count one virtual subnet's traffic through the switch.
type VSIDCounters struct {
	VirtualSubnetID policy.VSID `json:"VirtualSubnetID"`
	TxFrames        uint64      `json:"TxFrames"`
	RxFrames        uint64      `json:"RxFrames"`
	Encapsulated    uint64      `json:"Encapsulated"`
	Decapsulated    uint64      `json:"Decapsulated"`
	Local           uint64      `json:"Local"`   // delivered from a port to another port of this host
	Replies         uint64      `json:"Replies"` // ARP/ND and ICMP answers the switch built
	Flooded         uint64      `json:"Flooded"` // copies of broadcasts and unanswered ARP/ND in L2Only subnets
	Drops           uint64      `json:"Drops"`
}

// DropCount is how many frames were dropped for one reason.
type DropCount struct {
	Reason string `json:"Reason"`
	Count  uint64 `json:"Count"`
}

// NotificationCounters count one notification type's events over all
// handles of the notification API: raised by the host, suppressed by the
// per-key rate limit, merged into a pending one, delivered, and dropped from a
// full queue (which tells that consumer to resync).
type NotificationCounters struct {
	Type        string `json:"Type"`
	Raised      uint64 `json:"Raised"`
	RateLimited uint64 `json:"RateLimited"`
	Merged      uint64 `json:"Merged"`
	Delivered   uint64 `json:"Delivered"`
	Dropped     uint64 `json:"Dropped"`
}

// Counters is a host-wide snapshot of the switch's counters and the
// notification API's.
type Counters struct {
	Ports               []NamedPortCounters    `json:"Ports"`
	VSIDs               []VSIDCounters         `json:"VSIDs"`
	Drops               []DropCount            `json:"Drops"`
	Notifications       []NotificationCounters `json:"Notifications"`
	NotificationHandles int                    `json:"NotificationHandles"`
	Migration           MigrationCounters      `json:"Migration"`
	// GSO is absent when TCP super-frames are segmented in wnvd.
	GSO *GSOCounters `json:"GSO,omitempty"`
	// Paths says how many frames each path carried (absent without the
	// kernel fast path).
	Paths *PathCounters `json:"Paths,omitempty"`
	// Checkpoint is absent when the host keeps no checkpoint.
	Checkpoint *CheckpointCounters `json:"Checkpoint,omitempty"`
	// ProviderRoutes is absent from backends that install no routes.
	ProviderRoutes *ProviderRouteCounters `json:"ProviderRoutes,omitempty"`
	// Underlays count the 802.1Q work of each underlay interface (absent
	// from backends without one).
	Underlays []UnderlayCounters `json:"Underlays,omitempty"`
}

// UnderlayCounters count, on one underlay interface, the frames of PAs
// with a VlanID tagged on the way out, the tagged frames accepted for a PA
// of their VLAN (untagged on the way in), and the frames for a PA dropped
// for another VLAN, or no tag when the PA has a VlanID (wrong-vlan).
type UnderlayCounters struct {
	Name           string `json:"Name"`
	InterfaceIndex int    `json:"InterfaceIndex"`
	TxTagged       uint64 `json:"TxTagged"`
	RxTagged       uint64 `json:"RxTagged"`
	WrongVLAN      uint64 `json:"WrongVLAN"`
}

// ProviderRouteCounters describe the provider routes in the kernel: how many
// are installed, wait for their next hop to become reachable (no PA in its
// subnet yet), or are not installed (refused, or the kernel said no); and
// how many kernel operations on them failed.
type ProviderRouteCounters struct {
	Installed int    `json:"Installed"`
	Waiting   int    `json:"Waiting"`
	Failed    int    `json:"Failed"`
	Failures  uint64 `json:"Failures"`
}

// CheckpointCounters describe the host's checkpoint file: how many times it
// was saved, and whether it holds the current desired state (a change is
// saved after a short debounce).
type CheckpointCounters struct {
	Saves   uint64 `json:"Saves"`
	Current bool   `json:"Current"`
}

// PathCounters count frames by the path that carried them: forwarded by the
// kernel fast path, or handed by it to wnvd's switch (the slow path). Port
// and VSID counters include both.
type PathCounters struct {
	KernelFromPorts    uint64 `json:"KernelFromPorts"`
	KernelFromUnderlay uint64 `json:"KernelFromUnderlay"`
	SlowFromPorts      uint64 `json:"SlowFromPorts"`
	SlowFromUnderlay   uint64 `json:"SlowFromUnderlay"`
}

// MigrationCounters count this host's part in live migrations.
type MigrationCounters struct {
	Forwarded        uint64 `json:"Forwarded"`        // packets for a VM that left, sent on to its new PA
	RedirectsSent    uint64 `json:"RedirectsSent"`    // redirect messages sent to hosts still sending to the old PA
	RedirectsApplied uint64 `json:"RedirectsApplied"` // redirect messages received that moved a lookup record
}

// GSOCounters count the encapsulated TCP super-frames handed to the kernel
// as one tunnel GSO packet each.
type GSOCounters struct {
	Redirected uint64 `json:"Redirected"` // sent to the underlay
	Dropped    uint64 `json:"Dropped"`    // the TC program could not re-encapsulate or redirect them
	Refused    uint64 `json:"Refused"`    // the kernel refused the TAP write
}

// NextHopQuery is the input of Select-NextHop.
type NextHopQuery struct {
	SourceCustomerAddress      netip.Addr  `json:"SourceCustomerAddress"`
	DestinationCustomerAddress netip.Addr  `json:"DestinationCustomerAddress"`
	SourceVirtualSubnetID      policy.VSID `json:"SourceVirtualSubnetID"`
}

// NextHop is where a packet from the query's source to its destination goes:
// the CA it is forwarded to, the MACs it carries, and the PA and VSID it is
// encapsulated with. Like Select-NetVirtualizationNextHop's output it starts
// with the query; the provider API fills that in, so a Backend leaves it
// out.
type NextHop struct {
	NextHopQuery
	NextHopAddress    netip.Addr  `json:"NextHopAddress"`
	SourceMACAddress  packet.MAC  `json:"SourceMACAddress"`
	NextHopMACAddress packet.MAC  `json:"NextHopMACAddress"`
	ProviderAddress   netip.Addr  `json:"ProviderAddress"`
	VirtualSubnetID   policy.VSID `json:"VirtualSubnetID"`
}

// Normalized returns s with defaults applied (Interface = Name), or an error
// naming the first field that breaks a rule.
func (s PortSpec) Normalized() (PortSpec, error) {
	if s.Name == "" {
		return s, errors.New("Name is missing: use 1..63 characters, no '/', ':' or spaces")
	}
	if len(s.Name) > 63 || strings.ContainsAny(s.Name, "/: \t\n") || s.Name == "." || s.Name == ".." {
		return s, fmt.Errorf("Name %q is invalid: use 1..63 characters, no '/', ':' or spaces", s.Name)
	}
	if s.Interface == "" {
		if len(s.Name) > 15 {
			return s, fmt.Errorf("Interface is missing and Name %q is longer than an interface name (15 characters): name the port's interface", s.Name)
		}
		s.Interface = s.Name
	}
	if err := CheckIfName("Interface", s.Interface, true); err != nil {
		return s, err
	}
	if s.MACAddress.IsZero() || s.MACAddress.IsMulticast() {
		return s, fmt.Errorf("MACAddress %s is invalid: use the VM's unicast MAC such as 00:15:5d:01:02:03", s.MACAddress)
	}
	if err := checkVSID("VirtualSubnetID", s.VirtualSubnetID, true); err != nil {
		return s, err
	}
	seen := make(map[netip.Addr]bool, len(s.CustomerAddresses))
	for _, a := range s.CustomerAddresses {
		switch {
		case !a.IsValid():
			return s, fmt.Errorf("CustomerAddresses contains an empty address: use IPv4 or IPv6 addresses")
		case a.IsUnspecified() || a.IsMulticast():
			return s, fmt.Errorf("CustomerAddresses contains %s: use unicast addresses", a)
		case seen[a]:
			return s, fmt.Errorf("CustomerAddresses lists %s twice: list each address once", a)
		}
		seen[a] = true
	}
	return s, nil
}

// Validate reports the first missing or reserved field of q.
func (q NextHopQuery) Validate() error {
	if !q.SourceCustomerAddress.IsValid() {
		return fmt.Errorf("SourceCustomerAddress is missing: give the sending VM's CA")
	}
	if !q.DestinationCustomerAddress.IsValid() {
		return fmt.Errorf("DestinationCustomerAddress is missing: give the CA to reach")
	}
	return checkVSID("SourceVirtualSubnetID", q.SourceVirtualSubnetID, false)
}

// checkVSID returns an error naming field unless v is a legal VSID; zeroOK
// admits 0, which on a port means "not virtualized".
func checkVSID(field string, v policy.VSID, zeroOK bool) error {
	if v == 0 && zeroOK {
		return nil
	}
	if v < policy.MinVSID || v > policy.MaxVSID {
		if v == 0 {
			return fmt.Errorf("%s is missing: use %d..%d", field, policy.MinVSID, policy.MaxVSID)
		}
		if v <= 0xFFFFFF {
			return fmt.Errorf("%s %d is reserved: use %d..%d", field, v, policy.MinVSID, policy.MaxVSID)
		}
		return fmt.Errorf("%s %d is out of range: use %d..%d", field, v, policy.MinVSID, policy.MaxVSID)
	}
	return nil
}

// CheckIfName applies the kernel's interface name rules to field's value:
// 1..15 bytes, no '/', ':' or whitespace, not "." or ".."; an empty name is
// refused only if required.
func CheckIfName(field, name string, required bool) error {
	if name == "" {
		if required {
			return fmt.Errorf("%s is missing: use 1..15 characters, no '/', ':' or spaces", field)
		}
		return nil
	}
	if len(name) > 15 || strings.ContainsAny(name, "/: \t\n") || name == "." || name == ".." {
		return fmt.Errorf("%s %q is invalid: use 1..15 characters, no '/', ':' or spaces", field, name)
	}
	return nil
}
