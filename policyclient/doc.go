// Package policyclient is the Go client of the policy server's API. It does
// not link the server or etcd, so wnvctl and host agents stay small.
package policyclient
