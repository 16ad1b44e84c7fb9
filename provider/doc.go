// Package provider is wnv's provider API: the Linux equivalent of the original
// WMI policy classes. wnvd serves it as HTTP/JSON on a Unix socket
// (default /run/wnv/wnvd.sock); wnvctl and host agents use [Client].
//
// Routes (JSON bodies keep the original property names):
//
//	/v1/lookup-records      POST create, GET list, PATCH set, DELETE remove
//	/v1/customer-routes     POST, GET, PATCH (Metric only), DELETE
//	/v1/provider-addresses  POST, GET, PATCH (VlanID, PrefixLength, MACAddress), DELETE
//	/v1/provider-routes     POST, GET, PATCH (Metric only), DELETE
//	/v1/virtual-subnets     POST, GET, PATCH (Encapsulation only), DELETE
//	/v1/global              GET, PUT
//	/v1/ports               POST attach, GET list
//	/v1/ports/{name}        GET, DELETE detach (?migrated=true: the VM moved away; forward its late packets)
//	/v1/batch               POST: a policy.Batch of record and route changes, applied as one change or not at all
//	/v1/next-hop            GET (Select-NextHop)
//	/v1/counters            GET
//	/v1/trace               POST: the switch's dry run of a packet, step by step (observers too)
//	/v1/trace/live          POST: the same, then the packet, marked, sent from the port
//
// GET, PATCH and DELETE take a filter as query parameters named after the
// properties (an absent parameter matches anything; DELETE with no filter
// removes all). A filter parameter may be repeated to match any of its
// values, and string and GUID ones take PowerShell wildcards. PATCH's body is
// the change. Errors are {"error": "<one line>"}
// with 400 (invalid), 404 (not found) or 409 (exists).
//
// A lookup record's Unusable, UnusableReason and Unsynchronized are read-only
// states (see policy.LookupRecord) and Get filters (?Unusable=true). Only
// PutLookupRecords of /v1/batch may give Unsynchronized: the host agent's
// way of installing what the policy server has not confirmed.
package provider
