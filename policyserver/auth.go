package policyserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// Authorization of the policy server's API: who may call which route. It
// all lives in this file: the table `access` maps each route to what each
// role may do there, `visible` filters what a tenant or host reads, and
// `watchFilter` what its watch stream carries. Authentication (the client
// certificate and revocations) is in credentials.go.
//
// Admins may do everything. Observers may read (GET, watch) everything but
// redirect keys. A tenant reads and changes only its own tenant's objects.
// A host registers and heartbeats only itself, with the PAs of its
// certificate, reports the CAs it learned on its own L2Only VMs' ports, and
// reads only the routing domains its VMs and gateways are (or just were)
// in; it writes nothing else.

// check decides whether the caller of z may make request r; nil allows.
type check func(ctx context.Context, z *authz, r *http.Request) error

// rule is what non-admins may do on one route. Admins may do everything.
type rule struct {
	// what the route does, for refusals: "create tenants".
	what     string
	observer bool
	// tenant and host are the checks of those roles; nil refuses the role.
	tenant, host check
}

// allow lets the role through; reads are then filtered by visible.
func allow(context.Context, *authz, *http.Request) error { return nil }

// access is the authorization table: every route of NewHandler must be in
// it (NewHandler panics otherwise).
var access = map[string]rule{
	"POST /v1/tenants":                {what: "create tenants"},
	"GET /v1/tenants":                 {what: "list tenants", observer: true, tenant: allow, host: allow},
	"GET /v1/tenants/{id}":            {what: "read tenants", observer: true, tenant: allow, host: allow},
	"DELETE /v1/tenants/{id}":         {what: "delete tenants"},
	"POST /v1/routing-domains":        {what: "create routing domains", tenant: tenantBody("CustomerID", (*authz).ownCID)},
	"GET /v1/routing-domains":         {what: "list routing domains", observer: true, tenant: allow, host: allow},
	"GET /v1/routing-domains/{id}":    {what: "read routing domains", observer: true, tenant: allow, host: allow},
	"DELETE /v1/routing-domains/{id}": {what: "delete routing domains", tenant: pathGUIDCheck((*authz).ownRD)},
	"POST /v1/subnets":                {what: "create subnets", tenant: tenantBody("RoutingDomainID", (*authz).ownRD)},
	"GET /v1/subnets":                 {what: "list subnets", observer: true, tenant: allow, host: allow},
	"GET /v1/subnets/{vsid}":          {what: "read subnets", observer: true, tenant: allow, host: allow},
	"DELETE /v1/subnets/{vsid}":       {what: "delete subnets", tenant: pathVSIDCheck((*authz).ownVSID)},

	"POST /v1/hosts":                     {what: "register hosts", host: registerSelf},
	"POST /v1/hosts/{name}/heartbeat":    {what: "heartbeat hosts", host: pathSelf},
	"GET /v1/hosts":                      {what: "list hosts", observer: true, host: allow},
	"GET /v1/hosts/{name}":               {what: "read hosts", observer: true, host: allow},
	"DELETE /v1/hosts/{name}":            {what: "delete hosts"},
	"GET /v1/hosts/{name}/redirect-keys": {what: "read redirect keys", host: pathSelf},
	// What a host learned on its own ports (the store checks they are its
	// VMs' and its PAs).
	"POST /v1/hosts/{name}/learned":               {what: "report learned CAs", host: pathSelf},
	"DELETE /v1/hosts/{name}/learned/{vsid}/{ca}": {what: "forget learned CAs", host: pathSelf},
	// Host health (status.go): telemetry each host reports of itself.
	"POST /v1/hosts/{name}/status": {what: "report host status", host: pathSelf},
	"GET /v1/status":               {what: "read host health", observer: true},
	"GET /v1/status/stream":        {what: "follow host health and drops", observer: true},
	// Observers may run dry traces; trace.go refuses them a live probe.
	"POST /v1/trace": {what: "run traces", observer: true},

	"POST /v1/vms":                {what: "create VMs", tenant: tenantBody("VirtualSubnetID", (*authz).ownVSID)},
	"GET /v1/vms":                 {what: "list VMs", observer: true, tenant: allow, host: allow},
	"GET /v1/vms/{name}":          {what: "read VMs", observer: true, tenant: allow, host: allow},
	"DELETE /v1/vms/{name}":       {what: "delete VMs", tenant: pathName((*authz).ownVM)},
	"POST /v1/vms/{name}/migrate": {what: "migrate VMs", tenant: pathName((*authz).ownVM)},

	"POST /v1/gateways":          {what: "create gateways", tenant: tenantGateway},
	"GET /v1/gateways":           {what: "list gateways", observer: true, tenant: allow, host: allow},
	"GET /v1/gateways/{name}":    {what: "read gateways", observer: true, tenant: allow, host: allow},
	"DELETE /v1/gateways/{name}": {what: "delete gateways", tenant: pathName((*authz).ownGateway)},

	"GET /v1/policy": {what: "read the policy of routing domains", observer: true,
		tenant: queryGUIDs("routingDomain", (*authz).ownRD), host: queryGUIDs("routingDomain", (*authz).seesRD)},
	"GET /v1/lookup": {what: "look up customer addresses", observer: true,
		tenant: queryVSIDs("vsid", (*authz).ownVSID), host: queryVSIDs("vsid", (*authz).seesVSID)},
	"GET /v1/watch": {what: "watch", observer: true,
		tenant: queryGUIDs("routingDomain", (*authz).ownRD), host: hostWatch},

	"POST /v1/pki/credentials": {what: "issue credentials"},
	"GET /v1/pki/credentials":  {what: "list credentials", observer: true},
	"POST /v1/pki/revocations": {what: "revoke credentials"},
	"GET /v1/pki/whoami":       {what: "ask who they are", observer: true, tenant: allow, host: allow},
	"/":                        {what: "use unknown routes", observer: true, tenant: allow, host: allow},
}

