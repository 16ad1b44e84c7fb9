package jsonapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/wnv/wnv/policy"
)

// The one mapping between error kinds and statuses, both ways.
var kindStatus = []struct {
	kind   error
	status int
}{
	{policy.ErrInvalid, http.StatusBadRequest},
	{policy.ErrNotFound, http.StatusNotFound},
	{policy.ErrExists, http.StatusConflict},
	{policy.ErrUnavailable, http.StatusServiceUnavailable},
	{policy.ErrFull, http.StatusInsufficientStorage},
	{policy.ErrTooMany, http.StatusTooManyRequests},
	{policy.ErrUnauthenticated, http.StatusUnauthorized},
	{policy.ErrForbidden, http.StatusForbidden},
}

// Status is the status an API answers err with: its kind's, 499 when the
// client went away, 500 for an error of no kind (a bug or a failed syscall).
func Status(err error) int {
	for _, ks := range kindStatus {
		if errors.Is(err, ks.kind) {
			return ks.status
		}
	}
	if errors.Is(err, context.Canceled) {
		return 499
	}
	return http.StatusInternalServerError
}

// KindOf is the error kind a status stands for (Status's inverse), or nil.
func KindOf(status int) error {
	for _, ks := range kindStatus {
		if ks.status == status {
			return ks.kind
		}
	}
	return nil
}

// ErrorBody is the JSON of every error response: {"error": "one sentence"}.
type ErrorBody struct {
	Error string `json:"error"`
}

// WriteError answers err on one line with Status(err). A backend that
// classifies with fmt.Errorf("%w: ...", policy.ErrExists) gets the kind's
// own text ("already exists: ") stripped, since the status already says it.
func WriteError(w http.ResponseWriter, err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	for _, ks := range kindStatus {
		if rest, ok := strings.CutPrefix(msg, ks.kind.Error()+": "); ok && errors.Is(err, ks.kind) {
			msg = rest
		}
	}
	WriteJSON(w, Status(err), ErrorBody{Error: msg})
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status is sent; an encoding or write error can only mean the
	// client went away.
	_ = json.NewEncoder(w).Encode(v)
}

// Invalid marks err, an error in the request itself, as policy.ErrInvalid
// unless it is of a kind already.
func Invalid(err error) error {
	for _, ks := range kindStatus {
		if errors.Is(err, ks.kind) {
			return err
		}
	}
	return &policy.Error{Kind: policy.ErrInvalid, Msg: err.Error()}
}
