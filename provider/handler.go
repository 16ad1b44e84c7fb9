package provider

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/policy"
)

// Backend is what wnvd implements behind the provider API: the policy store
// plus the port, next-hop and counter views of the switch. Errors may wrap
// policy.ErrInvalid, policy.ErrNotFound or policy.ErrExists to pick the HTTP
// status; anything else is a 500.
type Backend interface {
	Store() *policy.Store
	AttachPort(PortSpec) (Port, error)
	DetachPort(name string) error
	Ports() []Port
	NextHop(NextHopQuery) (NextHop, error)
	Counters() Counters
}

// ProviderRouteChecker is a Backend that installs provider routes and
// refuses, when they are added, those it could not install.
type ProviderRouteChecker interface {
	CheckProviderRoute(policy.ProviderRoute) error
}

// ProviderAddressChecker is a Backend that refuses, when they are added,
// provider addresses it could not honour.
type ProviderAddressChecker interface {
	CheckProviderAddress(policy.ProviderAddress) error
}

// NewHandler returns the provider API's HTTP handler over b.
func NewHandler(b Backend) http.Handler {
	h := &handler{b: b, mux: http.NewServeMux()}

	collection[policy.LookupRecord, policy.LookupRecordFilter, policy.LookupRecordChange]{
		path: "/v1/lookup-records",
		// A record created without Rule (absent or null; the Go client
		// sends policy.RuleUnset as null) or Type is an NVGRE static
		// mapping, the common case. Nat, 0 on the wire, must be asked for.
		fresh: func() policy.LookupRecord {
			return policy.LookupRecord{Rule: policy.TranslationMethodEncap, Type: policy.Static}
		},
		add:    addLookupRecord,
		list:   (*policy.Store).LookupRecords,
		set:    (*policy.Store).SetLookupRecords,
		remove: (*policy.Store).RemoveLookupRecords,
	}.register(h)

	collection[policy.CustomerRoute, policy.CustomerRouteFilter, MetricChange]{
		path:   "/v1/customer-routes",
		fresh:  func() policy.CustomerRoute { return policy.CustomerRoute{} },
		add:    (*policy.Store).AddCustomerRoute,
		list:   (*policy.Store).CustomerRoutes,
		set:    metricSetter((*policy.Store).SetCustomerRoutes),
		remove: (*policy.Store).RemoveCustomerRoutes,
	}.register(h)

	collection[policy.ProviderAddress, policy.ProviderAddressFilter, policy.ProviderAddressChange]{
		path:  "/v1/provider-addresses",
		fresh: func() policy.ProviderAddress { return policy.ProviderAddress{} },
		add: func(s *policy.Store, p policy.ProviderAddress) (policy.ProviderAddress, error) {
			if c, ok := b.(ProviderAddressChecker); ok {
				if err := c.CheckProviderAddress(p); err != nil {
					return p, err
				}
			}
			return s.AddProviderAddress(p)
		},
		list:   (*policy.Store).ProviderAddresses,
		set:    (*policy.Store).SetProviderAddresses,
		remove: (*policy.Store).RemoveProviderAddresses,
	}.register(h)

	collection[policy.ProviderRoute, policy.ProviderRouteFilter, MetricChange]{
		path:  "/v1/provider-routes",
		fresh: func() policy.ProviderRoute { return policy.ProviderRoute{} },
		add: func(s *policy.Store, r policy.ProviderRoute) (policy.ProviderRoute, error) {
			if c, ok := b.(ProviderRouteChecker); ok {
				if err := c.CheckProviderRoute(r); err != nil {
					return r, err
				}
			}
			return s.AddProviderRoute(r)
		},
		list:   (*policy.Store).ProviderRoutes,
		set:    metricSetter((*policy.Store).SetProviderRoutes),
		remove: (*policy.Store).RemoveProviderRoutes,
	}.register(h)

	registerVirtualSubnets(h)
	registerRedirectKeys(h)
	registerTrace(h)

	h.route("/v1/global", map[string]http.HandlerFunc{
		http.MethodGet: h.getGlobal,
		http.MethodPut: h.putGlobal,
	})
	h.route("/v1/ports", map[string]http.HandlerFunc{
		http.MethodGet:  h.listPorts,
		http.MethodPost: h.attachPort,
	})
	h.route("/v1/ports/{name}", map[string]http.HandlerFunc{
		http.MethodGet:    h.getPort,
		http.MethodDelete: h.detachPort,
	})
	h.route("/v1/batch", map[string]http.HandlerFunc{http.MethodPost: h.applyBatch})
	h.route("/v1/next-hop", map[string]http.HandlerFunc{http.MethodGet: h.nextHop})
	h.route("/v1/counters", map[string]http.HandlerFunc{http.MethodGet: h.counters})
	h.route("/v1/monitor", map[string]http.HandlerFunc{http.MethodGet: h.monitor})
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.WriteError(w, &policy.Error{Kind: policy.ErrNotFound, Msg: fmt.Sprintf("path %s is not part of the provider API: use one of %s", r.URL.Path, strings.Join(h.paths, ", "))})
	})
	return h.mux
}