// roleSays is what each role may do, for refusals.
var roleSays = map[pki.Role]string{
	pki.Observer: "observers only read",
	pki.Tenant:   "tenants manage only their own routing domains, subnets, VMs and gateways",
	pki.Host:     "hosts only register and heartbeat themselves and read the policy of their VMs",
}

// authz is one authorized request's caller and what it may see, computed
// on first use.
type authz struct {
	id   pki.Identity
	st   *Store
	auth *Auth       // nil: no authentication
	cid  policy.GUID // a tenant's CustomerID

	// A host's routing domains (of its VMs and gateways) and tenants.
	loaded  bool
	rds     map[policy.GUID]bool
	tenants map[policy.GUID]bool
	loadErr error
}

type authzKey struct{}

func authzOf(ctx context.Context) *authz {
	z, _ := ctx.Value(authzKey{}).(*authz)
	return z
}

// authorize decides request r on route pattern for identity id.
func authorize(ctx context.Context, st *Store, id pki.Identity, pattern string, r *http.Request) (*authz, error) {
	rl := access[pattern]
	z := &authz{id: id, st: st}
	var c check
	switch id.Role {
	case pki.Admin:
		return z, nil
	case pki.Observer:
		if rl.observer {
			c = allow
		}
	case pki.Tenant:
		g, err := policy.ParseGUID(id.Name)
		if err != nil {
			return nil, z.forbidden(r, rl.what, "its certificate names no CustomerID")
		}
		z.cid, c = g, rl.tenant
	case pki.Host:
		c = rl.host
	}
	if c == nil {
		return nil, z.forbidden(r, rl.what, roleSays[id.Role])
	}
	if err := c(ctx, z, r); err != nil {
		return nil, err
	}
	return z, nil
}

// forbidden is the one-line 403 naming the caller, its role and what was
// refused.
func (z *authz) forbidden(r *http.Request, what, why string) error {
	return &policy.Error{Kind: policy.ErrForbidden, Msg: fmt.Sprintf("%s may not %s (%s %s): %s",
		z.who(), what, r.Method, r.URL.Path, why)}
}

func (z *authz) refuse(format string, a ...any) error {
	return &policy.Error{Kind: policy.ErrForbidden, Msg: z.who() + " refused: " + fmt.Sprintf(format, a...)}
}

