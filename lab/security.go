package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/wnv/wnv/internal/jsonapi"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// The lab runs the policy server as production does: HTTPS with mutual TLS.
// The server creates its CA and the lab operator's admin credential in
// <state>/pki on first start; the lab then issues each host agent its own
// host credential naming its PA (<state>/credentials/<host>), and the
// demo issues tenant credentials to show what each role may do.

func (l *Lab) pkiDir() string { return filepath.Join(l.StateDir, "pki") }

// AdminCredentials is the directory of the lab operator's admin credential
// (wnvctl --credentials DIR).
func (l *Lab) AdminCredentials() string { return filepath.Join(l.pkiDir(), "admin") }

// HostCredentials is the directory of a host agent's credential.
func (l *Lab) HostCredentials(host string) string {
	return filepath.Join(l.StateDir, "credentials", host)
}

// TenantCredentials is the directory of a tenant's credential (the demo's).
func (l *Lab) TenantCredentials(tenant string) string {
	return filepath.Join(l.StateDir, "credentials", "tenant-"+tenant)
}

// issue asks the policy server (as admin) for a credential and writes it to
// dir; the key is generated here. An existing credential is kept.
func (l *Lab) issue(ctx context.Context, req policyapi.IssueRequest, dir string) error {
	if _, err := pki.CredentialsTLS(dir); err == nil {
		return nil
	}
	csr, key, err := pki.NewCSR(req.Name)
	if err != nil {
		return err
	}
	req.CSR = string(csr)
	ic, err := l.Server().IssueCredential(ctx, req)
	if err != nil {
		return fmt.Errorf("policy server: issue a %s credential for %s: %w", req.Role, req.Name, err)
	}
	return pki.WriteCredentials(dir, []byte(ic.CA), []byte(ic.Certificate), key)
}

// issueHostCredentials gives every host agent its host credential.
func (l *Lab) issueHostCredentials(ctx context.Context) error {
	for _, h := range l.Topology.Hosts {
		req := policyapi.IssueRequest{Role: string(pki.Host), Name: h.Name, ProviderAddresses: []netip.Addr{h.PA.Addr()}}
		if err := l.issue(ctx, req, l.HostCredentials(h.Name)); err != nil {
			return err
		}
	}
	return nil
}

// clientAs returns a policy server client presenting the credential in dir
// (none when dir is ""), dialing from namespace ns.
func (l *Lab) clientAs(dir, ns string) (*policyclient.Client, error) {
	var cfg *tls.Config
	if dir == "" {
		ca, err := os.ReadFile(filepath.Join(l.AdminCredentials(), pki.CAFile))
		if err != nil {
			return nil, err
		}
		cfg = &tls.Config{RootCAs: poolOf(ca), MinVersion: tls.VersionTLS12}
	} else {
		var err error
		if cfg, err = pki.CredentialsTLS(dir); err != nil {
			return nil, err
		}
	}
	return policyclient.NewDialer(l.Topology.ServerURL(), cfg, NamespaceDialer(l.Topology.Namespace(ns))), nil
}

// Grant is one line of "who is allowed what".
type Grant struct {
	Identity, Role, May string
}

// Grants lists the lab's identities and what each may do.
func (l *Lab) Grants() []Grant {
	g := []Grant{{"admin (" + l.AdminCredentials() + ")", string(pki.Admin), "everything: tenants, hosts, VMs, migrations, credentials"}}
	for _, h := range l.Topology.Hosts {
		g = append(g, Grant{h.Name, string(pki.Host), fmt.Sprintf("register and heartbeat %s with PA %v only; read the policy of its VMs' routing domains; its redirect keys", h.Name, h.PA.Addr())})
	}
	for _, tn := range l.Topology.Tenants {
		g = append(g, Grant{tn.Name + " " + tn.CustomerID, string(pki.Tenant), "its own routing domains, subnets, VMs and gateways only; no hosts"})
	}
	g = append(g, Grant{"anyone else", "-", "nothing: no credential, 401"})
	return g
}

// AccessCheck is one request the demo makes as some identity, and the
// status it must get.
type AccessCheck struct {
	Who, Role, Request string
	Want, Got          int
	Answer             string
}

// OK is true when the request got the status it should.
func (c AccessCheck) OK() bool { return c.Want == c.Got }

func statusOf(err error) (int, string) {
	if err == nil {
		return http.StatusOK, "ok"
	}
	var se *jsonapi.Error
	if errors.As(err, &se) {
		return se.Status, se.Message
	}
	return 0, err.Error()
}