type handler struct {
	b     Backend
	mux   *http.ServeMux
	paths []string
}

// route registers one handler per method on path, and a JSON 405 for the
// other methods (a pattern with a method is more specific than one without).
func (h *handler) route(path string, methods map[string]http.HandlerFunc) {
	allowed := make([]string, 0, len(methods))
	for m, fn := range methods {
		allowed = append(allowed, m)
		h.mux.HandleFunc(m+" "+path, fn)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	h.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		jsonapi.WriteJSON(w, http.StatusMethodNotAllowed, jsonapi.ErrorBody{Error: fmt.Sprintf("method %s is not allowed on %s: use %s", r.Method, path, allow)})
	})
	h.paths = append(h.paths, path)
}

// MetricChange is the body of PATCH on customer and provider routes: Metric
// is the only settable property of a route.
type MetricChange struct {
	Metric *uint32 `json:"Metric"`
}

func metricSetter[T, F any](set func(*policy.Store, F, uint32) ([]T, error)) func(*policy.Store, F, MetricChange) ([]T, error) {
	return func(s *policy.Store, f F, c MetricChange) ([]T, error) {
		if c.Metric == nil {
			return nil, jsonapi.Invalid(errors.New("Metric is missing: a route's Metric is its only settable property"))
		}
		return set(s, f, *c.Metric)
	}
}

// collection serves the four verbs of one policy object kind: T is the
// object, F its filter and C its change.
type collection[T, F, C any] struct {
	path   string
	fresh  func() T
	add    func(*policy.Store, T) (T, error)
	list   func(*policy.Store, F) []T
	set    func(*policy.Store, F, C) ([]T, error)
	remove func(*policy.Store, F) ([]T, error)
}

func (c collection[T, F, C]) register(h *handler) {
	methods := map[string]http.HandlerFunc{
		http.MethodPost: func(w http.ResponseWriter, r *http.Request) {
			obj := c.fresh()
			if err := jsonapi.DecodeBody(r.Body, &obj); err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			added, err := c.add(h.b.Store(), obj)
			if err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			jsonapi.WriteJSON(w, http.StatusCreated, added)
		},
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			var f F
			if err := jsonapi.DecodeQuery(r.URL.Query(), &f); err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			writeList(w, c.list(h.b.Store(), f), nil)
		},
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			var f F
			if err := jsonapi.DecodeQuery(r.URL.Query(), &f); err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			removed, err := c.remove(h.b.Store(), f)
			writeList(w, removed, err)
		},
	}
	if c.set != nil {
		methods[http.MethodPatch] = func(w http.ResponseWriter, r *http.Request) {
			var f F
			if err := jsonapi.DecodeQuery(r.URL.Query(), &f); err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			var change C
			if err := jsonapi.DecodeBody(r.Body, &change); err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			changed, err := c.set(h.b.Store(), f, change)
			writeList(w, changed, err)
		}
	}
	h.route(c.path, methods)
}

func writeList[T any](w http.ResponseWriter, list []T, err error) {
	if err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	if list == nil {
		list = []T{}
	}
	jsonapi.WriteJSON(w, http.StatusOK, list)
}

func (h *handler) getGlobal(w http.ResponseWriter, r *http.Request) {
	jsonapi.WriteJSON(w, http.StatusOK, h.b.Store().Global())
}