// who names the caller in refusals: "host1" (role host), or for a tenant
// "{CustomerID}" (Red, role tenant).
func (z *authz) who() string {
	if z.id.DisplayName != "" {
		return fmt.Sprintf("%q (%s, role %s)", z.id.Name, z.id.DisplayName, z.id.Role)
	}
	return fmt.Sprintf("%q (role %s)", z.id.Name, z.id.Role)
}

// Tenant scope.

func (z *authz) ownCID(_ context.Context, cid policy.GUID) error {
	if cid != z.cid {
		return z.refuse("tenant %s is not its tenant", cid)
	}
	return nil
}

func (z *authz) ownRD(ctx context.Context, rd policy.GUID) error {
	got, err := z.st.RoutingDomain(ctx, rd)
	if err != nil {
		return err
	}
	if got.CustomerID != z.cid {
		return z.refuse("routing domain %s belongs to another tenant", rd)
	}
	return nil
}

func (z *authz) ownVSID(ctx context.Context, v policy.VSID) error {
	s, err := z.st.Subnet(ctx, v)
	if err != nil {
		return err
	}
	if s.CustomerID != z.cid {
		return z.refuse("virtual subnet %d belongs to another tenant", v)
	}
	return nil
}

func (z *authz) ownVM(ctx context.Context, name string) error {
	vm, err := z.st.VM(ctx, name)
	if err != nil {
		return err
	}
	if vm.CustomerID != z.cid {
		return z.refuse("VM %s belongs to another tenant", name)
	}
	return nil
}

func (z *authz) ownGateway(ctx context.Context, name string) error {
	g, err := z.st.Gateway(ctx, name)
	if err != nil {
		return err
	}
	if g.CustomerID != z.cid {
		return z.refuse("gateway %s belongs to another tenant", name)
	}
	return nil
}

// Host scope.

// load reads the routing domains and tenants of the host's VMs and
// gateways.
func (z *authz) load(ctx context.Context) error {
	if z.loaded {
		return z.loadErr
	}
	z.loaded = true
	z.rds, z.tenants = map[policy.GUID]bool{}, map[policy.GUID]bool{}
	vms, err := z.st.VMs(ctx, policyapi.VMFilter{Host: z.id.Name})
	if err != nil {
		z.loadErr = err
		return err
	}
	for _, vm := range vms {
		z.rds[vm.RoutingDomainID], z.tenants[vm.CustomerID] = true, true
	}
	prefix := hostMembers(z.id.Name) + "gateway/"
	ms, _, err := z.st.rangeOf(ctx, prefix, 0)
	if err != nil {
		z.loadErr = err
		return err
	}
	for _, m := range ms {
		g, err := z.st.Gateway(ctx, memberName(m.key, prefix))
		if errors.Is(err, policy.ErrNotFound) {
			continue
		}
		if err != nil {
			z.loadErr = err
			return err
		}
		z.rds[g.RoutingDomainID], z.tenants[g.CustomerID] = true, true
	}
	return nil
}

// seesRD: a host sees a routing domain one of its VMs or gateways is in, or
// one a VM just migrated away from it is in (it forwards for a grace
// period).
func (z *authz) seesRD(ctx context.Context, rd policy.GUID) error {
	if err := z.load(ctx); err != nil {
		return err
	}
	if z.rds[rd] {
		return nil
	}
	vms, err := z.st.VMs(ctx, policyapi.VMFilter{RoutingDomainID: rd})
	if err != nil {
		return err
	}
	if slices.ContainsFunc(vms, func(vm policyapi.VM) bool { return vm.PreviousHost == z.id.Name }) {
		z.rds[rd] = true
		return nil
	}
	return z.refuse("no VM or gateway of routing domain %s is on this host", rd)
}

func (z *authz) seesVSID(ctx context.Context, v policy.VSID) error {
	s, err := z.st.Subnet(ctx, v)
	if err != nil {
		return err
	}
	return z.seesRD(ctx, s.RoutingDomainID)
}

