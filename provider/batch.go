package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/policy"
)

// maxBatchBody bounds POST /v1/batch: a routing domain's full policy is
// tens of thousands of records of a few hundred bytes each.
const maxBatchBody = 64 << 20

// batchLists are the properties of a batch, in the order they apply.
var batchLists = []string{"RemoveLookupRecords", "RemoveCustomerRoutes", "AddCustomerRoutes", "AddLookupRecords", "PutLookupRecords"}

// applyBatch serves POST /v1/batch: the whole batch is validated and
// published as one table (one flush of the switch's caches), or nothing
// changes. Errors name the item, e.g. "AddLookupRecords[3]: ...".
func (h *handler) applyBatch(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBatchBody+1))
	if err != nil {
		jsonapi.WriteError(w, jsonapi.Invalid(fmt.Errorf("request body could not be read: %v", err)))
		return
	}
	if len(data) > maxBatchBody {
		jsonapi.WriteError(w, jsonapi.Invalid(fmt.Errorf("batch is larger than %d bytes: split it", maxBatchBody)))
		return
	}
	// Items are decoded one by one, so that a malformed one is named by
	// its position and its property.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		jsonapi.WriteError(w, jsonapi.Invalid(errors.New("request body is not a JSON object: send a batch such as {\"AddLookupRecords\": [...]}")))
		return
	}
	lists := map[string][]json.RawMessage{}
	for name, v := range raw {
		if !slices.Contains(batchLists, name) {
			jsonapi.WriteError(w, jsonapi.Invalid(fmt.Errorf("unknown field %q: use %s", name, strings.Join(batchLists, ", "))))
			return
		}
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			jsonapi.WriteError(w, jsonapi.Invalid(fmt.Errorf("%s is not a list: use a JSON array of objects", name)))
			return
		}
		lists[name] = items
	}
	var b policy.Batch
	// A record without Rule is an NVGRE mapping, as in POST /v1/lookup-records.
	fresh := policy.LookupRecord{Rule: policy.TranslationMethodEncap, Type: policy.Static}
	for _, l := range []struct {
		name    string
		items   []json.RawMessage
		records *[]policy.LookupRecord
		routes  *[]policy.CustomerRoute
		// identity: a remove names the object; its other properties are ignored.
		identity bool
		// unsynced: Unsynchronized may be given. The host agent puts the
		// records it keeps without the policy server's confirmation so.
		unsynced bool
	}{
		{"RemoveLookupRecords", lists["RemoveLookupRecords"], &b.RemoveLookupRecords, nil, true, false},
		{"RemoveCustomerRoutes", lists["RemoveCustomerRoutes"], nil, &b.RemoveCustomerRoutes, true, false},
		{"AddCustomerRoutes", lists["AddCustomerRoutes"], nil, &b.AddCustomerRoutes, false, false},
		{"AddLookupRecords", lists["AddLookupRecords"], &b.AddLookupRecords, nil, false, false},
		{"PutLookupRecords", lists["PutLookupRecords"], &b.PutLookupRecords, nil, false, true},
	} {
		for i, item := range l.items {
			var err error
			if l.records != nil {
				rec := fresh
				err = jsonapi.DecodeBody(bytes.NewReader(item), &rec)
				switch {
				case err != nil || l.identity:
				case rec.Unusable || rec.UnusableReason != "":
					err = jsonapi.Invalid(errors.New("Unusable and UnusableReason are read-only: leave them out"))
				case rec.Unsynchronized && !l.unsynced:
					err = jsonapi.Invalid(errors.New("Unsynchronized is read-only here: leave it out, or put the record with PutLookupRecords"))
				}
				*l.records = append(*l.records, rec)
			} else {
				var route policy.CustomerRoute
				err = jsonapi.DecodeBody(bytes.NewReader(item), &route)
				*l.routes = append(*l.routes, route)
			}
			if err != nil {
				jsonapi.WriteError(w, fmt.Errorf("%s[%d]: %w", l.name, i, err))
				return
			}
		}
	}
	if err := h.b.Store().Apply(b); err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Apply applies b as one atomic change (POST /v1/batch): one new table, or
// nothing at all when an item fails; the error names the item.
func (c *Client) Apply(ctx context.Context, b policy.Batch) error {
	return c.do(ctx, http.MethodPost, "/v1/batch", nil, b, nil)
}
