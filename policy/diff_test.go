package policy

import (
	"reflect"
	"testing"
)

func TestDiffReconciles(t *testing.T) {
	s := fixture(t)
	cur := s.Objects()
	if b := Diff(cur, cur); !reflect.DeepEqual(b, Batch{}) {
		t.Errorf("Diff of equal states is %+v, want empty", b)
	}
	// Unusable is derived by the store: a wanted record is never "changed"
	// by it.
	unusable := s.Objects()
	unusable.LookupRecords[0].Unusable, unusable.LookupRecords[0].UnusableReason = true, "no customer route"
	if b := Diff(unusable, cur); !reflect.DeepEqual(b, Batch{}) {
		t.Errorf("Diff that differs in Unusable only is %+v, want empty", b)
	}

	want := s.Objects()
	want.LookupRecords[0].ProviderAddress = addr("198.18.0.99") // 10.0.0.5 moved
	want.LookupRecords = want.LookupRecords[:1]                 // 10.0.1.6 gone
	want.LookupRecords = append(want.LookupRecords,
		rec("::ffff:10.0.3.7", 5003, "00:15:5d:00:03:07", "198.18.0.4"), // new, unnormalized
		with(rec("0.0.0.0", 5001, "00:15:5d:00:00:fe", "198.18.0.9"), func(r *LookupRecord) { r.Type = GatewayWildcard }))
	want.CustomerRoutes = []CustomerRoute{
		route(rd1, 5001, "10.0.0.0/24", "", 4), // Metric changed
		route(rd1, 5001, "fd00:0:0:1::/64", "::", 0),
		route(rd1, 5003, "10.0.3.0/24", "", 0), // new; 5002's route gone
	}
	b := Diff(cur, want)
	if len(b.RemoveLookupRecords) != 1 || len(b.PutLookupRecords) != 1 || len(b.AddLookupRecords) != 2 ||
		len(b.RemoveCustomerRoutes) != 2 || len(b.AddCustomerRoutes) != 2 {
		t.Errorf("Diff = %+v", b)
	}
	if err := s.Apply(b); err != nil {
		t.Fatal(err)
	}
	// The store now holds want, in canonical form.
	ref := NewStore()
	if err := ref.Load(Objects{LookupRecords: want.LookupRecords, CustomerRoutes: want.CustomerRoutes, ProviderAddresses: cur.ProviderAddresses}); err != nil {
		t.Fatal(err)
	}
	if got, exp := s.Objects(), ref.Objects(); !reflect.DeepEqual(got, exp) {
		t.Errorf("after applying the diff:\n got %+v\nwant %+v", got, exp)
	}
	if b := Diff(s.Objects(), want); !reflect.DeepEqual(b, Batch{}) {
		t.Errorf("Diff after reconciling is %+v, want empty", b)
	}
}
