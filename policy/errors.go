package policy

import (
	"errors"
	"fmt"
)

// Error kinds, distinguishable with errors.Is. The HTTP APIs map them to
// statuses (internal/jsonapi). ErrInvalid: bad input (a lookup record that
// only lacks other objects is no error: it is stored Unusable). ErrExists:
// an existing object blocks the change (same identity, a CA mapped to another
// MAC, a VSID in another routing domain).
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrUnavailable: a dependency (etcd) cannot be reached; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrFull: the store has no space left for the change.
	ErrFull = errors.New("full")
	// ErrTooMany: the caller holds too many of something (e.g. watch
	// streams); retry after releasing one.
	ErrTooMany = errors.New("too many")
	// ErrUnauthenticated: the caller presented no valid credential.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the caller's role does not allow the request.
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
