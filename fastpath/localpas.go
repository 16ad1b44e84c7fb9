package fastpath

import (
	"fmt"
	"net/netip"
	"slices"
)

// LocalPAs lists the provider addresses the underlay program decapsulates
// for (SetLocalPAs), as an earlier wnvd may have left them: a restarted
// wnvd adopts them, and a cleanup removes them from the underlay.
func (d *Datapath) LocalPAs() ([]netip.Addr, error) {
	var (
		k   datapathPaKey
		v   uint8
		pas []netip.Addr
	)
	it := d.objs.WnvLocalPas.Iterate()
	for it.Next(&k, &v) {
		pas = append(pas, addrFrom(k.Family, k.Addr))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fast path: list the local PAs: %w", err)
	}
	slices.SortFunc(pas, netip.Addr.Compare)
	return pas, nil
}
