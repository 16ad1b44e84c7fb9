package policyserver

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wnv/wnv/policyapi"
)

// browser is an HTTP client of s that trusts its CA and presents no
// certificate, as a browser does.
func (s *secure) browser() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.pki.CA.Cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	s.t.Cleanup(c.CloseIdleConnections)
	return c
}

func (s *secure) do(c *http.Client, method, path, body string, header ...string) *http.Response {
	s.t.Helper()
	req, err := http.NewRequestWithContext(ctxT(s.t), method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (s *secure) token(name string) (policyapi.IssuedCredential, error) {
	return s.admin.IssueCredential(ctxT(s.t), policyapi.IssueRequest{Role: "observer", Name: name, Token: true})
}

func TestObserverTokens(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	ic, err := s.token("carol")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ic.Token, tokenPrefix) || ic.Certificate != "" || ic.Key != "" || ic.Credential.Kind != "token" {
		t.Fatalf("issued %+v, want a token and no certificate", ic)
	}
	for _, role := range []string{"admin", "tenant", "host"} {
		if _, err := s.admin.IssueCredential(ctxT(t), policyapi.IssueRequest{Role: role, Name: "x", Token: true}); err == nil || !strings.Contains(err.Error(), "only observer credentials can be tokens") {
			t.Errorf("a %s token: err %v, want a refusal", role, err)
		}
	}

	b := s.browser()
	bearer := "Bearer " + ic.Token
	if r := s.do(b, "GET", "/v1/tenants", "", "Authorization", bearer); r.StatusCode != http.StatusOK {
		t.Errorf("GET with the token: %s", r.Status)
	}
	if r := s.do(b, "POST", "/v1/tenants", `{"Name":"x","CustomerID":"{b1000000-0000-0000-0000-000000000009}"}`, "Authorization", bearer); r.StatusCode != http.StatusForbidden {
		t.Errorf("POST with an observer token: %s, want 403", r.Status)
	}
	serial, secret, _ := strings.Cut(strings.TrimPrefix(ic.Token, tokenPrefix), "_")
	wrong := []byte(secret)
	wrong[0] ^= 1
	for name, tok := range map[string]string{
		"wrong secret":   tokenPrefix + serial + "_" + string(wrong),
		"unknown serial": tokenPrefix + strings.Repeat("0", 32) + "_" + secret,
		"not a token":    "hello",
	} {
		r := s.do(b, "GET", "/v1/tenants", "", "Authorization", "Bearer "+tok)
		if r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %s, want 401", name, r.Status)
		}
	}

	cs, err := s.admin.Credentials(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(cs)
	if strings.Contains(string(raw), secret) || !strings.Contains(string(raw), `"Kind":"token"`) {
		t.Errorf("credential list %s: want the token listed as a token, without its secret", raw)
	}
	if _, err := s.admin.Revoke(ctxT(t), policyapi.Revocation{Serial: ic.Credential.Serial}); err != nil {
		t.Fatal(err)
	}
	if r := s.do(b, "GET", "/v1/tenants", "", "Authorization", bearer); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET with a revoked token: %s, want 401", r.Status)
	}
}

func TestDashboardSession(t *testing.T) {
	s := serveSecure(t, startEtcd(t))
	ic, err := s.token("dave")
	if err != nil {
		t.Fatal(err)
	}
	b := s.browser()

	r := s.do(b, "GET", "/", "")
	if r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /: %s to %q, want a redirect to /ui/", r.Status, r.Header.Get("Location"))
	}
	r = s.do(b, "GET", "/ui/", "")
	page, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK || !strings.Contains(string(page), `src="app.js"`) || !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("GET /ui/: %s, CSP %q, page %.80q", r.Status, r.Header.Get("Content-Security-Policy"), page)
	}

	if r = s.do(b, "POST", "/ui/session", `{"Token":"wnvt_nope"}`); r.StatusCode != http.StatusUnauthorized || len(r.Cookies()) != 0 {
		t.Errorf("login with a bad token: %s, cookies %v; want 401 and none", r.Status, r.Cookies())
	}
	r = s.do(b, "POST", "/ui/session", `{"Token":"`+ic.Token+`"}`)
	if r.StatusCode != http.StatusNoContent || len(r.Cookies()) != 1 {
		t.Fatalf("login: %s, cookies %v", r.Status, r.Cookies())
	}
	c := r.Cookies()[0]
	if c.Name != SessionCookie || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict", c)
	}

	// The watch stream as server-sent events, authenticated by the cookie.
	r = s.do(b, "GET", "/v1/watch", "", "Accept", "text/event-stream", "Cookie", c.Name+"="+c.Value)
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch as SSE: %s, %q", r.Status, r.Header.Get("Content-Type"))
	}
	line, err := bufio.NewReader(r.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var ev policyapi.Event
	data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
	if !ok || json.Unmarshal([]byte(data), &ev) != nil || ev.Type != policyapi.EventProgress {
		t.Errorf("first SSE line %q: want data: and a progress event", line)
	}

	if r = s.do(b, "DELETE", "/ui/session", ""); r.StatusCode != http.StatusNoContent || len(r.Cookies()) != 1 || r.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %s, cookies %v; want the cookie cleared", r.Status, r.Cookies())
	}
}
