package provider

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"

	"github.com/wnv/wnv/internal/jsonapi"
)

// RedirectKey is the key a host's PA LocalPA shares with another host's PA
// PeerPA to authenticate redirects between them. In JSON, Key is base64.
type RedirectKey struct {
	LocalPA, PeerPA netip.Addr
	Key             [32]byte
}

type redirectKeyJSON struct {
	LocalPA netip.Addr `json:"LocalPA"`
	PeerPA  netip.Addr `json:"PeerPA"`
	Key     string     `json:"Key"`
}

func (k RedirectKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(redirectKeyJSON{k.LocalPA, k.PeerPA, base64.StdEncoding.EncodeToString(k.Key[:])})
}

func (k *RedirectKey) UnmarshalJSON(b []byte) error {
	var j redirectKeyJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	key, err := base64.StdEncoding.DecodeString(j.Key)
	if err != nil || len(key) != len(k.Key) {
		return fmt.Errorf("Key of LocalPA %s and PeerPA %s must be 32 bytes in base64", j.LocalPA, j.PeerPA)
	}
	k.LocalPA, k.PeerPA = j.LocalPA, j.PeerPA
	copy(k.Key[:], key)
	return nil
}

// RedirectKeyBackend is a Backend that authenticates redirects: it takes
// the whole set of pairwise keys at once and tells only how many it holds.
type RedirectKeyBackend interface {
	SetRedirectKeys([]RedirectKey) error
	RedirectKeyCount() int
}

// RedirectKeyCount is the answer of /v1/redirect-keys: key material is
// never returned.
type RedirectKeyCount struct {
	Keys int `json:"Keys"`
}

// registerRedirectKeys serves /v1/redirect-keys: PUT replaces the keys
// with the JSON array in the body, GET counts them.
func registerRedirectKeys(h *handler) {
	h.route("/v1/redirect-keys", map[string]http.HandlerFunc{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			b, ok := redirectKeys(w, h)
			if ok {
				jsonapi.WriteJSON(w, http.StatusOK, RedirectKeyCount{b.RedirectKeyCount()})
			}
		},
		http.MethodPut: func(w http.ResponseWriter, r *http.Request) {
			b, ok := redirectKeys(w, h)
			if !ok {
				return
			}
			var keys []RedirectKey
			if err := decodeKeys(r.Body, &keys); err != nil {
				jsonapi.WriteError(w, jsonapi.Invalid(err))
				return
			}
			if err := b.SetRedirectKeys(keys); err != nil {
				jsonapi.WriteError(w, err)
				return
			}
			jsonapi.WriteJSON(w, http.StatusOK, RedirectKeyCount{b.RedirectKeyCount()})
		},
	})
}

func redirectKeys(w http.ResponseWriter, h *handler) (RedirectKeyBackend, bool) {
	b, ok := h.b.(RedirectKeyBackend)
	if !ok {
		jsonapi.WriteJSON(w, http.StatusNotImplemented, jsonapi.ErrorBody{Error: "this wnvd does not authenticate redirects: /v1/redirect-keys is not available"})
	}
	return b, ok
}

// decodeKeys decodes the JSON array of keys in r.
func decodeKeys(r io.Reader, keys *[]RedirectKey) error {
	data, err := io.ReadAll(io.LimitReader(r, jsonapi.MaxBody*16+1))
	if err != nil {
		return fmt.Errorf("request body could not be read: %v", err)
	}
	if len(data) > jsonapi.MaxBody*16 {
		return fmt.Errorf("request body is larger than %d bytes", jsonapi.MaxBody*16)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(keys); err != nil {
		return fmt.Errorf("request body is not a JSON array of redirect keys {\"LocalPA\", \"PeerPA\", \"Key\": base64 of 32 bytes}: %v", err)
	}
	if *keys == nil {
		return errors.New("request body is not a JSON array of redirect keys: send [] to remove them all")
	}
	if dec.More() {
		return errors.New("request body has data after the JSON array: send one array")
	}
	return nil
}

// SetRedirectKeys replaces the host's redirect keys with keys and returns
// how many it holds. A wnvd older than redirect keys answers an error
// matching policy.ErrNotFound.
func (c *Client) SetRedirectKeys(ctx context.Context, keys []RedirectKey) (int, error) {
	if keys == nil {
		keys = []RedirectKey{}
	}
	var n RedirectKeyCount
	err := c.do(ctx, http.MethodPut, "/v1/redirect-keys", nil, keys, &n)
	return n.Keys, err
}

// RedirectKeyCount is how many redirect keys the host holds.
func (c *Client) RedirectKeyCount(ctx context.Context) (int, error) {
	var n RedirectKeyCount
	err := c.do(ctx, http.MethodGet, "/v1/redirect-keys", nil, nil, &n)
	return n.Keys, err
}
