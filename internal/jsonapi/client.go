package jsonapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
)

// Error is an error an API answered. Message is its one line; errors.Is
// matches the error kind of its status (policy.ErrInvalid, ...), so callers
// treat it like an error of a local policy.Store.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Is(target error) bool {
	k := KindOf(e.Status)
	return k != nil && target == k
}

// maxAnswer bounds a non-streamed answer read into memory.
const maxAnswer = 64 << 20

// Client sends requests to one API server. It is safe for concurrent use.
type Client struct {
	// Base is the URL requests' paths are appended to.
	Base string
	// Server names the server in error messages, e.g. "wnvd at
	// /run/wnv/wnvd.sock".
	Server string
	HTTP   *http.Client
}

// Request sends one request to path; in, when not nil, is the JSON body. An
// answer of status 300 or more is returned as *Error; otherwise the caller
// reads and closes the body (e.g. a stream).
func (c *Client) Request(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: request could not be encoded: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.Base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("cannot reach %s: is it running? (%v)", c.Server, op)
		}
		if msg := tlsFailure(err); msg != "" {
			return nil, fmt.Errorf("TLS with %s failed: %s", c.Server, msg)
		}
		return nil, fmt.Errorf("%s did not answer %s %s: %w", c.Server, method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			return nil, &Error{Status: resp.StatusCode, Message: fmt.Sprintf("%s answered %s to %s %s without an error message", c.Server, resp.Status, method, path)}
		}
		return nil, &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	return resp, nil
}

// refusedBecause explains the TLS alerts a server sends when it refuses a
// client's certificate.
var refusedBecause = map[string]string{
	"tls: certificate required":          "this client presented no certificate of the server's CA",
	"tls: unknown certificate authority": "this client's certificate is not signed by its CA",
	"tls: expired certificate":           "this client's certificate has expired",
	"tls: bad certificate":               "this client's certificate is not valid",
}

// tlsFailure says in one sentence which side refused a TLS connection and
// why, or "" when err is no TLS failure.
func tlsFailure(err error) string {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var op *net.OpError
	switch {
	case errors.As(err, &cv):
		return "the server is not trusted: " + cv.Err.Error()
	case errors.As(err, &rh):
		return "the server does not speak TLS there"
	// crypto/tls reports an alert the peer sent as this OpError.
	case errors.As(err, &op) && op.Op == "remote error":
		if why, ok := refusedBecause[op.Err.Error()]; ok {
			return fmt.Sprintf("the server refused this client (%v): %s", op.Err, why)
		}
		return fmt.Sprintf("the server refused the connection (%v)", op.Err)
	}
	return ""
}

// Do sends one request; in, when not nil, is the JSON body, and out, when
// not nil, receives the JSON answer.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, err := c.Request(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s's answer to %s %s could not be read: %w", c.Server, method, path, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s's answer to %s %s is not the expected JSON: %w", c.Server, method, path, err)
	}
	return nil
}
