package policy

import (
	"errors"
	"fmt"
	"net/http"
)

// Error kinds, distinguishable with errors.Is. The provider API maps them to
// HTTP 400, 404 and 409. ErrInvalid: bad input or a missing prerequisite
// (e.g. no on-link route for a CA). ErrExists: an existing object blocks the
// change (same identity, a CA mapped to another MAC, a VSID in another
// routing domain, a route that records still depend on).
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrUnauthenticated: the caller presented no valid credential (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the caller's role does not allow the request (403).
	ErrForbidden = errors.New("forbidden")
)

// Error is one sentence for a person, of one of the kinds above. The kind is
// not repeated in the text.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func invalidf(format string, a ...any) error {
	return &Error{Kind: ErrInvalid, Msg: fmt.Sprintf(format, a...)}
}

func notFoundf(format string, a ...any) error {
	return &Error{Kind: ErrNotFound, Msg: fmt.Sprintf(format, a...)}
}

func existsf(format string, a ...any) error {
	return &Error{Kind: ErrExists, Msg: fmt.Sprintf(format, a...)}
}

// HTTPStatus is the status the HTTP APIs (provider API, policy server) answer
// an error of a kind with: 400 for ErrInvalid, 404 for ErrNotFound, 409 for
// ErrExists; 0 for an error of no kind.
func HTTPStatus(err error) int {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists):
		return http.StatusConflict
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	}
	return 0
}

// KindOfStatus is the error kind an API status stands for (the inverse of
// HTTPStatus), or nil.
func KindOfStatus(status int) error {
	switch status {
	case http.StatusBadRequest:
		return ErrInvalid
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrExists
	case http.StatusUnauthorized:
		return ErrUnauthenticated
	case http.StatusForbidden:
		return ErrForbidden
	}
	return nil
}
