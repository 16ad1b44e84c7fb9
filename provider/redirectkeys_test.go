package provider_test

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/wnv/wnv/provider"
	"github.com/wnv/wnv/provider/providertest"
)

// keyBackend is the fake backend with redirect keys.
type keyBackend struct {
	*providertest.Backend
	keys []provider.RedirectKey
}

func (b *keyBackend) SetRedirectKeys(k []provider.RedirectKey) error { b.keys = k; return nil }
func (b *keyBackend) RedirectKeyCount() int                          { return len(b.keys) }

func TestRedirectKeysReplacedAndNeverReturned(t *testing.T) {
	b := &keyBackend{Backend: providertest.NewBackend()}
	sock := providertest.Serve(t, b)
	c := provider.NewClient(sock)
	key := [32]byte{1, 2, 3, 31: 0xff}
	n, err := c.SetRedirectKeys(t.Context(), []provider.RedirectKey{{LocalPA: pa1, PeerPA: pa2, Key: key}, {LocalPA: pa2, PeerPA: pa1, Key: key}})
	if err != nil || n != 2 {
		t.Fatalf("SetRedirectKeys: %d, %v; want 2 keys", n, err)
	}
	if len(b.keys) != 2 || b.keys[0].LocalPA != pa1 || b.keys[0].PeerPA != pa2 || b.keys[0].Key != key {
		t.Fatalf("the backend got %+v", b.keys)
	}
	if n, err := c.RedirectKeyCount(t.Context()); err != nil || n != 2 {
		t.Fatalf("RedirectKeyCount: %d, %v", n, err)
	}
	raw := &http.Client{Transport: unixTransport(sock)}
	resp, err := raw.Get("http://wnvd/v1/redirect-keys")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), base64.StdEncoding.EncodeToString(key[:])) || strings.Contains(string(body), "Key\"") {
		t.Errorf("GET /v1/redirect-keys returned key material: %s", body)
	}
	if n, err := c.SetRedirectKeys(t.Context(), nil); err != nil || n != 0 || len(b.keys) != 0 {
		t.Errorf("replacing with no keys: %d, %v, backend has %d", n, err, len(b.keys))
	}
}

func TestRedirectKeysRefusesBadBodies(t *testing.T) {
	b := &keyBackend{Backend: providertest.NewBackend()}
	sock := providertest.Serve(t, b)
	raw := &http.Client{Transport: unixTransport(sock)}
	for name, body := range map[string]string{
		"short key":     `[{"LocalPA":"198.18.0.2","PeerPA":"198.18.0.3","Key":"AAEC"}]`,
		"not base64":    `[{"LocalPA":"198.18.0.2","PeerPA":"198.18.0.3","Key":"!!"}]`,
		"unknown field": `[{"LocalPA":"198.18.0.2","PeerPA":"198.18.0.3","Key":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `","Seq":1}]`,
		"object":        `{"LocalPA":"198.18.0.2"}`,
		"null":          `null`,
	} {
		req, _ := http.NewRequest(http.MethodPut, "http://wnvd/v1/redirect-keys", strings.NewReader(body))
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s), want 400", name, resp.StatusCode, msg)
		}
	}
	// A backend without redirect keys says so.
	plain := providertest.Serve(t, providertest.NewBackend())
	if _, err := provider.NewClient(plain).RedirectKeyCount(t.Context()); err == nil {
		t.Error("a backend without redirect keys answered")
	}
}

func unixTransport(sock string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
}
