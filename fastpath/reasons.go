package fastpath

// Drop reasons the programs count, numbered as vswitch.Reason, so that
// the counts of both paths add up per reason.
const (
	ReasonMalformed  = 1 // vswitch.ReasonMalformed
	ReasonSpoofedMAC = 3 // vswitch.ReasonSpoofedMAC
	// ReasonSlowPathDown ("slow-path-down"): a frame for the slow path
	// while wnvd is not running.
	ReasonSlowPathDown = 28 // vswitch.ReasonSlowPathDown
	// ReasonWrongVLAN ("wrong-vlan"): an underlay frame for a PA of
	// another VLAN, or untagged for a PA with a VlanID.
	ReasonWrongVLAN = 42 // vswitch.ReasonWrongVLAN

	// NumReasonSlots is the size of Counters.Reasons.
	NumReasonSlots = 64
)