// registerSelf: a host registers only itself, only with PAs its
// certificate names.
func registerSelf(_ context.Context, z *authz, r *http.Request) error {
	var name string
	if err := bodyField(r, "Name", &name); err != nil {
		return err
	}
	if name != z.id.Name {
		return z.refuse("may register only itself, not host %q", name)
	}
	var pas []netip.Addr
	if err := bodyField(r, "ProviderAddresses", &pas); err != nil {
		return err
	}
	for _, pa := range pas {
		if !slices.Contains(z.id.ProviderAddresses, pa.Unmap()) {
			return z.refuse("provider address %v is not in its certificate (%v)", pa, z.id.ProviderAddresses)
		}
	}
	return nil
}

func pathSelf(_ context.Context, z *authz, r *http.Request) error {
	if n := r.PathValue("name"); n != z.id.Name {
		return z.refuse("may act only for itself, not host %q (%s %s)", n, r.Method, r.URL.Path)
	}
	return nil
}

// Check builders reading the request.

func pathName(f func(*authz, context.Context, string) error) check {
	return func(ctx context.Context, z *authz, r *http.Request) error { return f(z, ctx, r.PathValue("name")) }
}

func pathGUIDCheck(f func(*authz, context.Context, policy.GUID) error) check {
	return func(ctx context.Context, z *authz, r *http.Request) error {
		g, err := pathGUID(r)
		if err != nil {
			return err
		}
		return f(z, ctx, g)
	}
}

func pathVSIDCheck(f func(*authz, context.Context, policy.VSID) error) check {
	return func(ctx context.Context, z *authz, r *http.Request) error {
		v, err := pathVSID(r)
		if err != nil {
			return err
		}
		return f(z, ctx, v)
	}
}

// queryGUIDs checks every value of a query parameter (the handler uses the
// last; a watch uses all).
func queryGUIDs(param string, f func(*authz, context.Context, policy.GUID) error) check {
	return func(ctx context.Context, z *authz, r *http.Request) error {
		for _, t := range r.URL.Query()[param] {
			g, err := policy.ParseGUID(t)
			if err != nil {
				return invalidf("%s %q is malformed: %s", param, t, guidUse)
			}
			if err := f(z, ctx, g); err != nil {
				return err
			}
		}
		return nil
	}
}

// hostWatch lets a host watch the routing domains it sees and, with
// host=NAME, the VMs placed on or taken from itself only.
func hostWatch(ctx context.Context, z *authz, r *http.Request) error {
	if h := r.URL.Query().Get("host"); h != "" && h != z.id.Name {
		return z.refuse("a host watches the VMs of its own host only, not %q", h)
	}
	return queryGUIDs("routingDomain", (*authz).seesRD)(ctx, z, r)
}

func queryVSIDs(param string, f func(*authz, context.Context, policy.VSID) error) check {
	return func(ctx context.Context, z *authz, r *http.Request) error {
		for _, t := range r.URL.Query()[param] {
			n, err := strconv.ParseUint(t, 10, 32)
			if err != nil {
				return invalidf("%s %q is malformed: use %d..%d", param, t, policy.MinVSID, policy.MaxVSID)
			}
			if err := f(z, ctx, policy.VSID(n)); err != nil {
				return err
			}
		}
		return nil
	}
}

// tenantBody checks one field of the request body; the body is kept for
// the handler.
func tenantBody[T any](field string, f func(*authz, context.Context, T) error) check {
	return func(ctx context.Context, z *authz, r *http.Request) error {
		var v T
		if err := bodyField(r, field, &v); err != nil {
			return err
		}
		return f(z, ctx, v)
	}
}

// tenantGateway lets a tenant create a gateway VM of its own in its own
// subnet, never an edge gateway: that joins a host's physical network,
// which only an admin grants.
func tenantGateway(ctx context.Context, z *authz, r *http.Request) error {
	var obj map[string]json.RawMessage
	if err := bodyField(r, "VirtualSubnetID", new(json.RawMessage)); err != nil {
		return err
	}
	data, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(data))
	if json.Unmarshal(data, &obj) == nil {
		if m, ok := obj["Mode"]; ok && string(m) != `""` && string(m) != "null" {
			return z.refuse("an edge gateway (Mode %s) joins a host's physical network, which only an admin provisions: create a gateway without Mode", m)
		}
	}
	return tenantBody("VirtualSubnetID", (*authz).ownVSID)(ctx, z, r)
}

