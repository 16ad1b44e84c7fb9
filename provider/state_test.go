package provider_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/wnv/wnv/policy"
)

// A record whose customer route is missing is created, shown Unusable with
// its reason, and selected by the state filters; the states are read-only.
func TestARecordWithoutItsRouteIsCreatedUnusable(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	status, body := e.do(t, http.MethodPost, "/v1/lookup-records",
		`{"CustomerAddress":"10.9.9.9","VirtualSubnetID":5001,"MACAddress":"00:15:5d:01:02:09","ProviderAddress":"198.18.0.3"}`)
	want := `"Unusable":true,"UnusableReason":"no customer route: no on-link route of VirtualSubnetID 5001 covers CustomerAddress 10.9.9.9","Unsynchronized":false`
	if status != http.StatusCreated || !strings.Contains(body, want) {
		t.Fatalf("POST: %d %s, want 201 with %s", status, body, want)
	}
	rs, err := e.c.LookupRecords(e.ctx, policy.LookupRecordFilter{Unusable: []bool{true}})
	if err != nil || len(rs) != 1 || rs[0].CustomerAddress.String() != "10.9.9.9" {
		t.Errorf("Get with Unusable true = %+v, %v", rs, err)
	}
	if rs, err := e.c.LookupRecords(e.ctx, policy.LookupRecordFilter{Unusable: []bool{false}}); err != nil || len(rs) != 1 || rs[0].CustomerAddress != ca1 {
		t.Errorf("Get with Unusable false = %+v, %v", rs, err)
	}
	if rs, err := e.c.LookupRecords(e.ctx, policy.LookupRecordFilter{Unsynchronized: []bool{true}}); err != nil || len(rs) != 0 {
		t.Errorf("Get with Unsynchronized true = %+v, %v", rs, err)
	}
	for _, state := range []string{`"Unusable":true`, `"UnusableReason":"x"`, `"Unsynchronized":true`} {
		status, body := e.do(t, http.MethodPost, "/v1/lookup-records",
			`{"CustomerAddress":"10.0.0.9","VirtualSubnetID":5001,"MACAddress":"00:15:5d:01:02:0a","ProviderAddress":"198.18.0.3",`+state+`}`)
		if status != http.StatusBadRequest || !strings.Contains(body, "Unusable, UnusableReason and Unsynchronized are read-only: leave them out") {
			t.Errorf("POST with %s: %d %s", state, status, body)
		}
	}
}

// The host agent puts the records it keeps without the policy server's
// confirmation as Unsynchronized; nothing else may set the state.
func TestOnlyAPutMarksARecordUnsynchronized(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	r := `{"CustomerAddress":"10.0.0.5","VirtualSubnetID":5001,"MACAddress":"00:15:5d:01:02:03","ProviderAddress":"198.18.0.2","Unsynchronized":true}`
	status, body := e.do(t, http.MethodPost, "/v1/batch", `{"AddLookupRecords":[`+strings.Replace(r, "10.0.0.5", "10.0.0.6", 1)+`]}`)
	if status != http.StatusBadRequest || !strings.Contains(body, "AddLookupRecords[0]: Unsynchronized is read-only here") {
		t.Errorf("add with Unsynchronized: %d %s", status, body)
	}
	if status, body := e.do(t, http.MethodPost, "/v1/batch", `{"PutLookupRecords":[`+r+`]}`); status != http.StatusNoContent {
		t.Fatalf("put with Unsynchronized: %d %s", status, body)
	}
	if rs, err := e.c.LookupRecords(e.ctx, policy.LookupRecordFilter{Unsynchronized: []bool{true}}); err != nil || len(rs) != 1 || rs[0].CustomerAddress != ca1 {
		t.Errorf("Get with Unsynchronized true = %+v, %v", rs, err)
	}
}

// Windows Server 2012 has no Type: a record at CA 0.0.0.0 without one is the
// subnet's gateway wildcard; any other CA without one is Static.
func TestARecordWithoutTypeAtCA0IsAGatewayWildcard(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	for ca, want := range map[string]string{"0.0.0.0": `"Type":2`, "10.0.0.8": `"Type":0`} {
		status, body := e.do(t, http.MethodPost, "/v1/lookup-records",
			`{"CustomerAddress":"`+ca+`","VirtualSubnetID":5001,"MACAddress":"00:15:5d:01:02:0b","ProviderAddress":"198.18.0.3"}`)
		if status != http.StatusCreated || !strings.Contains(body, want) || !strings.Contains(body, `"Unusable":false`) {
			t.Errorf("POST at CA %s without Type: %d %s, want %s", ca, status, body, want)
		}
	}
}
