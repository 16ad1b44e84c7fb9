package hostagent

import (
	"reflect"
	"testing"
	"time"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// A record a redirect moved is Unsynchronized on the host. When the policy
// server's record agrees, the agent puts it, which confirms it; while the
// server does not answer for its routing domain, the agent keeps every
// record of it, marked.
func TestAnUnsynchronizedRecordIsConfirmedByTheServerOnly(t *testing.T) {
	moved := rec(rd1, 11, "198.18.0.2")
	marked := moved
	marked.Unsynchronized = true
	held := []policy.LookupRecord{rec(rd1, 10, "198.18.0.1"), marked}

	for _, serverUp := range []bool{true, false} {
		h := newHarness(t)
		h.vms = []policyapi.VM{vm("a", rd1, "h1", 10)}
		if serverUp {
			h.policies[rd1] = pol(rd1, 10, held[0], moved)
		}
		must(t, h.host.store.Load(policy.Objects{CustomerRoutes: []policy.CustomerRoute{route(rd1)}, LookupRecords: held}))
		h.host.ifaces["a"] = true
		h.step(Registered{})
		var batches []policy.Batch
		for range 3 {
			batches = append(batches, batchOf(h.settle())...)
			h.now = h.now.Add(10 * time.Second)
		}
		want := []policy.LookupRecord{held[0], moved}
		wantBatches := []policy.Batch{{PutLookupRecords: []policy.LookupRecord{moved}}}
		if !serverUp {
			want = []policy.LookupRecord{held[0], marked}
			want[0].Unsynchronized = true
			wantBatches = []policy.Batch{{PutLookupRecords: want[:1]}}
		}
		if !reflect.DeepEqual(batches, wantBatches) {
			t.Errorf("server up %v: batches %+v, want %+v", serverUp, batches, wantBatches)
		}
		if got := h.records(); !reflect.DeepEqual(got, want) {
			t.Errorf("server up %v: host has %+v, want %+v", serverUp, got, want)
		}
	}
}
