package policyclient

import (
	"context"
	"net/http"

	"github.com/wnv/wnv/policyapi"
)

// RedirectKeys returns the redirect keys of host's PAs with its peers'. A
// server without redirect keys answers an error matching policy.ErrNotFound.
func (c *Client) RedirectKeys(ctx context.Context, host string) ([]policyapi.RedirectKey, error) {
	return call[[]policyapi.RedirectKey](c, ctx, http.MethodGet, "/v1/hosts/"+esc(host)+"/redirect-keys", nil, nil)
}
