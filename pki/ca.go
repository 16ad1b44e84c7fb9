package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Role is what a client certificate's holder may do at the policy server.
// It is the certificate's Subject OrganizationalUnit; the identity is its
// CommonName.
type Role string

const (
	// Admin may do everything, including issuing and revoking credentials.
	Admin Role = "admin"
	// Tenant may read and change only its own tenant's routing domains,
	// subnets, VMs and gateways. Its CommonName is the tenant's CustomerID.
	Tenant Role = "tenant"
	// Host may register and heartbeat itself only, with the provider
	// addresses in its certificate (IP SANs), and read the policy of the
	// routing domains its VMs are in.
	Host Role = "host"
	// Observer may read (GET and watch) but not write.
	Observer Role = "observer"
	// Server is the policy server's own certificate; it is no client role.
	Server Role = "server"
)

// Roles are the client roles, in the order tables list them.
var Roles = []Role{Admin, Tenant, Host, Observer}

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(s))
	if !slices.Contains(Roles, r) {
		return "", fmt.Errorf("role %q is unknown: use admin, tenant, host or observer", s)
	}
	return r, nil
}

// Organization is the Subject Organization of every certificate wnv issues.
const Organization = "wnv"

// Validity of what wnv issues: the CA for 20 years, credentials for 1 year
// unless asked otherwise, the server certificate for 2 years (it is
// reissued at every start).
const (
	CAValidity         = 20 * 365 * 24 * time.Hour
	DefaultValidity    = 365 * 24 * time.Hour
	ServerCertValidity = 2 * 365 * 24 * time.Hour
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// PEM is Cert encoded, what clients trust.
	PEM []byte
}

// NewCA creates a self-signed ECDSA P-256 CA valid from now for CAValidity.
func NewCA(name string, now time.Time) (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{Organization}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: encodeCert(der)}, keyPEM, nil
}

// ParseCA reads a CA from its PEM certificate and key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("the certificate is not a CA certificate")
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: encodeCert(cert.Raw)}, nil
}

// Request is what a credential is issued for.
type Request struct {
	Role Role
	// Name is the identity: a host's name, a tenant's CustomerID, a
	// person's or program's name.
	Name string
	// DisplayName is an optional second name kept in the certificate
	// (Subject Locality): a tenant's name.
	DisplayName string
	// ProviderAddresses are a host's PAs, the only ones it may register.
	ProviderAddresses []netip.Addr
	// Validity defaults to DefaultValidity.
	Validity time.Duration
	// DNSNames and IPs are the server certificate's names (Role Server).
	DNSNames []string
	IPs      []netip.Addr
}

// Check says in one sentence what is wrong with r.
func (r Request) Check() error {
	if r.Role != Server {
		if _, err := ParseRole(string(r.Role)); err != nil {
			return err
		}
	}
	if r.Name == "" || len(r.Name) > 128 || strings.ContainsAny(r.Name, "/\\\n\r\t ,") {
		return fmt.Errorf("name %q is not usable in a credential: use 1..128 characters without spaces, commas or slashes", r.Name)
	}
	if r.Role == Host && len(r.ProviderAddresses) == 0 {
		return fmt.Errorf("host credential %s needs the provider addresses it may register: give --pa", r.Name)
	}
	if r.Role != Host && r.Role != Server && len(r.ProviderAddresses) > 0 {
		return fmt.Errorf("provider addresses are for host credentials only, not role %s", r.Role)
	}
	for _, pa := range r.ProviderAddresses {
		if !pa.IsValid() || pa.IsUnspecified() || pa.IsMulticast() {
			return fmt.Errorf("provider address %v of %s is not a unicast address", pa, r.Name)
		}
	}
	if r.Validity < 0 {
		return fmt.Errorf("validity %v is negative", r.Validity)
	}
	return nil
}

