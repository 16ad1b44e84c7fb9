package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// Credentials of the policy server's clients: issued by its CA at the
// server (admin only), revoked there, kept in etcd.

func init() {
	rootCmd.AddCommand(policyServerGroup("pki", "Issue, list and revoke the credentials (client certificates) of the policy server's clients",
		pkiIssue(), pkiGet(), pkiRevoke(), pkiWhoami()))
}

func pkiIssue() *cobra.Command {
	var pas []string
	var out string
	var token bool
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "issue ROLE NAME",
		Short: "Issue a credential: admin NAME, observer NAME, tenant NAME|CUSTOMERID, host NAME --provider-address PA...",
		Long: `Issue a credential and write it to --out DIR (ca.pem, cert.pem, key.pem 0600).
The key is generated here; the policy server signs a request for it (admin only).
An observer may instead get a --token, a read-only bearer token for the dashboard
(https://SERVER/ui/), printed once: the server keeps only its hash.`,
		Example: `  wnvctl pki issue host host1 --provider-address 198.18.0.1 --out host1
  wnvctl pki issue tenant Blue --out blue          (by tenant name or CustomerID)
  wnvctl pki issue admin alice --out alice
  wnvctl pki issue observer bob --out bob
  wnvctl pki issue observer carol --token`,
		Args: cobra.ExactArgs(2),
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			role, err := pki.ParseRole(args[0])
			if err != nil {
				return err
			}
			if token == (out != "") {
				return fmt.Errorf("give exactly one of --out DIR (a certificate) and --token (an observer's dashboard token)")
			}
			req := policyapi.IssueRequest{Role: string(role), Name: args[1], ValidityHours: int64(validity / time.Hour), Token: token}
			if token {
				if len(pas) > 0 {
					return fmt.Errorf("--provider-address is for host certificates: a token has no provider addresses")
				}
				ic, err := c.IssueCredential(ctx, req)
				if err != nil {
					return err
				}
				cr := ic.Credential
				t := outTable{header: []string{"SERIAL", "ROLE", "NAME", "NOT-AFTER", "TOKEN"}}
				t.add(cr.Serial, cr.Role, credName(cr), cr.NotAfter.Format(time.RFC3339), ic.Token)
				return printResult(cmd, struct {
					policyapi.Credential
					Token string `json:"Token"`
				}{cr, ic.Token}, t)
			}
			for _, p := range pas {
				a, err := netip.ParseAddr(p)
				if err != nil {
					return fmt.Errorf("--provider-address %q is not an address: use e.g. 198.18.0.1", p)
				}
				req.ProviderAddresses = append(req.ProviderAddresses, a)
			}
			csr, key, err := pki.NewCSR(args[1])
			if err != nil {
				return err
			}
			req.CSR = string(csr)
			ic, err := c.IssueCredential(ctx, req)
			if err != nil {
				return err
			}
			if err := pki.WriteCredentials(out, []byte(ic.CA), []byte(ic.Certificate), key); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			cr := ic.Credential
			t := outTable{header: []string{"SERIAL", "ROLE", "NAME", "PROVIDER-ADDRESSES", "NOT-AFTER", "WRITTEN-TO"}}
			t.add(cr.Serial, cr.Role, credName(cr), addrList(cr.ProviderAddresses), cr.NotAfter.Format(time.RFC3339), out)
			return printResult(cmd, cr, t)
		}),
	}
	cmd.Flags().StringSliceVar(&pas, "provider-address", nil, "a host's provider address it may register (repeatable)")
	aliasFlags(cmd, "pa", "provider-address")
	cmd.Flags().StringVar(&out, "out", "", "directory to write ca.pem, cert.pem and key.pem to")
	cmd.Flags().BoolVar(&token, "token", false, "issue an observer's read-only bearer token for the dashboard instead of a certificate")
	cmd.Flags().DurationVar(&validity, "validity", pki.DefaultValidity, "how long the credential is valid (hours)")
	return cmd
}

func credName(c policyapi.Credential) string {
	if c.DisplayName != "" {
		return c.Name + " (" + c.DisplayName + ")"
	}
	return c.Name
}

func addrList(as []netip.Addr) string {
	if len(as) == 0 {
		return "-"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func credTable(cs []policyapi.Credential) outTable {
	t := outTable{header: []string{"SERIAL", "ROLE", "NAME", "PROVIDER-ADDRESSES", "NOT-AFTER", "REVOKED"}}
	for _, c := range cs {
		rev := "-"
		if c.Revoked {
			rev = c.RevokedAt.Format(time.RFC3339)
		}
		t.add(c.Serial, c.Role, credName(c), addrList(c.ProviderAddresses), c.NotAfter.Format(time.RFC3339), rev)
	}
	return t
}

func pkiGet() *cobra.Command {
	return &cobra.Command{
		Use: "get", Short: "List issued credentials", Args: cobra.NoArgs,
		Example: "  wnvctl pki get\n  wnvctl pki get -o yaml",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, _ []string) error {
			cs, err := c.Credentials(ctx)
			if err != nil {
				return err
			}
			return printResult(cmd, cs, credTable(cs))
		}),
	}
}

func pkiRevoke() *cobra.Command {
	return &cobra.Command{
		Use: "revoke SERIAL|NAME", Short: "Revoke a credential by serial, or every credential of a name (a tenant's by its name too)",
		Example: "  wnvctl pki revoke bob\n  wnvctl pki revoke 4f1c2a9e0b7d3c5a",
		Args:    cobra.ExactArgs(1),
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			r := policyapi.Revocation{Name: args[0]}
			if isSerial(args[0]) {
				r = policyapi.Revocation{Serial: args[0]}
			}
			cs, err := c.Revoke(ctx, r)
			if err != nil {
				return err
			}
			return printResult(cmd, cs, credTable(cs))
		}),
	}
}

// isSerial: serials are long hex numbers; names are not.
func isSerial(s string) bool {
	s = strings.TrimPrefix(s, "0x")
	if len(s) < 16 {
		return false
	}
	if len(s)%2 == 1 {
		s = "0" + s
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func pkiWhoami() *cobra.Command {
	return &cobra.Command{
		Use: "whoami", Short: "Show the identity and role the policy server sees in this credential", Args: cobra.NoArgs,
		Example: "  wnvctl pki whoami --credentials /etc/wnv/alice",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, _ []string) error {
			cr, err := c.WhoAmI(ctx)
			if err != nil {
				return err
			}
			t := outTable{header: []string{"ROLE", "NAME", "SERIAL", "PROVIDER-ADDRESSES", "NOT-AFTER"}}
			t.add(cr.Role, credName(cr), cr.Serial, addrList(cr.ProviderAddresses), cr.NotAfter.Format(time.RFC3339))
			return printResult(cmd, cr, t)
		}),
	}
}
