package notify

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/wnv/wnv/packet"
)

// Sizes of the C structures (x86-64 layout, spec §5).
const (
	PolicyMismatchSize        = 40
	RedirectSize              = 60
	ProviderAddressChangeSize = 24
	CustomerAddressChangeSize = 52
	ObjectChangeSize          = 56
)

var recordSizes = [NotificationTypeMax]int{PolicyMismatchSize, RedirectSize, ObjectChangeSize}

// RecordSize is the size of one structure of the given type in a buffer, or 0
// for an unknown type.
func RecordSize(t NotificationType) int {
	if t < 0 || t >= NotificationTypeMax {
		return 0
	}
	return recordSizes[t]
}

// PolicyMismatch is WNV_POLICY_MISMATCH_PARAM. An invalid PA (unknown, e.g.
// an outbound miss) is encoded as family 0 (AF_UNSPEC) and zero bytes.
type PolicyMismatch struct {
	VirtualSubnetID uint32     `json:"VirtualSubnetId"`
	CA              netip.Addr `json:"CA"`
	PA              netip.Addr `json:"PA"`
}

// Redirect is WNV_REDIRECT_PARAM: CA of VirtualSubnetID moved from PA to NewPA.
type Redirect struct {
	VirtualSubnetID uint32     `json:"VirtualSubnetId"`
	CA              netip.Addr `json:"CA"`
	PA              netip.Addr `json:"PA"`
	NewPA           netip.Addr `json:"NewPA"`
}

// ProviderAddressChange is WNV_PROVIDER_ADDRESS_CHANGE_PARAM.
type ProviderAddressChange struct {
	PA           netip.Addr `json:"PA"`
	AddressState DADState   `json:"AddressState"`
}

// CustomerAddressChange is WNV_CUSTOMER_ADDRESS_CHANGE_PARAM.
type CustomerAddressChange struct {
	MACAddress         packet.MAC `json:"MACAddress"`
	CA                 netip.Addr `json:"CA"`
	VirtualSubnetID    uint32     `json:"VirtualSubnetId"`
	PA                 netip.Addr `json:"PA"`
	NotificationReason CAReason   `json:"NotificationReason"`
}

// ObjectChange is WNV_OBJECT_CHANGE_PARAM; ObjectType says which member of the
// union is meaningful.
type ObjectChange struct {
	ObjectType      ObjectType             `json:"ObjectType"`
	ProviderAddress *ProviderAddressChange `json:"ProviderAddress,omitempty"`
	CustomerAddress *CustomerAddressChange `json:"CustomerAddress,omitempty"`
}

func (t ObjectType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }
func (r CAReason) MarshalText() ([]byte, error)   { return []byte(r.String()), nil }
func (s DADState) MarshalText() ([]byte, error)   { return []byte(s.String()), nil }
func (t NotificationType) MarshalText() ([]byte, error) {
	return []byte(t.String()), nil
}

// putAddr writes a's family at famOff and its bytes (network order, IPv4 in
// the first 4 of 16) at addrOff. b must be zeroed.
func putAddr(b []byte, famOff, addrOff int, a netip.Addr) {
	binary.LittleEndian.PutUint16(b[famOff:], Family(a))
	switch {
	case a.Is4():
		v := a.As4()
		copy(b[addrOff:addrOff+4], v[:])
	case a.Is6():
		v := a.As16()
		copy(b[addrOff:addrOff+16], v[:])
	}
}

func getAddr(b []byte, famOff, addrOff int) (netip.Addr, error) {
	switch f := binary.LittleEndian.Uint16(b[famOff:]); f {
	case AFUnspec:
		return netip.Addr{}, nil
	case AFInet:
		return netip.AddrFrom4([4]byte(b[addrOff : addrOff+4])), nil
	case AFInet6:
		return netip.AddrFrom16([16]byte(b[addrOff : addrOff+16])), nil
	default:
		return netip.Addr{}, fmt.Errorf("address family %d at offset %d is unknown: use 0, 2 (AF_INET) or 23 (AF_INET6)", f, famOff)
	}
}

// PutPolicyMismatch encodes e into b[:PolicyMismatchSize].
func PutPolicyMismatch(b []byte, e *PolicyMismatch) {
	b = b[:PolicyMismatchSize]
	clear(b)
	putAddr(b, 0, 8, e.CA)
	putAddr(b, 2, 24, e.PA)
	binary.LittleEndian.PutUint32(b[4:], e.VirtualSubnetID)
}

// PutRedirect encodes e into b[:RedirectSize].
func PutRedirect(b []byte, e *Redirect) {
	b = b[:RedirectSize]
	clear(b)
	putAddr(b, 0, 12, e.CA)
	putAddr(b, 2, 28, e.PA)
	putAddr(b, 4, 44, e.NewPA)
	binary.LittleEndian.PutUint32(b[8:], e.VirtualSubnetID)
}

