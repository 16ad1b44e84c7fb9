package policyserver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// Authentication: every request of a secure server carries a client
// certificate signed by the server's CA, not expired and not revoked. The
// issued credentials and the revocations are kept in etcd outside Prefix, so
// that no watch event or GET of the policy API carries them:
//
//	/wnv/pki/credentials/<serial>   policyapi.Credential
//	/wnv/pki/revoked/<serial>       RFC 3339 time of the revocation
const (
	pkiPrefix     = "/wnv/pki/"
	credsPrefix   = pkiPrefix + "credentials/"
	revokedPrefix = pkiPrefix + "revoked/"
)

// Auth authenticates the callers of a secure policy server and issues and
// revokes credentials with its CA. Revocations are cached in memory and
// followed with an etcd watch, so every replica refuses a revoked
// credential on its next request.
type Auth struct {
	pki   *pki.ServerPKI
	roots *x509.CertPool
	st    *Store
	log   *slog.Logger
	now   func() time.Time

	mu      sync.RWMutex
	revoked map[string]bool

	// hostAPI holds, per role, the credential the server reaches hosts'
	// provider APIs with (hostAPITLS).
	hostAPIMu sync.Mutex
	hostAPI   map[pki.Role]hostAPICred
}

// NewAuth loads the revocations and follows them until ctx ends; it records
// the local admin credential of p as issued.
func NewAuth(ctx context.Context, st *Store, p *pki.ServerPKI, log *slog.Logger) (*Auth, error) {
	a := &Auth{pki: p, roots: p.Pool(), st: st, log: log, now: time.Now, revoked: map[string]bool{}}
	rev, err := a.loadRevoked(ctx)
	if err != nil {
		return nil, err
	}
	if p.Admin != nil {
		if err := a.record(ctx, credentialOf(p.Admin, a.now())); err != nil {
			return nil, err
		}
	}
	go a.followRevoked(ctx, rev)
	return a, nil
}

func (a *Auth) loadRevoked(ctx context.Context) (int64, error) {
	resp, err := a.st.cli.Get(ctx, revokedPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, etcdError(err)
	}
	a.mu.Lock()
	for _, kv := range resp.Kvs {
		a.revoked[strings.TrimPrefix(string(kv.Key), revokedPrefix)] = true
	}
	a.mu.Unlock()
	return resp.Header.Revision, nil
}

// followRevoked watches the revocations; after a broken or compacted watch
// it reloads them.
func (a *Auth) followRevoked(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		for wr := range a.st.cli.Watch(clientv3.WithRequireLeader(ctx), revokedPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			a.mu.Lock()
			for _, e := range wr.Events {
				a.revoked[strings.TrimPrefix(string(e.Kv.Key), revokedPrefix)] = true
			}
			a.mu.Unlock()
			rev = wr.Header.Revision
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if r, err := a.loadRevoked(ctx); err == nil {
			rev = r
		} else {
			a.log.Warn("reload revocations", "err", err)
		}
	}
}

func (a *Auth) isRevoked(serial string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.revoked[serial]
}

func unauthenticated(format string, args ...any) error {
	return &policy.Error{Kind: policy.ErrUnauthenticated, Msg: fmt.Sprintf(format, args...)}
}

// authenticate returns the identity of r's client certificate.
func (a *Auth) authenticate(r *http.Request) (pki.Identity, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		if t := bearer(r); t != "" {
			return a.AuthenticateToken(r.Context(), t)
		}
		return pki.Identity{}, unauthenticated("anonymous request refused: %s %s needs a client certificate issued by this policy server's CA (wnvctl --credentials DIR; wnvd host --policy-credentials DIR), or an observer token", r.Method, r.URL.Path)
	}
	id, err := pki.Verify(r.TLS.PeerCertificates, a.roots, a.now())
	if err != nil {
		return id, unauthenticated("credential refused: %v", err)
	}
	return id, a.stillValid(id)
}

