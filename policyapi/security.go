package policyapi

import (
	"net/netip"
	"time"
)

// RedirectKey is the pairwise key a host uses to authenticate redirects
// with one peer PA: GET /v1/hosts/{name}/redirect-keys answers one for each
// PA of the host and each PA of the same family of every other registered
// host. Both ends derive the same Key:
// HMAC-SHA256(master, "wnv redirect v1" || lower PA || higher PA), each PA
// as 16 bytes (IPv4 as IPv4-mapped IPv6) in ascending byte order. The host
// agent hands them to wnvd with PUT /v1/redirect-keys (replace-all).
type RedirectKey struct {
	LocalPA netip.Addr `json:"LocalPA"`
	PeerPA  netip.Addr `json:"PeerPA"`
	Key     []byte     `json:"Key"`
}

// IssueRequest is the body of POST /v1/pki/credentials (admin only). Role
// is admin, tenant, host or observer; Name is the identity: a host's name,
// a tenant's name or CustomerID (the certificate names the CustomerID), a
// person's name. A host's ProviderAddresses are the only PAs it may
// register. With CSR (PEM) the server signs its key; without, it generates
// a key and answers it.
type IssueRequest struct {
	Role              string       `json:"Role"`
	Name              string       `json:"Name"`
	ProviderAddresses []netip.Addr `json:"ProviderAddresses"`
	CSR               string       `json:"CSR"`
	ValidityHours     int64        `json:"ValidityHours"`
	// Token asks for a bearer token instead of a certificate, for a browser
	// (the dashboard): observers only, since a token is read-only access.
	Token bool `json:"Token,omitempty"`
}

// Credential is an issued client certificate as the server keeps it.
type Credential struct {
	Serial            string       `json:"Serial"`
	Role              string       `json:"Role"`
	Name              string       `json:"Name"`
	DisplayName       string       `json:"DisplayName,omitempty"`
	ProviderAddresses []netip.Addr `json:"ProviderAddresses,omitempty"`
	IssuedAt          time.Time    `json:"IssuedAt"`
	NotAfter          time.Time    `json:"NotAfter"`
	Revoked           bool         `json:"Revoked"`
	RevokedAt         time.Time    `json:"RevokedAt,omitzero"`
	// Kind is "certificate" or "token".
	Kind string `json:"Kind,omitempty"`
}

// IssuedCredential answers POST /v1/pki/credentials: the credential, its
// certificate and the CA (PEM), and the private key (PEM) unless a CSR was
// sent; for a token request, the token (shown this once: the server keeps
// only its hash) and the CA.
type IssuedCredential struct {
	Credential  Credential `json:"Credential"`
	Certificate string     `json:"Certificate,omitempty"`
	Key         string     `json:"Key,omitempty"`
	Token       string     `json:"Token,omitempty"`
	CA          string     `json:"CA"`
}

// Revocation is the body of POST /v1/pki/revocations: a Serial, or a Name
// (every unrevoked credential of that name, or of that tenant name). The
// answer is the list of credentials revoked.
type Revocation struct {
	Serial string `json:"Serial"`
	Name   string `json:"Name"`
}