// bodyField reads field (its exact name, as decodeBody does) from the JSON
// object body of r into dst and puts the body back for the handler. A
// missing or malformed field is refused here: what cannot be read cannot
// be authorized.
func bodyField(r *http.Request, field string, dst any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, jsonapi.MaxBody+1))
	if err != nil {
		return invalidf("request body could not be read: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return invalidf("request body is not a JSON object: send one object")
	}
	raw, ok := obj[field]
	if !ok {
		return invalidf("%s is missing", field)
	}
	return jsonapi.DecodeValue(field, raw, dst)
}

// visible filters what a tenant or host reads: lists keep what it may see;
// a single object it may not see is refused.
func (z *authz) visible(ctx context.Context, r *http.Request, v any) (any, error) {
	if z == nil || z.id.Role == pki.Admin || z.id.Role == pki.Observer {
		return v, nil
	}
	if z.id.Role == pki.Host {
		if err := z.load(ctx); err != nil {
			return nil, err
		}
	}
	one := func(ok bool, what string) (any, error) {
		switch {
		case ok:
			return v, nil
		case z.id.Role == pki.Host:
			// Not found for this host: its agent takes a VM that left its
			// routing domains for gone, and existence is not confirmed.
			return nil, notFoundf("%s is not on host %s nor in a routing domain of its VMs or gateways", what, z.id.Name)
		}
		return nil, z.forbidden(r, "read "+what, "it belongs to another tenant")
	}
	switch x := v.(type) {
	case []policyapi.Tenant:
		return keep(x, func(t policyapi.Tenant) bool { return z.seesTenant(t.CustomerID) }), nil
	case policyapi.Tenant:
		return one(z.seesTenant(x.CustomerID), "tenant "+x.CustomerID.String())
	case []policyapi.RoutingDomain:
		return keep(x, func(rd policyapi.RoutingDomain) bool { return z.seesObject(rd.CustomerID, rd.RoutingDomainID) }), nil
	case policyapi.RoutingDomain:
		return one(z.seesObject(x.CustomerID, x.RoutingDomainID), "routing domain "+x.RoutingDomainID.String())
	case []policyapi.Subnet:
		return keep(x, func(s policyapi.Subnet) bool { return z.seesObject(s.CustomerID, s.RoutingDomainID) }), nil
	case policyapi.Subnet:
		return one(z.seesObject(x.CustomerID, x.RoutingDomainID), fmt.Sprintf("subnet %d", x.VirtualSubnetID))
	case []policyapi.VM:
		return keep(x, z.seesVM), nil
	case policyapi.VM:
		return one(z.seesVM(x), "VM "+x.Name)
	case []policyapi.Gateway:
		return keep(x, func(g policyapi.Gateway) bool {
			return z.seesObject(g.CustomerID, g.RoutingDomainID) || g.Host == z.id.Name
		}), nil
	case policyapi.Gateway:
		return one(z.seesObject(x.CustomerID, x.RoutingDomainID) || x.Host == z.id.Name, "gateway "+x.Name)
	case []policyapi.Host, policyapi.Host:
		if z.id.Role == pki.Host {
			return v, nil
		}
	case policyapi.Policy, policyapi.LookupAnswer, []policyapi.RedirectKey, policyapi.Credential, policyapi.Learned:
		return v, nil // checked before the read
	}
	return nil, z.forbidden(r, "read this", fmt.Sprintf("no rule lets role %s read %T", z.id.Role, v))
}

func keep[T any](xs []T, ok func(T) bool) []T {
	out := make([]T, 0, len(xs))
	for _, x := range xs {
		if ok(x) {
			out = append(out, x)
		}
	}
	return out
}

func (z *authz) seesTenant(cid policy.GUID) bool {
	if z.id.Role == pki.Tenant {
		return cid == z.cid
	}
	return z.tenants[cid]
}