// PutProviderAddressChange encodes e into b[:ProviderAddressChangeSize].
func PutProviderAddressChange(b []byte, e *ProviderAddressChange) {
	b = b[:ProviderAddressChangeSize]
	clear(b)
	putAddr(b, 0, 4, e.PA)
	binary.LittleEndian.PutUint32(b[20:], uint32(e.AddressState))
}

// PutCustomerAddressChange encodes e into b[:CustomerAddressChangeSize].
func PutCustomerAddressChange(b []byte, e *CustomerAddressChange) {
	b = b[:CustomerAddressChangeSize]
	clear(b)
	copy(b[0:6], e.MACAddress[:])
	putAddr(b, 6, 8, e.CA)
	binary.LittleEndian.PutUint32(b[24:], e.VirtualSubnetID)
	putAddr(b, 28, 32, e.PA)
	binary.LittleEndian.PutUint32(b[48:], uint32(e.NotificationReason))
}

// PutObjectChange encodes e into b[:ObjectChangeSize]; the union member named
// by ObjectType must be set.
func PutObjectChange(b []byte, e *ObjectChange) {
	b = b[:ObjectChangeSize]
	clear(b)
	binary.LittleEndian.PutUint32(b[0:], uint32(e.ObjectType))
	switch {
	case e.ObjectType == ProviderAddressType && e.ProviderAddress != nil:
		PutProviderAddressChange(b[4:], e.ProviderAddress)
	case e.ObjectType == CustomerAddressType && e.CustomerAddress != nil:
		PutCustomerAddressChange(b[4:], e.CustomerAddress)
	}
}

func records(b []byte, size int, what string) (int, error) {
	if len(b)%size != 0 {
		return 0, fmt.Errorf("buffer of %d bytes is not a whole number of %s structures of %d bytes", len(b), what, size)
	}
	return len(b) / size, nil
}

// DecodePolicyMismatch decodes back-to-back WNV_POLICY_MISMATCH_PARAM
// structures, as filled by RequestNotification.
func DecodePolicyMismatch(b []byte) ([]PolicyMismatch, error) {
	n, err := records(b, PolicyMismatchSize, "WNV_POLICY_MISMATCH_PARAM")
	if err != nil {
		return nil, err
	}
	out := make([]PolicyMismatch, n)
	for i := range out {
		r := b[i*PolicyMismatchSize:]
		e := &out[i]
		e.VirtualSubnetID = binary.LittleEndian.Uint32(r[4:])
		if e.CA, err = getAddr(r, 0, 8); err != nil {
			return nil, err
		}
		if e.PA, err = getAddr(r, 2, 24); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DecodeRedirect decodes back-to-back WNV_REDIRECT_PARAM structures.
func DecodeRedirect(b []byte) ([]Redirect, error) {
	n, err := records(b, RedirectSize, "WNV_REDIRECT_PARAM")
	if err != nil {
		return nil, err
	}
	out := make([]Redirect, n)
	for i := range out {
		r := b[i*RedirectSize:]
		e := &out[i]
		e.VirtualSubnetID = binary.LittleEndian.Uint32(r[8:])
		if e.CA, err = getAddr(r, 0, 12); err != nil {
			return nil, err
		}
		if e.PA, err = getAddr(r, 2, 28); err != nil {
			return nil, err
		}
		if e.NewPA, err = getAddr(r, 4, 44); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DecodeObjectChange decodes back-to-back WNV_OBJECT_CHANGE_PARAM structures.
func DecodeObjectChange(b []byte) ([]ObjectChange, error) {
	n, err := records(b, ObjectChangeSize, "WNV_OBJECT_CHANGE_PARAM")
	if err != nil {
		return nil, err
	}
	out := make([]ObjectChange, n)
	for i := range out {
		r := b[i*ObjectChangeSize:]
		e := &out[i]
		e.ObjectType = ObjectType(binary.LittleEndian.Uint32(r))
		u := r[4:]
		switch e.ObjectType {
		case ProviderAddressType:
			p := &ProviderAddressChange{AddressState: DADState(binary.LittleEndian.Uint32(u[20:]))}
			if p.PA, err = getAddr(u, 0, 4); err != nil {
				return nil, err
			}
			e.ProviderAddress = p
		case CustomerAddressType:
			c := &CustomerAddressChange{
				MACAddress:         packet.MAC(u[0:6]),
				VirtualSubnetID:    binary.LittleEndian.Uint32(u[24:]),
				NotificationReason: CAReason(binary.LittleEndian.Uint32(u[48:])),
			}
			if c.CA, err = getAddr(u, 6, 8); err != nil {
				return nil, err
			}
			if c.PA, err = getAddr(u, 28, 32); err != nil {
				return nil, err
			}
			e.CustomerAddress = c
		default:
			return nil, fmt.Errorf("ObjectType %d at record %d is unknown: use 0 (provider address) or 1 (customer address)", int32(e.ObjectType), i)
		}
	}
	return out, nil
}
