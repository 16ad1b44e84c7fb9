package provider_test

import (
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/wnv/wnv/policy"
)

func TestBatchIsOneTablePublication(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	s := e.b.Store()
	rec1 := s.LookupRecords(policy.LookupRecordFilter{})[0]
	published := 0
	s.Subscribe(func(*policy.Table) { published++ })
	rd2 := policy.MustParseGUID("{11111111-2222-3333-4444-000000000002}")
	b := policy.Batch{
		RemoveLookupRecords: []policy.LookupRecord{rec1},
		AddCustomerRoutes:   []policy.CustomerRoute{{RoutingDomainID: rd2, VirtualSubnetID: 5002, DestinationPrefix: netip.MustParsePrefix("10.2.0.0/24")}},
		AddLookupRecords: []policy.LookupRecord{
			{CustomerAddress: netip.MustParseAddr("10.2.0.5"), VirtualSubnetID: 5002, MACAddress: mac1, ProviderAddress: pa2, Rule: policy.TranslationMethodEncap},
			{CustomerAddress: ca2, VirtualSubnetID: 5001, MACAddress: mac2, ProviderAddress: pa2, Rule: policy.TranslationMethodEncap},
		},
	}
	if err := e.c.Apply(e.ctx, b); err != nil {
		t.Fatal(err)
	}
	if published != 1 {
		t.Errorf("a batch of 4 changes published %d tables, want 1", published)
	}
	recs := s.LookupRecords(policy.LookupRecordFilter{})
	if len(recs) != 2 || recs[0].CustomerAddress != ca2 || recs[1].VirtualSubnetID != 5002 {
		t.Errorf("records after the batch: %+v", recs)
	}
}

func TestBatchWithOneBadItemChangesNothingAndNamesIt(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	s := e.b.Store()
	before, version := s.Objects(), s.Table().Version()
	rec1 := before.LookupRecords[0]
	good := policy.LookupRecord{CustomerAddress: ca2, VirtualSubnetID: 5001, MACAddress: mac2, ProviderAddress: pa2, Rule: policy.TranslationMethodEncap}
	reserved := good
	reserved.VirtualSubnetID = 42
	for _, c := range []struct {
		name   string
		batch  policy.Batch
		status int
		prefix string
	}{
		{"reserved VSID", policy.Batch{
			RemoveLookupRecords: []policy.LookupRecord{rec1},
			AddLookupRecords:    []policy.LookupRecord{good, reserved},
		}, http.StatusBadRequest, "AddLookupRecords[1]: "},
		{"remove of a missing record", policy.Batch{
			AddLookupRecords:    []policy.LookupRecord{good},
			RemoveLookupRecords: []policy.LookupRecord{rec1, good},
		}, http.StatusNotFound, "RemoveLookupRecords[1]: "},
	} {
		err := e.c.Apply(e.ctx, c.batch)
		if err == nil || !strings.HasPrefix(err.Error(), c.prefix) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Apply = %v, want one line starting %q", c.name, err, c.prefix)
		}
		if want := map[int]error{http.StatusBadRequest: policy.ErrInvalid, http.StatusNotFound: policy.ErrNotFound}[c.status]; !errors.Is(err, want) {
			t.Errorf("%s: Apply = %v, want an error of kind %v", c.name, err, want)
		}
		if !reflect.DeepEqual(s.Objects(), before) || s.Table().Version() != version {
			t.Errorf("%s: the failed batch changed the store", c.name)
		}
	}

	// A malformed item is named with its property.
	status, body := e.do(t, http.MethodPost, "/v1/batch", `{"AddCustomerRoutes": [{"RoutingDomainID": "`+rd.String()+`", "VirtualSubnetID": 5001, "DestinationPrefix": "10.1.0.0/24"}, {"DestinationPrefix": "10.1.0.0/33"}]}`)
	if status != http.StatusBadRequest || !strings.Contains(body, `AddCustomerRoutes[1]: DestinationPrefix`) {
		t.Errorf("malformed item: %d %s", status, body)
	}
	status, body = e.do(t, http.MethodPost, "/v1/batch", `{"AddRecords": []}`)
	if status != http.StatusBadRequest || !strings.Contains(body, `unknown field \"AddRecords\"`) {
		t.Errorf("unknown list: %d %s", status, body)
	}
	if !reflect.DeepEqual(s.Objects(), before) || s.Table().Version() != version {
		t.Error("a refused batch changed the store")
	}
}