// stillValid checks what can change during a long request (a watch): the
// credential's revocation and expiry.
func (a *Auth) stillValid(id pki.Identity) error {
	if a.isRevoked(id.Serial) {
		return unauthenticated("credential of %s (serial %s) is revoked: ask an admin for a new one", id, id.Serial)
	}
	if a.now().After(id.NotAfter) {
		return unauthenticated("credential of %s (serial %s) expired at %s: ask an admin for a new one", id, id.Serial, id.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func credentialOf(c *x509.Certificate, now time.Time) policyapi.Credential {
	id, _ := pki.IdentityOf(c)
	return policyapi.Credential{Serial: id.Serial, Role: string(id.Role), Name: id.Name, DisplayName: id.DisplayName,
		ProviderAddresses: id.ProviderAddresses, IssuedAt: now.UTC(), NotAfter: c.NotAfter.UTC(), Kind: "certificate"}
}

// record keeps an issued credential (once).
func (a *Auth) record(ctx context.Context, c policyapi.Credential) error {
	k := credsPrefix + c.Serial
	_, err := a.st.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, encode(c))).Commit()
	if err != nil {
		return etcdError(err)
	}
	return nil
}

// Credentials lists the issued credentials, revoked ones marked.
func (a *Auth) Credentials(ctx context.Context) ([]policyapi.Credential, error) {
	kvs, _, err := a.st.rangeOf(ctx, credsPrefix, 0)
	if err != nil {
		return nil, err
	}
	cs, err := listOf[policyapi.Credential](kvs)
	slices.SortFunc(cs, func(x, y policyapi.Credential) int { return x.IssuedAt.Compare(y.IssuedAt) })
	return cs, err
}

// Issue signs a credential as req asks: a tenant's is named by its
// CustomerID (req.Name may be the tenant's name), a host's lists the PAs
// it may register.
func (a *Auth) Issue(ctx context.Context, req policyapi.IssueRequest) (policyapi.IssuedCredential, error) {
	role, err := pki.ParseRole(req.Role)
	if err != nil {
		return policyapi.IssuedCredential{}, invalidf("Role: %v", err)
	}
	if req.Token {
		return a.issueToken(ctx, role, req)
	}
	pr := pki.Request{Role: role, Name: req.Name, ProviderAddresses: req.ProviderAddresses, Validity: time.Duration(req.ValidityHours) * time.Hour}
	if role == pki.Tenant {
		t, err := a.tenantNamed(ctx, req.Name)
		if err != nil {
			return policyapi.IssuedCredential{}, err
		}
		pr.Name, pr.DisplayName = t.CustomerID.String(), t.Name
	}
	if err := pr.Check(); err != nil {
		return policyapi.IssuedCredential{}, invalidf("%v", err)
	}
	out := policyapi.IssuedCredential{CA: string(a.pki.CA.PEM)}
	var cert *x509.Certificate
	if req.CSR != "" {
		var certPEM []byte
		if cert, certPEM, err = a.pki.CA.IssueCSR(pr, []byte(req.CSR), a.now()); err != nil {
			return out, invalidf("CSR: %v", err)
		}
		out.Certificate = string(certPEM)
	} else {
		var certPEM, keyPEM []byte
		if cert, certPEM, keyPEM, err = a.pki.CA.IssueKey(pr, a.now()); err != nil {
			return out, err
		}
		out.Certificate, out.Key = string(certPEM), string(keyPEM)
	}
	out.Credential = credentialOf(cert, a.now())
	if err := a.record(ctx, out.Credential); err != nil {
		return policyapi.IssuedCredential{}, err
	}
	a.log.Info("credential issued", "role", role, "name", out.Credential.Name, "serial", out.Credential.Serial)
	return out, nil
}

// tenantNamed finds a tenant by CustomerID or by its (unique) name.
func (a *Auth) tenantNamed(ctx context.Context, name string) (policyapi.Tenant, error) {
	if g, err := policy.ParseGUID(name); err == nil {
		return a.st.Tenant(ctx, g)
	}
	ts, err := a.st.Tenants(ctx)
	if err != nil {
		return policyapi.Tenant{}, err
	}
	var found []policyapi.Tenant
	for _, t := range ts {
		if strings.EqualFold(t.Name, name) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return policyapi.Tenant{}, notFoundf("no tenant is named %q: give its name or CustomerID", name)
	case 1:
		return found[0], nil
	}
	return policyapi.Tenant{}, existsf("%d tenants are named %q: give the CustomerID", len(found), name)
}

// Revoke revokes the credential with r.Serial, or every unrevoked one whose
// name (or tenant name) is r.Name, and returns them.
func (a *Auth) Revoke(ctx context.Context, r policyapi.Revocation) ([]policyapi.Credential, error) {
	if (r.Serial == "") == (r.Name == "") {
		return nil, invalidf("give exactly one of Serial and Name")
	}
	all, err := a.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	var out []policyapi.Credential
	now := a.now().UTC()
	for _, c := range all {
		match := c.Serial == strings.ToLower(strings.TrimPrefix(r.Serial, "0x"))
		if r.Name != "" && !c.Revoked {
			match = c.Name == r.Name || strings.EqualFold(c.DisplayName, r.Name)
			if g, err := policy.ParseGUID(r.Name); err == nil && c.Name == g.String() {
				match = true
			}
		}
		if !match {
			continue
		}
		c.Revoked, c.RevokedAt = true, now
		if _, err := a.st.cli.Txn(ctx).Then(clientv3.OpPut(credsPrefix+c.Serial, encode(c)),
			clientv3.OpPut(revokedPrefix+c.Serial, now.Format(time.RFC3339))).Commit(); err != nil {
			return out, etcdError(err)
		}
		a.mu.Lock()
		a.revoked[c.Serial] = true
		a.mu.Unlock()
		a.log.Info("credential revoked", "role", c.Role, "name", c.Name, "serial", c.Serial)
		out = append(out, c)
	}
	if len(out) == 0 {
		what := "serial " + r.Serial
		if r.Name != "" {
			what = "name " + r.Name
		}
		return nil, notFoundf("no unrevoked credential has %s: see wnvctl pki get", what)
	}
	return out, nil
}

// pkiRoutes serves the credential routes; without Auth (plain HTTP) they
// answer that there is no PKI.
func (h *handler) pkiRoutes(route func(string, http.HandlerFunc)) {
	noPKI := invalidf("this policy server runs without TLS (--insecure-plain-http): it issues no credentials")
	route("POST /v1/pki/credentials", h.answer(func(ctx context.Context, r *http.Request) (any, error) {
		if h.auth == nil {
			return nil, noPKI
		}
		var req policyapi.IssueRequest
		if err := jsonapi.DecodeBody(r.Body, &req); err != nil {
			return nil, err
		}
		return h.auth.Issue(ctx, req)
	}))
	route("GET /v1/pki/credentials", h.answer(func(ctx context.Context, _ *http.Request) (any, error) {
		if h.auth == nil {
			return nil, noPKI
		}
		return nonNil(h.auth.Credentials(ctx))
	}))
	route("POST /v1/pki/revocations", h.answer(func(ctx context.Context, r *http.Request) (any, error) {
		if h.auth == nil {
			return nil, noPKI
		}
		var req policyapi.Revocation
		if err := jsonapi.DecodeBody(r.Body, &req); err != nil {
			return nil, err
		}
		return nonNil(h.auth.Revoke(ctx, req))
	}))
	route("GET /v1/pki/whoami", h.answer(func(ctx context.Context, r *http.Request) (any, error) {
		z := authzOf(ctx)
		if z == nil {
			return policyapi.Credential{Role: string(pki.Admin), Name: "anyone (plain HTTP)"}, nil
		}
		return policyapi.Credential{Serial: z.id.Serial, Role: string(z.id.Role), Name: z.id.Name, DisplayName: z.id.DisplayName,
			ProviderAddresses: z.id.ProviderAddresses, NotAfter: z.id.NotAfter}, nil
	}))
}

// guard authenticates and authorizes every request of route pattern before
// f runs; it panics at start-up for a route without an access rule.
func (h *handler) guard(pattern string, f http.HandlerFunc) http.HandlerFunc {
	if _, ok := access[pattern]; !ok {
		panic("policyserver: route " + pattern + " has no access rule in auth.go")
	}
	if h.auth == nil {
		return f
	}
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := h.auth.authenticate(r)
		if err != nil {
			h.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "err", err)
			h.fail(w, r, err)
			return
		}
		z, err := authorize(r.Context(), h.st, id, pattern, r)
		if z != nil {
			z.auth = h.auth
		}
		if err != nil {
			if errors.Is(err, policy.ErrForbidden) {
				h.log.Info("request refused", "identity", id.Name, "role", id.Role, "method", r.Method, "path", r.URL.Path, "err", err)
			}
			h.fail(w, r, err)
			return
		}
		f(w, r.WithContext(context.WithValue(r.Context(), authzKey{}, z)))
	}
}
