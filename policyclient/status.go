package policyclient

import (
	"context"
	"errors"
	"iter"
	"net/http"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/policyapi"
)

// ReportStatus sends host's status report (POST /v1/hosts/NAME/status).
func (c *Client) ReportStatus(ctx context.Context, s policyapi.HostStatus) error {
	return c.Do(ctx, http.MethodPost, "/v1/hosts/"+esc(s.Host)+"/status", nil, s, nil)
}

// Status returns every host's latest report and history (GET /v1/status).
func (c *Client) Status(ctx context.Context) ([]policyapi.HostHealth, error) {
	return call[[]policyapi.HostHealth](c, ctx, http.MethodGet, "/v1/status", nil, nil)
}

// StatusStream follows GET /v1/status/stream: each host's new reports and
// the sampled drops, until ctx ends or the stream fails (not retried).
func (c *Client) StatusStream(ctx context.Context) iter.Seq2[policyapi.StatusEvent, error] {
	return func(yield func(policyapi.StatusEvent, error) bool) {
		resp, err := c.api.Request(ctx, http.MethodGet, "/v1/status/stream", nil, nil)
		if err != nil {
			yield(policyapi.StatusEvent{}, err)
			return
		}
		defer resp.Body.Close()
		stopped, err := jsonapi.DecodeLines(resp.Body, 16<<20, "the policy server's status stream", func(ev policyapi.StatusEvent) bool {
			return ev.Type == "progress" || yield(ev, nil)
		})
		if stopped || ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the policy server closed the status stream")
		}
		yield(policyapi.StatusEvent{}, err)
	}
}
