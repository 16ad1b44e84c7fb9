package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Store is the single writer of the policy. Writes are serialized by a mutex
// (they are rare); every successful change publishes a new immutable Table
// that readers pick up lock-free with Table.
type Store struct {
	mu         sync.Mutex
	cur        atomic.Pointer[Table]
	subs       []func(*Table)
	pending    []*Table
	delivering bool
}

// NewStore returns an empty store at Version 0.
func NewStore() *Store {
	s := &Store{}
	s.cur.Store(emptyTable())
	return s
}

// Table returns the current snapshot.
func (s *Store) Table() *Table { return s.cur.Load() }

// Subscribe registers fn to be called with every new Table, in publication
// order, outside the store's lock. Calls are made by whichever writer
// goroutine is delivering, so fn should be quick (e.g. a non-blocking channel
// send); a write made from fn is delivered after fn returns.
func (s *Store) Subscribe(fn func(*Table)) {
	s.mu.Lock()
	s.subs = append(s.subs[:len(s.subs):len(s.subs)], fn)
	s.mu.Unlock()
}

// update runs f on a new transaction and publishes the result if f and the
// commit succeed; otherwise nothing changes.
func (s *Store) update(f func(x *tx) error) error {
	s.mu.Lock()
	x := newTx(s.cur.Load())
	err := f(x)
	var t *Table
	if err == nil && x.changed {
		t = x.commit()
	}
	if t != nil {
		s.cur.Store(t)
		s.pending = append(s.pending, t)
	}
	s.mu.Unlock()
	if t != nil {
		s.deliver()
	}
	return err
}

func (s *Store) deliver() {
	s.mu.Lock()
	if s.delivering {
		s.mu.Unlock()
		return
	}
	s.delivering = true
	for len(s.pending) > 0 {
		ts, subs := s.pending, s.subs
		s.pending = nil
		s.mu.Unlock()
		for _, t := range ts {
			for _, fn := range subs {
				fn(t)
			}
		}
		s.mu.Lock()
	}
	s.delivering = false
	s.mu.Unlock()
}

// at prefixes a batch item's error with its position, keeping its kind.
func at(list string, i int, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Kind: e.Kind, Msg: fmt.Sprintf("%s[%d]: %s", list, i, e.Msg)}
	}
	return fmt.Errorf("%s[%d]: %w", list, i, err)
}

// Lookup records.

// AddLookupRecord validates and adds r, returning it as stored (addresses in
// canonical form). Rule and Type are taken as given: their zero values are
// Nat and Static, so the provider API and wnvctl default a missing Rule to
// Encap before calling. A record whose prerequisites are missing (see
// LookupRecord.Unusable) is stored all the same. Unsynchronized is kept as
// given (a checkpoint restores it, the host agent sets it); the provider API
// refuses it from users.
func (s *Store) AddLookupRecord(r LookupRecord) (LookupRecord, error) {
	var out LookupRecord
	err := s.update(func(x *tx) error {
		p, err := x.addRecord(r)
		if err == nil {
			out = *p
		}
		return err
	})
	return out, err
}

// LookupRecords returns the records matching f, ordered by VSID, CA, MAC.
func (s *Store) LookupRecords(f LookupRecordFilter) []LookupRecord {
	return s.Table().LookupRecords(f)
}

