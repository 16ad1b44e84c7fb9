// Package policyserver is the datacenter policy server (`wnvd policy`): it
// keeps tenants, routing domains, virtual subnets, hosts, VMs and gateways in
// etcd, validates every change in one etcd transaction, and serves them over
// HTTP/JSON with an NDJSON watch stream. It also derives from them the
// host-side policy objects (lookup records and customer routes) that a host
// agent installs through the provider API. Its wire types are in
// policyapi and its client in policyclient, so that clients do not link
// this package or etcd's server.
//
// The server holds no authoritative state in memory: several replicas may
// serve one etcd cluster, and every write compares the revisions it read.
package policyserver
