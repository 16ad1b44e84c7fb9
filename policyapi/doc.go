// Package policyapi holds the wire types of the policy server's HTTP/JSON
// API: the objects (tenants, routing domains, subnets, hosts, VMs,
// gateways), the policy a host installs, and the events of the watch
// stream. Clients (wnvctl, host agents) and the server share it; it links
// neither HTTP nor etcd code.
package policyapi
