package provider

import (
	"context"
	"net/http"

	"github.com/wnv/wnv/policyapi"
)

// SetRedirectKeys replaces the keys wnvd authenticates redirects with (PUT
// /v1/redirect-keys). A wnvd without redirect keys answers an error
// matching policy.ErrNotFound.
func (c *Client) SetRedirectKeys(ctx context.Context, keys []policyapi.RedirectKey) error {
	if keys == nil {
		keys = []policyapi.RedirectKey{}
	}
	return c.do(ctx, http.MethodPut, "/v1/redirect-keys", nil, keys, nil)
}
