// Package dashboard is the policy server's web dashboard: a page and its
// script, embedded in the binary and served under /ui/, that read the
// policy API the way any observer does (GET, and GET /v1/watch as
// server-sent events). It holds no state and adds no API of its own
// except the login, which turns an observer token into a session cookie:
// a browser cannot easily present the client certificates the API
// otherwise asks for.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/wnv/wnv/internal/jsonapi"
)

//go:embed static
var static embed.FS

// Path is where the dashboard is served.
const Path = "/ui/"

// Session checks a token and says until when it is valid.
type Session func(ctx context.Context, token string) (notAfter time.Time, err error)

// New serves the dashboard. cookie names the session cookie; check
// validates a token at login (nil: the server has no authentication, and
// the login is refused as needless). secure marks the cookie for HTTPS only.
func New(cookie string, check Session, secure bool) http.Handler {
	files, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, http.StripPrefix(Path, noCache(http.FileServerFS(files))))
	mux.HandleFunc("POST "+Path+"session", func(w http.ResponseWriter, r *http.Request) {
		if check == nil {
			jsonapi.WriteError(w, jsonapi.Invalid(errors.New("this policy server runs without authentication: the dashboard needs no login")))
			return
		}
		var req struct {
			Token string `json:"Token"`
		}
		if err := jsonapi.DecodeBody(r.Body, &req); err != nil {
			jsonapi.WriteError(w, err)
			return
		}
		notAfter, err := check(r.Context(), strings.TrimSpace(req.Token))
		if err != nil {
			jsonapi.WriteError(w, err)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookie, Value: strings.TrimSpace(req.Token), Path: "/", Expires: notAfter,
			HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE "+Path+"session", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: cookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	})
	return securityHeaders(mux)
}

// noCache makes a browser revalidate the page and script, so that an
// upgraded server's dashboard is the one shown.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// securityHeaders keeps the page from being framed or from loading
// anything but its own files.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}
