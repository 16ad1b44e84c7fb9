// Package jsonapi is the HTTP/JSON kit of wnv's two APIs, the provider API
// of wnvd and the policy server's: request decoding that names the property
// and the rule a malformed value broke, the one mapping from error kinds
// (policy.ErrInvalid, ...) to HTTP statuses and back, error responses of one
// shape, and the client side of the same conventions.
package jsonapi