// SetLookupRecords changes the settable properties of every record matching
// f and returns the records as changed. ErrNotFound if none match.
func (s *Store) SetLookupRecords(f LookupRecordFilter, c LookupRecordChange) ([]LookupRecord, error) {
	var out []LookupRecord
	err := s.update(func(x *tx) error {
		ps := x.old.matchRecords(&f)
		if len(ps) == 0 {
			return notFoundf("no lookup record has %s", &f)
		}
		x.slab = make([]LookupRecord, 0, len(ps))
		out = make([]LookupRecord, len(ps))
		for i, p := range ps {
			np, err := x.setRecord(p, &c)
			if err != nil {
				return err
			}
			out[i] = *np
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveLookupRecords removes the records matching f (all of them for an
// empty filter) and returns them. ErrNotFound if a non-empty filter matches
// none.
func (s *Store) RemoveLookupRecords(f LookupRecordFilter) ([]LookupRecord, error) {
	var out []LookupRecord
	err := s.update(func(x *tx) error {
		ps := x.old.matchRecords(&f)
		if len(ps) == 0 && !f.empty() {
			return notFoundf("no lookup record has %s", &f)
		}
		out = make([]LookupRecord, len(ps))
		if f.empty() && len(ps) > 0 {
			for i, p := range ps {
				out[i] = *p
			}
			x.clearRecords()
			return nil
		}
		for i, p := range ps {
			x.removeRecord(p)
			out[i] = *p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Customer routes.

// AddCustomerRoute validates and adds r, returning it as stored (a missing
// NextHop becomes 0.0.0.0 or ::).
func (s *Store) AddCustomerRoute(r CustomerRoute) (CustomerRoute, error) {
	var out CustomerRoute
	err := s.update(func(x *tx) error {
		p, err := x.addRoute(r)
		if err == nil {
			out = *p
		}
		return err
	})
	return out, err
}

// CustomerRoutes returns the routes matching f, ordered by RoutingDomainID,
// VSID, prefix, next hop.
func (s *Store) CustomerRoutes(f CustomerRouteFilter) []CustomerRoute {
	return s.Table().CustomerRoutes(f)
}

// SetCustomerRoutes sets the Metric of every route matching f.
func (s *Store) SetCustomerRoutes(f CustomerRouteFilter, metric uint32) ([]CustomerRoute, error) {
	var out []CustomerRoute
	err := s.update(func(x *tx) error {
		ps := x.old.matchRoutes(&f)
		if len(ps) == 0 {
			return notFoundf("no customer route has %s", &f)
		}
		out = make([]CustomerRoute, len(ps))
		for i, p := range ps {
			out[i] = *x.setRouteMetric(p, metric)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveCustomerRoutes removes the routes matching f (all for an empty
// filter). The lookup records they covered stay, Unusable, until a route
// covers them again.
func (s *Store) RemoveCustomerRoutes(f CustomerRouteFilter) ([]CustomerRoute, error) {
	var out []CustomerRoute
	err := s.update(func(x *tx) error {
		ps := x.old.matchRoutes(&f)
		if len(ps) == 0 && !f.empty() {
			return notFoundf("no customer route has %s", &f)
		}
		out = make([]CustomerRoute, len(ps))
		for i, p := range ps {
			x.removeRoute(p)
			out[i] = *p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Provider addresses.

// AddProviderAddress validates and adds pa. AddressState is kept as given;
// the dataplane reports DAD results with SetAddressState.
func (s *Store) AddProviderAddress(pa ProviderAddress) (ProviderAddress, error) {
	var out ProviderAddress
	err := s.update(func(x *tx) error {
		p, err := x.addPA(pa)
		if err == nil {
			out = *p
		}
		return err
	})
	return out, err
}

// ProviderAddresses returns the PAs matching f in address order.
func (s *Store) ProviderAddresses(f ProviderAddressFilter) []ProviderAddress {
	return s.Table().ProviderAddresses(f)
}

// RemoveProviderAddresses removes the PAs matching f (all for an empty
// filter).
func (s *Store) RemoveProviderAddresses(f ProviderAddressFilter) ([]ProviderAddress, error) {
	var out []ProviderAddress
	err := s.update(func(x *tx) error {
		ps := x.old.matchPAs(&f)
		if len(ps) == 0 && !f.empty() {
			return notFoundf("no provider address has %s", &f)
		}
		out = make([]ProviderAddress, len(ps))
		for i, p := range ps {
			x.removePA(p)
			out[i] = *p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetProviderAddresses applies c to every PA matching f, checking each as
// AddProviderAddress does, and returns them as changed. ErrNotFound if none
// match; on any error nothing changes.
func (s *Store) SetProviderAddresses(f ProviderAddressFilter, c ProviderAddressChange) ([]ProviderAddress, error) {
	var out []ProviderAddress
	err := s.update(func(x *tx) error {
		ps := x.old.matchPAs(&f)
		if len(ps) == 0 {
			return notFoundf("no provider address has %s", &f)
		}
		out = make([]ProviderAddress, len(ps))
		for i, p := range ps {
			np, err := x.setPA(p, &c)
			if err != nil {
				return err
			}
			out[i] = *np
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetAddressState records the DAD state of a local PA. Setting the state it
// already has publishes nothing.
func (s *Store) SetAddressState(pa netip.Addr, st AddressState) error {
	return s.update(func(x *tx) error { return x.setPAState(pa, st) })
}

// Provider routes.

// AddProviderRoute validates and adds r.
func (s *Store) AddProviderRoute(r ProviderRoute) (ProviderRoute, error) {
	var out ProviderRoute
	err := s.update(func(x *tx) error {
		p, err := x.addProviderRoute(r)
		if err == nil {
			out = *p
		}
		return err
	})
	return out, err
}

// ProviderRoutes returns the provider routes matching f, ordered by
// InterfaceIndex, prefix, next hop.
func (s *Store) ProviderRoutes(f ProviderRouteFilter) []ProviderRoute {
	return s.Table().ProviderRoutes(f)
}

// SetProviderRoutes sets the Metric of every provider route matching f.
func (s *Store) SetProviderRoutes(f ProviderRouteFilter, metric uint32) ([]ProviderRoute, error) {
	var out []ProviderRoute
	err := s.update(func(x *tx) error {
		ps := x.old.matchProviderRoutes(&f)
		if len(ps) == 0 {
			return notFoundf("no provider route has %s", &f)
		}
		out = make([]ProviderRoute, len(ps))
		for i, p := range ps {
			out[i] = *x.setProviderRouteMetric(p, metric)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveProviderRoutes removes the provider routes matching f (all for an
// empty filter).
func (s *Store) RemoveProviderRoutes(f ProviderRouteFilter) ([]ProviderRoute, error) {
	var out []ProviderRoute
	err := s.update(func(x *tx) error {
		ps := x.old.matchProviderRoutes(&f)
		if len(ps) == 0 && !f.empty() {
			return notFoundf("no provider route has %s", &f)
		}
		out = make([]ProviderRoute, len(ps))
		for i, p := range ps {
			x.removeProviderRoute(p)
			out[i] = *p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Global returns the host-wide setting.
func (s *Store) Global() Global { return s.Table().Global() }

// SetGlobal replaces the host-wide setting.
func (s *Store) SetGlobal(g Global) {
	_ = s.update(func(x *tx) error {
		x.t.global = g
		x.changed = g != x.old.global
		return nil
	})
}

// Objects returns a full copy of the desired state.
func (s *Store) Objects() Objects { return s.Table().Objects() }

// Load validates o as a whole and replaces the entire state with it in one
// new Table; on error nothing changes. Errors name the offending item, e.g.
// "LookupRecords[7]: ...".
func (s *Store) Load(o Objects) error {
	return s.update(func(x *tx) error {
		x.reset()
		x.t.global = o.Global
		x.expect(len(o.LookupRecords))
		for i, pa := range o.ProviderAddresses {
			if _, err := x.addPA(pa); err != nil {
				return at("ProviderAddresses", i, err)
			}
		}
		for i, r := range o.ProviderRoutes {
			if _, err := x.addProviderRoute(r); err != nil {
				return at("ProviderRoutes", i, err)
			}
		}
		for i, r := range o.CustomerRoutes {
			if _, err := x.addRoute(r); err != nil {
				return at("CustomerRoutes", i, err)
			}
		}
		for i := range o.LookupRecords {
			if _, err := x.addRecord(o.LookupRecords[i]); err != nil {
				return at("LookupRecords", i, err)
			}
		}
		return nil
	})
}

// Batch is a bulk change of lookup records and customer routes, applied in
// the order of its fields and published as one Table, or not at all. Removes
// match by identity (CA+VSID+MAC; RoutingDomainID+VSID+prefix+NextHop) and
// fail with ErrNotFound for a missing object. PutLookupRecords adds a record
// or replaces the one with the same identity (installing fetched policy).
type Batch struct {
	RemoveLookupRecords  []LookupRecord
	RemoveCustomerRoutes []CustomerRoute
	AddCustomerRoutes    []CustomerRoute
	AddLookupRecords     []LookupRecord
	PutLookupRecords     []LookupRecord
}

// Apply validates and applies b as one change. Errors name the offending
// item, e.g. "AddLookupRecords[3]: ...".
func (s *Store) Apply(b Batch) error {
	return s.update(func(x *tx) error {
		x.expect(len(b.AddLookupRecords) + len(b.PutLookupRecords))
		for i := range b.RemoveLookupRecords {
			r := b.RemoveLookupRecords[i]
			if err := checkLookupRecord(&r); err != nil {
				return at("RemoveLookupRecords", i, err)
			}
			p, ok := x.findRecord(&r)
			if !ok {
				return at("RemoveLookupRecords", i, notFoundf("%s does not exist", recordName(&r)))
			}
			x.removeRecord(p)
		}
		for i := range b.RemoveCustomerRoutes {
			r := b.RemoveCustomerRoutes[i]
			if err := checkCustomerRoute(&r); err != nil {
				return at("RemoveCustomerRoutes", i, err)
			}
			p, ok := x.findRoute(&r)
			if !ok {
				return at("RemoveCustomerRoutes", i, notFoundf("%s does not exist", routeName(&r)))
			}
			x.removeRoute(p)
		}
		for i, r := range b.AddCustomerRoutes {
			if _, err := x.addRoute(r); err != nil {
				return at("AddCustomerRoutes", i, err)
			}
		}
		for i := range b.AddLookupRecords {
			if _, err := x.addRecord(b.AddLookupRecords[i]); err != nil {
				return at("AddLookupRecords", i, err)
			}
		}
		for i := range b.PutLookupRecords {
			r := b.PutLookupRecords[i]
			if err := checkLookupRecord(&r); err != nil {
				return at("PutLookupRecords", i, err)
			}
			if p, ok := x.findRecord(&r); ok {
				x.moved(p, &r)
				x.removeRecord(p)
			}
			if _, err := x.addRecord(r); err != nil {
				return at("PutLookupRecords", i, err)
			}
		}
		return nil
	})
}
