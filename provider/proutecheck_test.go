package provider_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

// underlayOnly is a backend that installs provider routes on interface 3
// only, as a host does on its underlay.
type underlayOnly struct{ *providertest.Backend }

func (underlayOnly) CheckProviderRoute(r policy.ProviderRoute) error {
	if r.InterfaceIndex != 0 && r.InterfaceIndex != 3 {
		return &policy.Error{Kind: policy.ErrInvalid, Msg: "InterfaceIndex is not the underlay's"}
	}
	return nil
}

// TestProviderRouteChecker: a backend that can check provider routes
// refuses one before the store has it.
func TestProviderRouteChecker(t *testing.T) {
	b := underlayOnly{providertest.NewBackend()}
	h := provider.NewHandler(b)
	post := func(body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/provider-routes", strings.NewReader(body)))
		return w
	}
	if w := post(`{"InterfaceIndex": 7, "DestinationPrefix": "198.19.0.0/16", "NextHop": "198.18.0.1"}`); w.Code != http.StatusBadRequest ||
		!strings.Contains(w.Body.String(), "not the underlay") {
		t.Errorf("InterfaceIndex 7: %d %s, want 400 with the backend's reason", w.Code, w.Body)
	}
	if n := len(b.Store().ProviderRoutes(policy.ProviderRouteFilter{})); n != 0 {
		t.Errorf("the store has %d routes after a refused add, want 0", n)
	}
	for _, body := range []string{`{"InterfaceIndex": 3, "DestinationPrefix": "198.19.0.0/16", "NextHop": "198.18.0.1"}`, `{"DestinationPrefix": "198.20.0.0/16"}`} {
		if w := post(body); w.Code != http.StatusCreated {
			t.Errorf("%s: %d %s, want 201", body, w.Code, w.Body)
		}
	}
}