// putGlobal starts from the current setting, so a body naming only some
// properties leaves the others as they are.
func (h *handler) putGlobal(w http.ResponseWriter, r *http.Request) {
	s := h.b.Store()
	g := s.Global()
	if err := jsonapi.DecodeBody(r.Body, &g); err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	s.SetGlobal(g)
	jsonapi.WriteJSON(w, http.StatusOK, s.Global())
}

func (h *handler) listPorts(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		jsonapi.WriteError(w, jsonapi.Invalid(errors.New("GET /v1/ports takes no query parameters: use /v1/ports/{name} for one port")))
		return
	}
	ports := h.b.Ports()
	slices.SortFunc(ports, func(a, b Port) int { return strings.Compare(a.Name, b.Name) })
	writeList(w, ports, nil)
}

func (h *handler) attachPort(w http.ResponseWriter, r *http.Request) {
	var spec PortSpec
	if err := jsonapi.DecodeBody(r.Body, &spec); err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	spec, err := spec.Normalized()
	if err != nil {
		jsonapi.WriteError(w, jsonapi.Invalid(err))
		return
	}
	p, err := h.b.AttachPort(spec)
	if err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	jsonapi.WriteJSON(w, http.StatusCreated, p)
}

func (h *handler) getPort(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, p := range h.b.Ports() {
		if p.Name == name {
			jsonapi.WriteJSON(w, http.StatusOK, p)
			return
		}
	}
	jsonapi.WriteError(w, &policy.Error{Kind: policy.ErrNotFound, Msg: fmt.Sprintf("port %q is not attached: list ports with GET /v1/ports", name)})
}

// MigratedDetacher is a Backend that can detach the port of a VM that
// live-migrated to another host (DELETE /v1/ports/{name}?migrated=true):
// for a grace period it forwards packets still arriving for the VM to the
// VM's new PA.
type MigratedDetacher interface {
	DetachMigratedPort(name string) error
}

func (h *handler) detachPort(w http.ResponseWriter, r *http.Request) {
	detach := h.b.DetachPort
	switch m := r.URL.Query().Get("migrated"); m {
	case "", "false":
	case "true":
		k, ok := h.b.(MigratedDetacher)
		if !ok {
			jsonapi.WriteError(w, jsonapi.Invalid(errors.New("migrated=true is not supported by this wnvd: detach without it")))
			return
		}
		detach = k.DetachMigratedPort
	default:
		jsonapi.WriteError(w, jsonapi.Invalid(fmt.Errorf("migrated %q is invalid: use true or false", m)))
		return
	}
	if err := detach(r.PathValue("name")); err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) nextHop(w http.ResponseWriter, r *http.Request) {
	var q NextHopQuery
	if err := jsonapi.DecodeQuery(r.URL.Query(), &q); err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	if err := q.Validate(); err != nil {
		jsonapi.WriteError(w, jsonapi.Invalid(err))
		return
	}
	nh, err := h.b.NextHop(q)
	if err != nil {
		jsonapi.WriteError(w, err)
		return
	}
	nh.NextHopQuery = q // the cmdlet's output echoes its inputs
	jsonapi.WriteJSON(w, http.StatusOK, nh)
}

func (h *handler) counters(w http.ResponseWriter, r *http.Request) {
	c := h.b.Counters()
	if c.Ports == nil {
		c.Ports = []NamedPortCounters{}
	}
	if c.VSIDs == nil {
		c.VSIDs = []VSIDCounters{}
	}
	if c.Drops == nil {
		c.Drops = []DropCount{}
	}
	if c.Notifications == nil {
		c.Notifications = []NotificationCounters{}
	}
	jsonapi.WriteJSON(w, http.StatusOK, c)
}

// addLookupRecord refuses the read-only diagnostics, which the host sets.
func addLookupRecord(s *policy.Store, r policy.LookupRecord) (policy.LookupRecord, error) {
	if r.Unusable || r.UnusableReason != "" || r.Unsynchronized {
		return r, &policy.Error{Kind: policy.ErrInvalid, Msg: "Unusable, UnusableReason and Unsynchronized are read-only: leave them out"}
	}
	return s.AddLookupRecord(r)
}
