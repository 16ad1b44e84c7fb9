// Package packet holds the zero-allocation wire codecs of the data path:
// Ethernet (with one 802.1Q tag), ARP, IPv4, IPv6, ICMPv4, ICMPv6 neighbour
// discovery and errors, UDP, NVGRE (RFC 7637), VXLAN (RFC 7348), and wnv's
// own redirect message (redirect.go).
//
// A parsed header is a view: a byte slice type over the caller's buffer whose
// accessors read the wire format in place. Parse functions validate just
// enough that every accessor stays in bounds and that the fields the switch
// trusts are sane; they return package-level error values so the drop path
// never allocates either. Put functions write a header into the caller's
// buffer and return the number of bytes written; like encoding/binary, they
// panic if the buffer is too short, because that is a programming error.
//
// Addresses come back as netip.Addr built from fixed-size arrays, so reading
// them does not allocate.
package packet

// EtherTypes and IP protocol numbers used by the data path.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86DD
	EtherTypeVLAN = 0x8100
	EtherTypeTEB  = 0x6558 // Transparent Ethernet Bridging, the GRE protocol type of NVGRE

	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoGRE    = 47
	ProtoICMPv6 = 58
)

// Fixed header lengths in bytes.
const (
	EthernetHeaderLen = 14
	VLANTagLen        = 4
	IPv4HeaderLen     = 20
	IPv6HeaderLen     = 40
	NVGREHeaderLen    = 8
	UDPHeaderLen      = 8
	VXLANHeaderLen    = 8
	ICMPv4HeaderLen   = 8
	ICMPv6HeaderLen   = 8
	ARPLen            = 28
)