// AccessChecks asks the policy server what each role may not do: an
// anonymous client, host1 acting for another host, and one tenant reading
// another's VMs, next to the same identities' allowed requests.
func (l *Lab) AccessChecks(ctx context.Context) ([]AccessCheck, error) {
	t := l.Topology
	if t.Static || len(t.Hosts) < 2 || len(t.Tenants) < 2 {
		return nil, errors.New("access checks need the policy server, two hosts and two tenants")
	}
	h1, h2 := t.Hosts[0], t.Hosts[1]
	ten1, ten2 := t.Tenants[0], t.Tenants[1]
	var onH2, ofT1, ofT2 string
	for _, v := range t.VMs {
		if v.Host == h2.Name && onH2 == "" {
			onH2 = v.Name
		}
		if v.Tenant == ten1.Name && ofT1 == "" {
			ofT1 = v.Name
		}
		if v.Tenant == ten2.Name && ofT2 == "" {
			ofT2 = v.Name
		}
	}
	if onH2 == "" || ofT1 == "" || ofT2 == "" {
		return nil, errors.New("access checks need a VM on the second host and a VM of each of the first two tenants")
	}
	for _, tn := range []Tenant{ten1, ten2} {
		if err := l.issue(ctx, policyapi.IssueRequest{Role: string(pki.Tenant), Name: tn.Name}, l.TenantCredentials(tn.Name)); err != nil {
			return nil, err
		}
	}
	anon, err := l.clientAs("", "underlay")
	if err != nil {
		return nil, err
	}
	host1, err := l.clientAs(l.HostCredentials(h1.Name), h1.Name)
	if err != nil {
		return nil, err
	}
	tenant2, err := l.clientAs(l.TenantCredentials(ten2.Name), "underlay")
	if err != nil {
		return nil, err
	}
	defer anon.CloseIdleConnections()
	defer host1.CloseIdleConnections()
	defer tenant2.CloseIdleConnections()
	rd1 := policy.MustParseGUID(ten1.RoutingDomainID)
	var out []AccessCheck
	add := func(who, role, req string, want int, err error) {
		got, msg := statusOf(err)
		out = append(out, AccessCheck{Who: who, Role: role, Request: req, Want: want, Got: got, Answer: msg})
	}
	_, err = anon.VMs(ctx, policyapi.VMFilter{})
	add("anonymous", "-", "GET /v1/vms", http.StatusUnauthorized, err)
	_, err = host1.Heartbeat(ctx, h1.Name)
	add(h1.Name, "host", "heartbeat "+h1.Name, http.StatusOK, err)
	_, err = host1.Heartbeat(ctx, h2.Name)
	add(h1.Name, "host", "heartbeat "+h2.Name, http.StatusForbidden, err)
	_, err = host1.RegisterHost(ctx, policyapi.Host{Name: h2.Name, ProviderAddresses: []netip.Addr{h1.PA.Addr()}})
	add(h1.Name, "host", fmt.Sprintf("register as %s with PA %v", h2.Name, h1.PA.Addr()), http.StatusForbidden, err)
	_, err = host1.MigrateVM(ctx, onH2, h1.Name)
	add(h1.Name, "host", fmt.Sprintf("migrate %s (on %s) to %s", onH2, h2.Name, h1.Name), http.StatusForbidden, err)
	_, err = tenant2.VM(ctx, ofT2)
	add(ten2.Name, "tenant", "read its VM "+ofT2, http.StatusOK, err)
	_, err = tenant2.VM(ctx, ofT1)
	add(ten2.Name, "tenant", fmt.Sprintf("read %s's VM %s", ten1.Name, ofT1), http.StatusForbidden, err)
	_, err = tenant2.Policy(ctx, rd1)
	add(ten2.Name, "tenant", fmt.Sprintf("read %s's policy", ten1.Name), http.StatusForbidden, err)
	return out, nil
}

// PrintGrants prints who is allowed what.
func PrintGrants(w io.Writer, gs []Grant) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tROLE\tMAY")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Identity, g.Role, g.May)
	}
	tw.Flush()
}

// PrintAccessChecks prints the checks and returns how many failed.
func PrintAccessChecks(w io.Writer, cs []AccessCheck) int {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "WHO\tROLE\tREQUEST\tEXPECT\tGOT\tRESULT")
	failed := 0
	for _, c := range cs {
		res := "ok"
		if !c.OK() {
			res, failed = "FAIL", failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", c.Who, c.Role, c.Request, c.Want, c.Got, res)
	}
	tw.Flush()
	for _, c := range cs {
		if c.Got >= 400 {
			fmt.Fprintf(w, "  %d %s: %s\n", c.Got, c.Who, strings.TrimSpace(c.Answer))
		}
	}
	return failed
}

func poolOf(pemCerts []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pemCerts)
	return p
}
