package hostagent

import (
	"testing"
	"time"

	"github.com/wnv/wnv/policyapi"
)

// The model says it is in sync only once the watch is listed, the policy
// installed and the VMs' ports attached, and not while a reconcile fails
// and waits to retry.
func TestSyncedOnlyWithNothingPending(t *testing.T) {
	h := newHarness(t)
	h.vms = []policyapi.VM{vm("a", rd1, "h1", 10)}
	h.policies[rd1] = pol(rd1, 10, rec(rd1, 10, "198.18.0.1"))
	if _, in := h.m.Synced(); in {
		t.Fatal("a model that has not started says it is in sync")
	}
	h.start()
	if _, in := h.m.Synced(); in {
		t.Fatal("a model waiting for a VM's interface says it is in sync")
	}
	h.host.ifaces["a"] = true
	h.now = h.now.Add(time.Second)
	h.step(Tick{})
	h.settle()
	if rev, in := h.m.Synced(); !in || rev < 10 {
		t.Fatalf("after settling: revision %d in sync %v, want at least 10 and in sync", rev, in)
	}
	h.put(h.vms[0], nil, 11)
	r := h.ready()
	if !r.ReadHost {
		t.Fatalf("no host read after an event: %+v", r)
	}
	h.step(HostRead{Err: errUnavailable})
	h.ready()
	if _, in := h.m.Synced(); in {
		t.Error("a model whose reconcile failed and waits to retry says it is in sync")
	}
	h.now = h.now.Add(time.Second)
	h.settle()
	if rev, in := h.m.Synced(); !in || rev < 10 {
		t.Errorf("after the retry: revision %d in sync %v, want in sync", rev, in)
	}
}
