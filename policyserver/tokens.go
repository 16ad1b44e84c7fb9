package policyserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyapi"
)

// Bearer tokens are observer credentials for a browser, which cannot
// easily present a client certificate: the dashboard's login sends one
// once and keeps it in a cookie. A token is a credential like the others
// (serial, name, expiry, revocation) but read-only by construction: only
// observers get one. The server keeps the SHA-256 of its secret, outside
// the credential record that GET /v1/pki/credentials answers:
//
//	/wnv/pki/tokens/<serial>   tokenRecord
const tokensPrefix = pkiPrefix + "tokens/"

// SessionCookie is the cookie the dashboard keeps a token in.
const SessionCookie = "wnv_session"

// tokenPrefix starts every token, so that one pasted in the wrong place is
// recognisable: wnvt_<serial>_<secret>.
const tokenPrefix = "wnvt_"

type tokenRecord struct {
	Hash     string    `json:"Hash"`
	Name     string    `json:"Name"`
	NotAfter time.Time `json:"NotAfter"`
}

// issueToken makes an observer token for req.
func (a *Auth) issueToken(ctx context.Context, role pki.Role, req policyapi.IssueRequest) (policyapi.IssuedCredential, error) {
	if role != pki.Observer {
		return policyapi.IssuedCredential{}, invalidf("Token: only observer credentials can be tokens (a token is read-only access for a browser): issue a certificate for the %s role", role)
	}
	if req.CSR != "" || len(req.ProviderAddresses) > 0 {
		return policyapi.IssuedCredential{}, invalidf("Token: a token has no CSR and no ProviderAddresses")
	}
	if err := (pki.Request{Role: role, Name: req.Name}).Check(); err != nil {
		return policyapi.IssuedCredential{}, invalidf("%v", err)
	}
	validity := time.Duration(req.ValidityHours) * time.Hour
	if validity <= 0 {
		validity = pki.DefaultValidity
	}
	var serial [16]byte
	var secret [32]byte
	rand.Read(serial[:])
	rand.Read(secret[:])
	now := a.now().UTC()
	c := policyapi.Credential{Serial: hex.EncodeToString(serial[:]), Role: string(role), Name: req.Name, IssuedAt: now,
		NotAfter: now.Add(validity), Kind: "token"}
	sum := sha256.Sum256(secret[:])
	rec := tokenRecord{Hash: hex.EncodeToString(sum[:]), Name: c.Name, NotAfter: c.NotAfter}
	ck, tk := credsPrefix+c.Serial, tokensPrefix+c.Serial
	if _, err := a.st.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(ck), "=", 0)).
		Then(clientv3.OpPut(ck, encode(c)), clientv3.OpPut(tk, encode(rec))).Commit(); err != nil {
		return policyapi.IssuedCredential{}, etcdError(err)
	}
	a.log.Info("token issued", "role", role, "name", c.Name, "serial", c.Serial)
	return policyapi.IssuedCredential{Credential: c, CA: string(a.pki.CA.PEM),
		Token: tokenPrefix + c.Serial + "_" + base64.RawURLEncoding.EncodeToString(secret[:])}, nil
}

// bearer is the token of r: its Authorization: Bearer header, else its
// session cookie; "" when it has neither.
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// AuthenticateToken returns the identity of token, checked against the
// hash the server keeps, its expiry and the revocations.
func (a *Auth) AuthenticateToken(ctx context.Context, token string) (pki.Identity, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	serial, secretText, ok2 := strings.Cut(rest, "_")
	secret, err := base64.RawURLEncoding.DecodeString(secretText)
	if !ok || !ok2 || err != nil || len(serial) != 32 || len(secret) != 32 {
		return pki.Identity{}, unauthenticated("token refused: it is not a wnv token (wnvt_<serial>_<secret>, from wnvctl pki issue observer NAME --token)")
	}
	resp, err := a.st.cli.Get(ctx, tokensPrefix+serial)
	if err != nil {
		return pki.Identity{}, etcdError(err)
	}
	var rec tokenRecord
	if len(resp.Kvs) == 0 || json.Unmarshal(resp.Kvs[0].Value, &rec) != nil {
		return pki.Identity{}, unauthenticated("token refused: serial %s was not issued by this policy server", serial)
	}
	sum := sha256.Sum256(secret)
	want, _ := hex.DecodeString(rec.Hash)
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return pki.Identity{}, unauthenticated("token refused: its secret does not match serial %s", serial)
	}
	id := pki.Identity{Name: rec.Name, Role: pki.Observer, Serial: serial, NotAfter: rec.NotAfter}
	return id, a.stillValid(id)
}