// Issue signs a certificate for pub as r asks, valid from now.
func (ca *CA) Issue(r Request, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	validity := r.Validity
	if validity == 0 {
		validity = DefaultValidity
		if r.Role == Server {
			validity = ServerCertValidity
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: r.Name, OrganizationalUnit: []string{string(r.Role)}, Organization: []string{Organization}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if r.DisplayName != "" {
		tmpl.Subject.Locality = []string{r.DisplayName}
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	addrs := r.ProviderAddresses
	if r.Role == Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = r.DNSNames
		addrs = r.IPs
	}
	for _, a := range addrs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// IssueKey generates an ECDSA P-256 key and issues a certificate for it;
// it returns both PEM encoded.
func (ca *CA) IssueKey(r Request, now time.Time) (cert *x509.Certificate, certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	if cert, err = ca.Issue(r, &key.PublicKey, now); err != nil {
		return nil, nil, nil, err
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, nil, err
	}
	return cert, encodeCert(cert.Raw), keyPEM, nil
}

// IssueCSR issues a certificate for the key of a PEM certificate signing
// request; the request's own subject is ignored: r decides.
func (ca *CA) IssueCSR(r Request, csrPEM []byte, now time.Time) (*x509.Certificate, []byte, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, nil, errors.New("CSR is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR is malformed: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("CSR signature is invalid: %w", err)
	}
	cert, err := ca.Issue(r, csr.PublicKey, now)
	if err != nil {
		return nil, nil, err
	}
	return cert, encodeCert(cert.Raw), nil
}

// NewCSR generates a key and a PEM certificate signing request for it.
func NewCSR(name string) (csrPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), keyPEM, nil
}

// Identity is who a verified client certificate names.
type Identity struct {
	// Name is the CommonName: a host's name, a tenant's CustomerID, a
	// person's name.
	Name string
	// DisplayName is a tenant's name, when the certificate has one.
	DisplayName       string
	Role              Role
	ProviderAddresses []netip.Addr
	Serial            string
	NotAfter          time.Time
}

func (id Identity) String() string {
	n := id.Name
	if id.DisplayName != "" {
		n += " (" + id.DisplayName + ")"
	}
	return fmt.Sprintf("%s %s", id.Role, n)
}

// SerialText is how wnv writes serial numbers: lower-case hex.
func SerialText(n *big.Int) string { return n.Text(16) }

// IdentityOf reads the identity of a client certificate (already verified
// against the CA).
func IdentityOf(c *x509.Certificate) (Identity, error) {
	id := Identity{Name: c.Subject.CommonName, Serial: SerialText(c.SerialNumber), NotAfter: c.NotAfter}
	if len(c.Subject.Locality) > 0 {
		id.DisplayName = c.Subject.Locality[0]
	}
	if len(c.Subject.OrganizationalUnit) != 1 {
		return id, fmt.Errorf("certificate %q (serial %s) names no single role in its OrganizationalUnit", id.Name, id.Serial)
	}
	r, err := ParseRole(c.Subject.OrganizationalUnit[0])
	if err != nil {
		return id, fmt.Errorf("certificate %q (serial %s): %w", id.Name, id.Serial, err)
	}
	id.Role = r
	if id.Name == "" {
		return id, fmt.Errorf("certificate (serial %s) has no CommonName", id.Serial)
	}
	if r == Host {
		for _, ip := range c.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok {
				id.ProviderAddresses = append(id.ProviderAddresses, a.Unmap())
			}
		}
	}
	return id, nil
}

// Verify checks a client certificate chain against the CA pool at now and
// returns its identity; the error is one sentence naming the certificate.
func Verify(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("no client certificate")
	}
	return verify("client certificate", "this policy server's CA", chain, roots, now)
}

// VerifyHost checks the certificate a host's remote provider API presents
// (wnvd host --api-listen) to a client that dialled it as addrHost: it must
// be a host credential of the CA pool at now that names addrHost, as one of
// its provider addresses (an IP) or as the host's name (CommonName; a DNS
// name whose first label is a dotless CommonName matches too). A host
// credential is a client certificate of the policy server's CA, so this
// replaces the usual server-name check, which needs a server certificate.
func VerifyHost(chain []*x509.Certificate, roots *x509.CertPool, now time.Time, addrHost string) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("it presented no certificate")
	}
	if roots == nil {
		// Verification would fall back to the system's roots.
		return Identity{}, errors.New("the client's credential names no CA to verify its certificate with")
	}
	id, err := verify("its certificate", "the CA of the credentials", chain, roots, now)
	if err != nil {
		return id, err
	}
	if id.Role != Host {
		return id, fmt.Errorf("its certificate is the credential of %s, not of a host", id)
	}
	if !namesHost(id, addrHost) {
		return id, fmt.Errorf("its certificate is the credential of host %q (provider addresses %v), which does not name %s: reach it by its name or one of those addresses", id.Name, id.ProviderAddresses, addrHost)
	}
	return id, nil
}

// namesHost says whether a host identity names addrHost.
func namesHost(id Identity, addrHost string) bool {
	if a, err := netip.ParseAddr(addrHost); err == nil {
		return slices.Contains(id.ProviderAddresses, a.Unmap())
	}
	label, _, _ := strings.Cut(addrHost, ".")
	return strings.EqualFold(addrHost, id.Name) || !strings.Contains(id.Name, ".") && strings.EqualFold(label, id.Name)
}

// verify checks a chain's leaf, what, against the pool ca at now.
func verify(what, ca string, chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (Identity, error) {
	leaf := chain[0]
	name := fmt.Sprintf("%s %q (serial %s)", what, leaf.Subject.CommonName, SerialText(leaf.SerialNumber))
	if now.After(leaf.NotAfter) {
		return Identity{}, fmt.Errorf("%s expired at %s: ask an admin for a new one (wnvctl pki issue)", name, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return Identity{}, fmt.Errorf("%s is not valid before %s", name, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return Identity{}, fmt.Errorf("%s is not signed by %s: %v", name, ca, err)
	}
	return IdentityOf(leaf)
}

// ParseCert decodes the first PEM certificate.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE in it")
	}
	return x509.ParseCertificate(b.Bytes)
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, errors.New("no PEM private key in it")
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("the private key is not PKCS#8 or EC")
}
