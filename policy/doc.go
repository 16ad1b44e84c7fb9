// Package policy holds the network virtualization policy of one host: the
// five object kinds of the original WMI classes (lookup records, customer
// routes, provider addresses, provider routes, the global setting), plus each
// virtual subnet's encapsulation (VirtualSubnet: NVGRE unless it says VXLAN),
// their validation, and immutable Table snapshots indexed for the switch's
// fast path.
//
// A Store is the single writer. Each write runs as an all-or-nothing
// transaction against the current Table and, if it succeeds, publishes a new
// Table through an atomic pointer; a failed write leaves the state exactly as
// it was and returns one sentence naming the field, the value and the rule,
// of a kind that errors.Is tells apart: ErrInvalid (bad input), ErrNotFound
// (nothing matches), ErrExists (an existing object blocks the change: same
// identity, a CA already mapped to another MAC, a VSID in another routing
// domain).
//
// Objects may be provisioned in any order, as the original cmdlets allow: a
// lookup record that is well-formed but cannot be used yet (no on-link
// customer route covers its CA, its link-local PA is not configured here, its
// Rule is not implemented) is stored and shown Unusable with a reason. The
// Table's lookups skip it; every commit recomputes the state of the records
// it may affect, so the record becomes usable when what it lacks arrives.
//
// Readers call Store.Table once per batch of packets and use that snapshot:
// lookups by (VSID, CA), (VSID, MAC), gateway wildcard, routing domain,
// longest-prefix-match customer route and local PA are map reads that neither
// lock nor allocate. The per-record indexes are split into 8192 shards, in
// pages of 64, that are copied on write, so a single change to a table of a
// million records copies about a hundred entries and a few hundred pointers,
// while Load and Apply install a million records as one new Table.
//
// Zero values: Rule's zero value is TranslationMethodNat and Type's is
// Static. The package keeps them as given, except that a Static record with
// CA 0.0.0.0 or :: is a GatewayWildcard: Windows Server 2012 has no Type and
// spells its wildcard that way. The provider API and wnvctl default a
// missing Rule to Encap.
package policy
