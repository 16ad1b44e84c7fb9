package provider

import (
	"context"
	"net/http"

	"github.com/wnv/wnv/policy"
)

// registerVirtualSubnets serves /v1/virtual-subnets: the per-subnet
// encapsulation (NVGRE unless a virtual subnet says VXLAN).
func registerVirtualSubnets(h *handler) {
	collection[policy.VirtualSubnet, policy.VirtualSubnetFilter, policy.VirtualSubnetChange]{
		path:   "/v1/virtual-subnets",
		fresh:  func() policy.VirtualSubnet { return policy.VirtualSubnet{} },
		add:    (*policy.Store).AddVirtualSubnet,
		list:   (*policy.Store).VirtualSubnets,
		set:    (*policy.Store).SetVirtualSubnets,
		remove: (*policy.Store).RemoveVirtualSubnets,
	}.register(h)
}

// AddVirtualSubnet creates v.
func (c *Client) AddVirtualSubnet(ctx context.Context, v policy.VirtualSubnet) (policy.VirtualSubnet, error) {
	return add(c, ctx, "/v1/virtual-subnets", v)
}

// VirtualSubnets lists the virtual subnets matching f.
func (c *Client) VirtualSubnets(ctx context.Context, f policy.VirtualSubnetFilter) ([]policy.VirtualSubnet, error) {
	return list[policy.VirtualSubnet](c, ctx, http.MethodGet, "/v1/virtual-subnets", f, nil)
}

// SetVirtualSubnets changes the virtual subnets matching f.
func (c *Client) SetVirtualSubnets(ctx context.Context, f policy.VirtualSubnetFilter, ch policy.VirtualSubnetChange) ([]policy.VirtualSubnet, error) {
	return list[policy.VirtualSubnet](c, ctx, http.MethodPatch, "/v1/virtual-subnets", f, ch)
}

// RemoveVirtualSubnets removes the virtual subnets matching f (all for an
// empty filter).
func (c *Client) RemoveVirtualSubnets(ctx context.Context, f policy.VirtualSubnetFilter) ([]policy.VirtualSubnet, error) {
	return list[policy.VirtualSubnet](c, ctx, http.MethodDelete, "/v1/virtual-subnets", f, nil)
}