func (z *authz) seesObject(cid, rd policy.GUID) bool {
	if z.id.Role == pki.Tenant {
		return cid == z.cid
	}
	return z.rds[rd]
}

func (z *authz) seesVM(vm policyapi.VM) bool {
	if z.id.Role == pki.Tenant {
		return vm.CustomerID == z.cid
	}
	return z.rds[vm.RoutingDomainID] || vm.Host == z.id.Name || vm.PreviousHost == z.id.Name
}

// watchFilter returns which events of a watch stream the caller gets (nil:
// all); an error ends the stream: its credential was revoked or expired
// since it opened. A host's set of routing domains grows as VMs are placed
// on it during the stream.
func (z *authz) watchFilter(ctx context.Context) (func(*policyapi.Event) (bool, error), error) {
	if z == nil || z.auth == nil {
		return nil, nil
	}
	var admit func(*policyapi.Event) bool
	switch z.id.Role {
	case pki.Tenant:
		admit = func(ev *policyapi.Event) bool { return admitTenant(z.cid, ev) }
	case pki.Host:
		if err := z.load(ctx); err != nil {
			return nil, err
		}
		rds, tenants := maps2(z.rds), maps2(z.tenants)
		admit = func(ev *policyapi.Event) bool { return admitHost(z.id.Name, rds, tenants, ev) }
	}
	return func(ev *policyapi.Event) (bool, error) {
		if err := z.auth.stillValid(z.id); err != nil {
			return false, err
		}
		return admit == nil || admit(ev), nil
	}, nil
}

func maps2(m map[policy.GUID]bool) map[policy.GUID]bool {
	out := make(map[policy.GUID]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// admitTenant passes the events of the tenant's own objects; hosts and
// their liveness are not a tenant's business.
func admitTenant(cid policy.GUID, ev *policyapi.Event) bool {
	switch ev.Type {
	case policyapi.EventProgress, policyapi.EventResync:
		return true
	}
	return eventCID(ev) == cid
}

// admitHost passes hosts' and liveness events, and those of the routing
// domains (and tenants) of the host's VMs and gateways, learning new ones
// as VMs are placed on it.
func admitHost(name string, rds, tenants map[policy.GUID]bool, ev *policyapi.Event) bool {
	switch ev.Type {
	case policyapi.EventProgress, policyapi.EventResync:
		return true
	}
	switch ev.Kind {
	case policyapi.KindHost, policyapi.KindLiveness:
		return true
	case policyapi.KindTenant:
		return tenants[eventCID(ev)]
	}
	mine := (ev.VM != nil && ev.VM.Host == name) || (ev.PrevVM != nil && ev.PrevVM.Host == name) ||
		(ev.Gateway != nil && ev.Gateway.Host == name) || (ev.PrevGateway != nil && ev.PrevGateway.Host == name)
	if mine {
		rds[ev.RoutingDomainID], tenants[eventCID(ev)] = true, true
	}
	return mine || rds[ev.RoutingDomainID]
}

// eventCID is the tenant of an event's object.
func eventCID(ev *policyapi.Event) policy.GUID {
	switch {
	case ev.Tenant != nil:
		return ev.Tenant.CustomerID
	case ev.PrevTenant != nil:
		return ev.PrevTenant.CustomerID
	case ev.RoutingDomain != nil:
		return ev.RoutingDomain.CustomerID
	case ev.PrevRoutingDomain != nil:
		return ev.PrevRoutingDomain.CustomerID
	case ev.Subnet != nil:
		return ev.Subnet.CustomerID
	case ev.PrevSubnet != nil:
		return ev.PrevSubnet.CustomerID
	case ev.VM != nil:
		return ev.VM.CustomerID
	case ev.PrevVM != nil:
		return ev.PrevVM.CustomerID
	case ev.Gateway != nil:
		return ev.Gateway.CustomerID
	case ev.PrevGateway != nil:
		return ev.PrevGateway.CustomerID
	case ev.Learned != nil:
		return ev.Learned.CustomerID
	case ev.PrevLearned != nil:
		return ev.PrevLearned.CustomerID
	}
	return policy.GUID{}
}
