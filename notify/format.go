package notify

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// Family is the ADDRESS_FAMILY the API uses for a: AFInet, AFInet6, or
// AFUnspec for the zero Addr.
func Family(a netip.Addr) uint16 {
	switch {
	case a.Is4():
		return AFInet
	case a.Is6():
		return AFInet6
	}
	return AFUnspec
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

// String renders e on one line, in the same form as examples/wnvwatch.c.
func (e Event) String() string {
	switch {
	case e.PolicyMismatch != nil:
		m := e.PolicyMismatch
		return fmt.Sprintf("policy-mismatch vsid=%d ca=%s pa=%s families=%d/%d",
			m.VirtualSubnetID, addrText(m.CA), addrText(m.PA), Family(m.CA), Family(m.PA))
	case e.Redirect != nil:
		r := e.Redirect
		return fmt.Sprintf("redirect vsid=%d ca=%s pa=%s newpa=%s",
			r.VirtualSubnetID, addrText(r.CA), addrText(r.PA), addrText(r.NewPA))
	case e.ObjectChange != nil && e.ObjectChange.ProviderAddress != nil:
		p := e.ObjectChange.ProviderAddress
		return fmt.Sprintf("provider-address pa=%s state=%s", addrText(p.PA), p.AddressState)
	case e.ObjectChange != nil && e.ObjectChange.CustomerAddress != nil:
		c := e.ObjectChange.CustomerAddress
		return fmt.Sprintf("customer-address %s mac=%s ca=%s vsid=%d pa=%s",
			c.NotificationReason, c.MACAddress, addrText(c.CA), c.VirtualSubnetID, addrText(c.PA))
	}
	return e.Type.String()
}

// MarshalJSON renders e as one flat object with the original field names,
// families included: {"Type":"policy-mismatch","VirtualSubnetId":5001,
// "CAFamily":2,"CA":"10.0.0.11","PAFamily":2,"PA":"198.18.0.2"}.
func (e Event) MarshalJSON() ([]byte, error) {
	switch {
	case e.PolicyMismatch != nil:
		m := e.PolicyMismatch
		return json.Marshal(addressPair(e.Type, m.VirtualSubnetID, m.CA, m.PA))
	case e.Redirect != nil:
		r := e.Redirect
		return json.Marshal(struct {
			addressPairJSON
			NewPAFamily uint16
			NewPA       netip.Addr
		}{addressPair(e.Type, r.VirtualSubnetID, r.CA, r.PA), Family(r.NewPA), r.NewPA})
	case e.ObjectChange != nil && e.ObjectChange.ProviderAddress != nil:
		p := e.ObjectChange.ProviderAddress
		return json.Marshal(struct {
			Type         NotificationType
			ObjectType   ObjectType
			PAFamily     uint16
			PA           netip.Addr
			AddressState DADState
		}{e.Type, ProviderAddressType, Family(p.PA), p.PA, p.AddressState})
	case e.ObjectChange != nil && e.ObjectChange.CustomerAddress != nil:
		c := e.ObjectChange.CustomerAddress
		return json.Marshal(struct {
			Type               NotificationType
			ObjectType         ObjectType
			MACAddress         string
			CAFamily           uint16
			CA                 netip.Addr
			VirtualSubnetId    uint32
			PAFamily           uint16
			PA                 netip.Addr
			NotificationReason CAReason
		}{e.Type, CustomerAddressType, c.MACAddress.String(), Family(c.CA), c.CA, c.VirtualSubnetID, Family(c.PA), c.PA, c.NotificationReason})
	}
	return json.Marshal(struct{ Type NotificationType }{e.Type})
}

// addressPairJSON is the flat JSON of a policy mismatch; a redirect adds the
// new PA to it.
type addressPairJSON struct {
	Type            NotificationType
	VirtualSubnetId uint32
	CAFamily        uint16
	CA              netip.Addr
	PAFamily        uint16
	PA              netip.Addr
}

func addressPair(t NotificationType, vsid uint32, ca, pa netip.Addr) addressPairJSON {
	return addressPairJSON{t, vsid, Family(ca), ca, Family(pa), pa}
}
