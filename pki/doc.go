// Package pki loads the TLS configurations of wnv's servers and clients: the
// policy server, its clients (wnvctl, host agents) and external etcd.
package pki
