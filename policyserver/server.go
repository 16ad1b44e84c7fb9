package policyserver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/wnv/wnv/bounded"
	"github.com/wnv/wnv/dashboard"
	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// NewHandler serves the HTTP/JSON API of docs/policy-server.md from st
// WITHOUT authentication: every caller is an admin. It is for tests and
// `wnvd policy --insecure-plain-http`; a real server uses NewSecureHandler.
func NewHandler(st *Store, log *slog.Logger) http.Handler { return newHandler(st, log, nil) }

// NewSecureHandler serves the API to callers authenticated by auth (their
// client certificates) and authorized by role (see auth.go).
func NewSecureHandler(st *Store, log *slog.Logger, auth *Auth) http.Handler {
	return newHandler(st, log, auth)
}

func newHandler(st *Store, log *slog.Logger, auth *Auth) http.Handler {
	h := &handler{st: st, log: log, auth: auth, status: newStatusBook(), traces: make(chan struct{}, maxTraces)}
	mux := http.NewServeMux()
	route := func(pattern string, f http.HandlerFunc) { mux.HandleFunc(pattern, h.guard(pattern, f)) }
	create := func(path string, f func(context.Context, *http.Request) (any, error)) {
		route("POST "+path, h.answer(f))
	}
	get := func(path string, f func(context.Context, *http.Request) (any, error)) {
		route("GET "+path, h.answer(f))
	}
	del := func(path string, f func(context.Context, *http.Request) error) {
		route("DELETE "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := f(r.Context(), r); err != nil {
				h.fail(w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}

	create("/v1/tenants", body(st.CreateTenant))
	get("/v1/tenants", list(st.Tenants))
	get("/v1/tenants/{id}", byGUID(st.Tenant))
	del("/v1/tenants/{id}", delGUID(st.DeleteTenant))

	create("/v1/routing-domains", body(st.CreateRoutingDomain))
	get("/v1/routing-domains", list(st.RoutingDomains))
	get("/v1/routing-domains/{id}", byGUID(st.RoutingDomain))
	del("/v1/routing-domains/{id}", delGUID(st.DeleteRoutingDomain))

	create("/v1/subnets", body(st.CreateSubnet))
	get("/v1/subnets", func(ctx context.Context, r *http.Request) (any, error) {
		var q struct {
			RoutingDomainID policy.GUID `json:"routingDomain"`
		}
		if err := jsonapi.DecodeQuery(r.URL.Query(), &q); err != nil {
			return nil, err
		}
		return nonNil(st.Subnets(ctx, q.RoutingDomainID))
	})
	get("/v1/subnets/{vsid}", func(ctx context.Context, r *http.Request) (any, error) {
		v, err := pathVSID(r)
		if err != nil {
			return nil, err
		}
		return st.Subnet(ctx, v)
	})
	del("/v1/subnets/{vsid}", func(ctx context.Context, r *http.Request) error {
		v, err := pathVSID(r)
		if err != nil {
			return err
		}
		return st.DeleteSubnet(ctx, v)
	})

	create("/v1/hosts", body(st.RegisterHost))
	create("/v1/hosts/{name}/heartbeat", byName(st.Heartbeat))
	get("/v1/hosts", list(st.Hosts))
	get("/v1/hosts/{name}", byName(st.Host))
	get("/v1/hosts/{name}/redirect-keys", func(ctx context.Context, r *http.Request) (any, error) {
		return st.RedirectKeys(ctx, r.PathValue("name"))
	})
	del("/v1/hosts/{name}", delName(st.DeleteHost))
	create("/v1/hosts/{name}/learned", func(ctx context.Context, r *http.Request) (any, error) {
		var l policyapi.Learned
		if err := jsonapi.DecodeBody(r.Body, &l); err != nil {
			return nil, err
		}
		return st.ReportLearned(ctx, r.PathValue("name"), l)
	})
	del("/v1/hosts/{name}/learned/{vsid}/{ca}", func(ctx context.Context, r *http.Request) error {
		v, err := pathVSID(r)
		if err != nil {
			return err
		}
		ca, err := netip.ParseAddr(r.PathValue("ca"))
		if err != nil {
			return invalidf("ca %q is not an IP address: use the learned CA, such as 10.0.0.5", r.PathValue("ca"))
		}
		return st.ForgetLearned(ctx, r.PathValue("name"), v, ca)
	})

	create("/v1/vms", body(st.CreateVM))
	get("/v1/vms", func(ctx context.Context, r *http.Request) (any, error) {
		var f policyapi.VMFilter
		if err := jsonapi.DecodeQuery(r.URL.Query(), &f); err != nil {
			return nil, err
		}
		return nonNil(st.VMs(ctx, f))
	})
	get("/v1/vms/{name}", byName(st.VM))
	del("/v1/vms/{name}", delName(st.DeleteVM))
	create("/v1/vms/{name}/migrate", func(ctx context.Context, r *http.Request) (any, error) {
		var m policyapi.Migration
		if err := jsonapi.DecodeBody(r.Body, &m); err != nil {
			return nil, err
		}
		return st.MigrateVM(ctx, r.PathValue("name"), m.Host)
	})

	create("/v1/gateways", body(st.CreateGateway))
	get("/v1/gateways", list(st.Gateways))
	get("/v1/gateways/{name}", byName(st.Gateway))
	del("/v1/gateways/{name}", delName(st.DeleteGateway))

	get("/v1/policy", func(ctx context.Context, r *http.Request) (any, error) {
		var q struct {
			RoutingDomainID policy.GUID `json:"routingDomain"`
		}
		if err := jsonapi.DecodeQuery(r.URL.Query(), &q); err != nil {
			return nil, err
		}
		if q.RoutingDomainID.IsZero() {
			return nil, invalidf("routingDomain is missing: %s", guidUse)
		}
		return st.Policy(ctx, q.RoutingDomainID)
	})
	get("/v1/lookup", func(ctx context.Context, r *http.Request) (any, error) {
		var q struct {
			VSID policy.VSID `json:"vsid"`
			CA   netip.Addr  `json:"ca"`
		}
		if err := jsonapi.DecodeQuery(r.URL.Query(), &q); err != nil {
			return nil, err
		}
		if err := checkVSID(q.VSID); err != nil {
			return nil, err
		}
		if !q.CA.IsValid() {
			return nil, invalidf("ca is missing: use an IPv4 or IPv6 address such as 10.0.0.5")
		}
		return st.Lookup(ctx, q.VSID, q.CA)
	})
	route("GET /v1/watch", h.watch)
	h.statusRoutes(route)
	h.traceRoute(route)
	h.pkiRoutes(route)
	// The dashboard's page and script are public (they hold no data) and
	// its login checks the token it is given; everything it shows it reads
	// through the routes above, as the observer it logged in as.
	var session dashboard.Session
	if auth != nil {
		session = func(ctx context.Context, token string) (time.Time, error) {
			id, err := auth.AuthenticateToken(ctx, token)
			return id.NotAfter, err
		}
	}
	mux.Handle(dashboard.Path, dashboard.New(SessionCookie, session, auth != nil))
	mux.Handle("GET /{$}", http.RedirectHandler(dashboard.Path, http.StatusFound))
	route("/", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.WriteError(w, notFoundf("%s %s is not an API route: see docs/policy-server.md", r.Method, r.URL.Path))
	})
	return mux
}

type handler struct {
	st   *Store
	log  *slog.Logger
	auth *Auth // nil: no authentication, every caller is an admin
	// status is the hosts' health reports (status.go).
	status *statusBook
	// traces holds a slot per trace running (trace.go).
	traces chan struct{}
}

func (h *handler) answer(f func(context.Context, *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r.Context(), r)
		if err == nil {
			v, err = authzOf(r.Context()).visible(r.Context(), r, v)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		status := http.StatusOK
		if r.Method == http.MethodPost && !strings.HasSuffix(r.URL.Path, "/heartbeat") && !strings.HasSuffix(r.URL.Path, "/migrate") {
			status = http.StatusCreated
		}
		jsonapi.WriteJSON(w, status, v)
	}
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := jsonapi.Status(err)
	// A full store is logged once, by Maintenance, not per refused write.
	if status >= 500 && status != http.StatusInsufficientStorage {
		h.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	jsonapi.WriteError(w, err)
}

func body[T any](f func(context.Context, T) (T, error)) func(context.Context, *http.Request) (any, error) {
	return func(ctx context.Context, r *http.Request) (any, error) {
		var v T
		if err := jsonapi.DecodeBody(r.Body, &v); err != nil {
			return nil, err
		}
		return f(ctx, v)
	}
}

func list[T any](f func(context.Context) ([]T, error)) func(context.Context, *http.Request) (any, error) {
	return func(ctx context.Context, _ *http.Request) (any, error) { return nonNil(f(ctx)) }
}

func nonNil[T any](v []T, err error) (any, error) {
	if v == nil {
		v = []T{}
	}
	return v, err
}

func byName[T any](f func(context.Context, string) (T, error)) func(context.Context, *http.Request) (any, error) {
	return func(ctx context.Context, r *http.Request) (any, error) { return f(ctx, r.PathValue("name")) }
}

func delName(f func(context.Context, string) error) func(context.Context, *http.Request) error {
	return func(ctx context.Context, r *http.Request) error { return f(ctx, r.PathValue("name")) }
}

func pathGUID(r *http.Request) (policy.GUID, error) {
	g, err := policy.ParseGUID(r.PathValue("id"))
	if err != nil {
		return g, invalidf("path GUID %q is malformed: %s", r.PathValue("id"), guidUse)
	}
	return g, nil
}

func byGUID[T any](f func(context.Context, policy.GUID) (T, error)) func(context.Context, *http.Request) (any, error) {
	return func(ctx context.Context, r *http.Request) (any, error) {
		g, err := pathGUID(r)
		if err != nil {
			return nil, err
		}
		return f(ctx, g)
	}
}

func delGUID(f func(context.Context, policy.GUID) error) func(context.Context, *http.Request) error {
	return func(ctx context.Context, r *http.Request) error {
		g, err := pathGUID(r)
		if err != nil {
			return err
		}
		return f(ctx, g)
	}
}

func pathVSID(r *http.Request) (policy.VSID, error) {
	n, err := strconv.ParseUint(r.PathValue("vsid"), 10, 32)
	if err != nil {
		return 0, invalidf("path VirtualSubnetID %q is malformed: use %d..%d", r.PathValue("vsid"), policy.MinVSID, policy.MaxVSID)
	}
	return policy.VSID(n), nil
}

func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	var q struct {
		Rev  int64  `json:"rev"`
		Host string `json:"host"`
	}
	qs := r.URL.Query()
	rdTexts := qs["routingDomain"]
	delete(qs, "routingDomain")
	if err := jsonapi.DecodeQuery(qs, &q); err != nil {
		h.fail(w, r, err)
		return
	}
	rds := make([]policy.GUID, len(rdTexts))
	for i, t := range rdTexts {
		g, err := policy.ParseGUID(t)
		if err != nil {
			h.fail(w, r, invalidf("routingDomain %q is malformed: %s", t, guidUse))
			return
		}
		rds[i] = g
	}
	admit, err := authzOf(r.Context()).watchFilter(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	beforeWrite := bounded.Streaming(w, r)
	started := false
	// A browser's EventSource asks for server-sent events: the same
	// events, each line framed as an SSE message.
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	err = h.st.Watch(r.Context(), clientOf(r), q.Rev, rds, q.Host, func(ev *policyapi.Event, line []byte) error {
		if admit != nil {
			if ok, err := admit(ev); !ok {
				return err
			}
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			if sse {
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Cache-Control", "no-store")
			}
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := beforeWrite(); err != nil {
			return err
		}
		if sse {
			line = append(append([]byte("data: "), bytes.TrimRight(line, "\n")...), '\n', '\n')
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		return rc.Flush()
	})
	switch {
	case !started && err != nil:
		h.fail(w, r, err)
	case err != nil && !errors.Is(err, ErrCompacted) && r.Context().Err() == nil:
		h.log.Info("watch stream ended", "err", err)
	}
}
