package jsonapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wnv/wnv/policy"
)

func TestStatusRoundTrip(t *testing.T) {
	for _, kind := range []error{policy.ErrInvalid, policy.ErrNotFound, policy.ErrExists, policy.ErrUnavailable, policy.ErrFull, policy.ErrTooMany, policy.ErrUnauthenticated, policy.ErrForbidden} {
		err := &policy.Error{Kind: kind, Msg: "x"}
		st := Status(err)
		if st < 400 || st == 500 || KindOf(st) != kind {
			t.Errorf("%v: status %d maps back to %v", kind, st, KindOf(st))
		}
		if !errors.Is(&Error{Status: st, Message: "x"}, kind) {
			t.Errorf("a client Error of status %d is not %v", st, kind)
		}
	}
	if Status(errors.New("plain")) != http.StatusInternalServerError || KindOf(500) != nil {
		t.Error("an error of no kind must be a 500, and 500 no kind")
	}
	if Status(fmt.Errorf("x: %w", context.Canceled)) != 499 {
		t.Error("a cancelled request must be a 499")
	}
}

func TestWriteErrorStripsTheKind(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, fmt.Errorf("%w: CA 10.0.0.5 is mapped to another MAC", policy.ErrExists))
	if rec.Code != http.StatusConflict || rec.Body.String() != "{\"error\":\"CA 10.0.0.5 is mapped to another MAC\"}\n" {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
}
