package main

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

// Provisioning through the policy server: tenants, routing domains, virtual
// subnets and hosts, enough to place VMs.

func init() {
	rootCmd.AddCommand(
		policyServerGroup("tenant", "Manage tenants (customers) on the policy server", tenantCreate(), tenantGet(), tenantDelete()),
		policyServerGroup("routing-domain", "Manage routing domains on the policy server", rdCreate(), rdGet(), rdDelete()),
		policyServerGroup("subnet", "Manage virtual subnets on the policy server", subnetCreate(), subnetGet(), subnetDelete()),
		policyServerGroup("host", "Register, list and delete hosts on the policy server", hostCreate(), hostGet(), hostDelete()),
		policyServerGroup("gateway", "Manage gateways on the policy server: the way out of a virtual subnet to any outside address", gatewayCreate(), gatewayGet(), gatewayDelete()),
	)
}

// guidArg parses a GUID argument; what names it in the error.
func guidArg(what, s string) (policy.GUID, error) {
	g, err := policy.ParseGUID(s)
	if err != nil {
		return g, fmt.Errorf("%s %q is malformed: use a GUID such as {11111111-2222-3333-4444-000000000000}", what, s)
	}
	return g, nil
}

func tenantCreate() *cobra.Command {
	var t policyapi.Tenant
	cmd := &cobra.Command{
		Use: "create", Short: "Create a tenant", Args: cobra.NoArgs,
		Example: "  wnvctl tenant create --customer-id {aaaaaaaa-0000-0000-0000-000000000001} --name contoso",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, _ []string) error {
			t, err := c.CreateTenant(ctx, t)
			if err != nil {
				return err
			}
			return outputTenants(cmd, t, []policyapi.Tenant{t})
		}),
	}
	cmd.Flags().Var(guidValue{&t.CustomerID}, "customer-id", "CustomerID (GUID)")
	cmd.Flags().StringVar(&t.Name, "name", "", "tenant name")
	cmd.MarkFlagRequired("customer-id")
	aliasFlags(cmd, "id", "customer-id")
	return cmd
}

func tenantGet() *cobra.Command {
	return &cobra.Command{
		Use: "get [CUSTOMERID]", Short: "Show one tenant or list them", Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: completeFirst(completeTenants), Example: "  wnvctl tenant get\n  wnvctl tenant get {aaaaaaaa-0000-0000-0000-000000000001} -o yaml",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			if len(args) == 1 {
				id, err := guidArg("CustomerID", args[0])
				if err != nil {
					return err
				}
				t, err := c.Tenant(ctx, id)
				if err != nil {
					return err
				}
				return outputTenants(cmd, t, []policyapi.Tenant{t})
			}
			ts, err := c.Tenants(ctx)
			if err != nil {
				return err
			}
			return outputTenants(cmd, ts, ts)
		}),
	}
}

func tenantDelete() *cobra.Command {
	return &cobra.Command{
		Use: "delete CUSTOMERID", Short: "Delete a tenant without routing domains", Args: cobra.ExactArgs(1),
		ValidArgsFunction: completeFirst(completeTenants), Example: "  wnvctl tenant delete {aaaaaaaa-0000-0000-0000-000000000001}",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			id, err := guidArg("CustomerID", args[0])
			if err != nil {
				return err
			}
			return c.DeleteTenant(ctx, id)
		}),
	}
}

func outputTenants(cmd *cobra.Command, v any, ts []policyapi.Tenant) error {
	t := outTable{header: []string{"CUSTOMERID", "NAME"}}
	for _, x := range ts {
		t.add(guidCell(x.CustomerID), strCell(x.Name))
	}
	return printResult(cmd, v, t)
}

func rdCreate() *cobra.Command {
	var rd policyapi.RoutingDomain
	cmd := &cobra.Command{
		Use: "create", Short: "Create a routing domain of a tenant", Args: cobra.NoArgs,
		Example: "  wnvctl routing-domain create --routing-domain-id {11111111-2222-3333-4444-000000000000} \\\n" +
			"    --customer-id {aaaaaaaa-0000-0000-0000-000000000001} --name contoso-prod",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, _ []string) error {
			rd, err := c.CreateRoutingDomain(ctx, rd)
			if err != nil {
				return err
			}
			return outputRDs(cmd, rd, []policyapi.RoutingDomain{rd})
		}),
	}
	cmd.Flags().Var(guidValue{&rd.RoutingDomainID}, "routing-domain-id", "RoutingDomainID (GUID)")
	cmd.Flags().Var(guidValue{&rd.CustomerID}, "customer-id", "CustomerID of the owning tenant")
	cmd.Flags().StringVar(&rd.Name, "name", "", "routing domain name")
	cmd.MarkFlagRequired("routing-domain-id")
	cmd.MarkFlagRequired("customer-id")
	aliasFlags(cmd, "id", "routing-domain-id", "tenant", "customer-id")
	cmd.RegisterFlagCompletionFunc("customer-id", completeTenants)
	return cmd
}

func rdGet() *cobra.Command {
	return &cobra.Command{
		Use: "get [RDID]", Short: "Show one routing domain or list them", Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: completeFirst(completeRoutingDomains), Example: "  wnvctl routing-domain get\n  wnvctl routing-domain get {11111111-2222-3333-4444-000000000000}",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			if len(args) == 1 {
				id, err := guidArg("RoutingDomainID", args[0])
				if err != nil {
					return err
				}
				rd, err := c.RoutingDomain(ctx, id)
				if err != nil {
					return err
				}
				return outputRDs(cmd, rd, []policyapi.RoutingDomain{rd})
			}
			rds, err := c.RoutingDomains(ctx)
			if err != nil {
				return err
			}
			return outputRDs(cmd, rds, rds)
		}),
	}
}

func rdDelete() *cobra.Command {
	return &cobra.Command{
		Use: "delete RDID", Short: "Delete a routing domain without subnets", Args: cobra.ExactArgs(1),
		ValidArgsFunction: completeFirst(completeRoutingDomains), Example: "  wnvctl routing-domain delete {11111111-2222-3333-4444-000000000000}",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			id, err := guidArg("RoutingDomainID", args[0])
			if err != nil {
				return err
			}
			return c.DeleteRoutingDomain(ctx, id)
		}),
	}
}

func outputRDs(cmd *cobra.Command, v any, rds []policyapi.RoutingDomain) error {
	t := outTable{header: []string{"ROUTINGDOMAINID", "CUSTOMERID", "NAME"}}
	for _, x := range rds {
		t.add(guidCell(x.RoutingDomainID), guidCell(x.CustomerID), strCell(x.Name))
	}
	return printResult(cmd, v, t)
}

// prefixesValue is a repeatable prefix flag.
type prefixesValue struct{ p *[]netip.Prefix }

func (v prefixesValue) String() string {
	s := make([]string, len(*v.p))
	for i, p := range *v.p {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
func (v prefixesValue) Type() string { return "prefixes" }
func (v prefixesValue) Set(s string) error {
	if s == "" {
		return nil
	}
	for f := range strings.SplitSeq(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(f))
		if err != nil {
			return ruleError("use prefixes such as 10.0.0.0/24 or fd00:0:0:1::/64, repeat the flag for more")
		}
		*v.p = append(*v.p, p)
	}
	return nil
}

// Append, Replace and GetSlice make prefixesValue a pflag.SliceValue.
func (v prefixesValue) Append(s string) error { return v.Set(s) }
func (v prefixesValue) Replace(ss []string) error {
	*v.p = nil
	for _, s := range ss {
		if err := v.Set(s); err != nil {
			return err
		}
	}
	return nil
}
func (v prefixesValue) GetSlice() []string {
	if len(*v.p) == 0 {
		return nil
	}
	return strings.Split(v.String(), ",")
}

func subnetCreate() *cobra.Command {
	var s policyapi.Subnet
	var encap, rule string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a virtual subnet in a routing domain",
		Example: "  wnvctl subnet create --virtual-subnet-id 5001 --routing-domain-id {11111111-2222-3333-4444-000000000000} \\\n" +
			"    --prefix 10.0.0.0/24 --prefix fd00:0:0:1::/64 --encapsulation VXLAN\n" +
			"  wnvctl subnet create --virtual-subnet-id 7001 --routing-domain-id {11111111-2222-3333-4444-000000000000} \\\n" +
			"    --prefix 10.0.0.0/24 --rule Nat --provider-prefix 198.18.64.0/24",
		Args: cobra.NoArgs,
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, _ []string) error {
			s.Encapsulation, s.Rule = policyapi.Encapsulation(encap), policyapi.Rule(rule)
			s, err := c.CreateSubnet(ctx, s)
			if err != nil {
				return err
			}
			return outputSubnets(cmd, s, []policyapi.Subnet{s})
		}),
	}
	fs := cmd.Flags()
	fs.Var(vsidValue{&s.VirtualSubnetID}, "virtual-subnet-id", "VirtualSubnetID, 4096..16777214")
	fs.Var(guidValue{&s.RoutingDomainID}, "routing-domain-id", "RoutingDomainID the subnet belongs to")
	fs.Var(prefixesValue{&s.Prefixes}, "prefix", "an IPv4 or IPv6 prefix of the subnet (repeatable)")
	fs.Var(addrsValue{&s.Gateways}, "gateway", "gateway address (default: the first host address of each prefix)")
	fs.StringVar(&encap, "encapsulation", "NVGRE", "NVGRE or VXLAN")
	fs.StringVar(&rule, "rule", "Encap", "how the subnet's VMs cross the underlay: Encap, or Nat (IP Rewrite: a PA per CA, from --provider-prefix)")
	fs.Var(prefixesValue{&s.ProviderPrefixes}, "provider-prefix", "with --rule Nat: the provider prefix its VMs' PAs come from, one per family of --prefix (repeatable)")
	for _, f := range []string{"virtual-subnet-id", "routing-domain-id", "prefix"} {
		cmd.MarkFlagRequired(f)
	}
	aliasFlags(cmd, "vsid", "virtual-subnet-id", "routing-domain", "routing-domain-id", "encap", "encapsulation", "pa-pool", "provider-prefix")
	cmd.RegisterFlagCompletionFunc("rule", cobra.FixedCompletions([]string{"Encap", "Nat"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("routing-domain-id", completeRoutingDomains)
	cmd.RegisterFlagCompletionFunc("encapsulation", cobra.FixedCompletions([]string{"NVGRE", "VXLAN"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func subnetGet() *cobra.Command {
	var rd policy.GUID
	cmd := &cobra.Command{
		Use: "get [VSID]", Short: "Show one virtual subnet or list them", Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: completeFirst(completeSubnets), Example: "  wnvctl subnet get --routing-domain-id {11111111-2222-3333-4444-000000000000}\n  wnvctl subnet get 5001 -o json",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			if len(args) == 1 {
				var v policy.VSID
				if err := (vsidValue{&v}).Set(args[0]); err != nil {
					return ruleError("VirtualSubnetID " + strconv.Quote(args[0]) + " is malformed: " + err.Error())
				}
				s, err := c.Subnet(ctx, v)
				if err != nil {
					return err
				}
				return outputSubnets(cmd, s, []policyapi.Subnet{s})
			}
			ss, err := c.Subnets(ctx, rd)
			if err != nil {
				return err
			}
			return outputSubnets(cmd, ss, ss)
		}),
	}
	cmd.Flags().Var(guidValue{&rd}, "routing-domain-id", "only subnets of this routing domain")
	aliasFlags(cmd, "routing-domain", "routing-domain-id")
	cmd.RegisterFlagCompletionFunc("routing-domain-id", completeRoutingDomains)
	return cmd
}

func subnetDelete() *cobra.Command {
	return &cobra.Command{
		Use: "delete VSID", Short: "Delete a virtual subnet without VMs or gateways", Args: cobra.ExactArgs(1),
		ValidArgsFunction: completeFirst(completeSubnets), Example: "  wnvctl subnet delete 5001",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			var v policy.VSID
			if err := (vsidValue{&v}).Set(args[0]); err != nil {
				return ruleError("VirtualSubnetID " + strconv.Quote(args[0]) + " is malformed: " + err.Error())
			}
			return c.DeleteSubnet(ctx, v)
		}),
	}
}

func outputSubnets(cmd *cobra.Command, v any, ss []policyapi.Subnet) error {
	t := outTable{header: []string{"VSID", "ROUTINGDOMAINID", "PREFIXES", "GATEWAYS", "ENCAP", "RULE", "PA POOL"}}
	for _, s := range ss {
		t.add(numCell(s.VirtualSubnetID), guidCell(s.RoutingDomainID), strCell(prefixesValue{&s.Prefixes}.String()),
			strCell(addrsValue{&s.Gateways}.String()), string(s.Encapsulation), strCell(string(cmp.Or(s.Rule, policyapi.RuleEncap))),
			strCell(prefixesValue{&s.ProviderPrefixes}.String()))
	}
	return printResult(cmd, v, t)
}

func hostCreate() *cobra.Command {
	var h policyapi.Host
	cmd := &cobra.Command{
		Use:     "create",
		Aliases: []string{"register"},
		Short:   "Register a host and its PAs (the host agent does this itself; for tests and provisioning)",
		Example: "  wnvctl host create --name host2 --provider-address 198.18.0.2",
		Args:    cobra.NoArgs,
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, _ []string) error {
			h, err := c.RegisterHost(ctx, h)
			if err != nil {
				return err
			}
			return outputHosts(cmd, h, []policyapi.Host{h})
		}),
	}
	cmd.Flags().StringVar(&h.Name, "name", "", "host name")
	cmd.Flags().Var(addrsValue{&h.ProviderAddresses}, "provider-address", "a provider address of the host (repeatable; the first is used for its VMs)")
	cmd.Flags().Int64Var(&h.TTLSeconds, "ttl", policyapi.DefaultTTL, "liveness lease in seconds, renewed by heartbeats")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("provider-address")
	aliasFlags(cmd, "pa", "provider-address")
	return cmd
}

func hostGet() *cobra.Command {
	return &cobra.Command{
		Use: "get [NAME]", Short: "Show one host or list them, with liveness", Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: completeFirst(completeHosts), Example: "  wnvctl host get\n  wnvctl host get host2",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			if len(args) == 1 {
				h, err := c.Host(ctx, args[0])
				if err != nil {
					return err
				}
				return outputHosts(cmd, h, []policyapi.Host{h})
			}
			hs, err := c.Hosts(ctx)
			if err != nil {
				return err
			}
			return outputHosts(cmd, hs, hs)
		}),
	}
}

func hostDelete() *cobra.Command {
	return &cobra.Command{
		Use: "delete NAME", Short: "Delete a host without VMs or gateways", Args: cobra.ExactArgs(1),
		ValidArgsFunction: completeFirst(completeHosts), Example: "  wnvctl host delete host2",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			return c.DeleteHost(ctx, args[0])
		}),
	}
}

func outputHosts(cmd *cobra.Command, v any, hs []policyapi.Host) error {
	t := outTable{header: []string{"NAME", "PROVIDER ADDRESSES", "ALIVE", "TTL"}}
	for _, h := range hs {
		t.add(h.Name, strCell(addrsValue{&h.ProviderAddresses}.String()), strconv.FormatBool(h.Alive), strconv.FormatInt(h.TTLSeconds, 10))
	}
	return printResult(cmd, v, t)
}

func gatewayCreate() *cobra.Command {
	var g policyapi.Gateway
	var cas []netip.Addr
	var mode string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a gateway: a GatewayWildcard record and a default route of its routing domain point at it",
		Long: `Create a gateway: a GatewayWildcard record and a default route of its routing domain point at it.

Without --mode the gateway is a VM or appliance of your own. With --mode forward or nat the
gateway host's wnvd (run with --edge-gateways) builds it: a network namespace joined to the
virtual subnet through a port, routing to --external-interface (forward: both ways; nat:
outbound only, masqueraded behind --external-address). Only an admin creates those.`,
		Example: `  wnvctl gateway create --name gw1 --virtual-subnet-id 5001 --mac-address 00:15:5d:00:00:fe --customer-address 10.0.0.254 --host host1
  wnvctl gateway create --name blue-gw --virtual-subnet-id 5001 --mac-address 02:00:00:00:50:fe \
    --customer-address 10.0.0.254 --customer-address fd00:0:0:1::fe \
    --host gwhost --mode forward --external-interface ext0 \
    --external-address 203.0.113.2/24 --external-address 2001:db8:e::2/64 \
    --external-gateway 203.0.113.1 --external-gateway 2001:db8:e::1`,
		Args: cobra.NoArgs,
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, _ []string) error {
			switch {
			case len(cas) == 1:
				g.CustomerAddress = cas[0]
			case len(cas) == 2 && cas[0].Is6() && cas[1].Is4():
				g.CustomerAddress, g.CustomerAddress6 = cas[1], cas[0]
			case len(cas) == 2:
				g.CustomerAddress, g.CustomerAddress6 = cas[0], cas[1]
			default:
				return fmt.Errorf("--customer-address is given %d times: give the gateway's customer address, or one IPv4 and one IPv6 address", len(cas))
			}
			g.Mode = policyapi.GatewayMode(mode)
			g, err := c.CreateGateway(ctx, g)
			if err != nil {
				return err
			}
			return outputGateways(cmd, g, []policyapi.Gateway{g})
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&g.Name, "name", "", "gateway name")
	fs.Var(vsidValue{&g.VirtualSubnetID}, "virtual-subnet-id", "virtual subnet the gateway sits in, 4096..16777214")
	fs.Var(macValue{&g.MACAddress}, "mac-address", "the gateway's MAC address")
	fs.Var(addrsValue{&cas}, "customer-address", "the gateway's customer address, next hop of the default route (twice for dual stack: IPv4 and IPv6)")
	fs.StringVar(&g.Host, "host", "", "host the gateway runs on")
	fs.StringVar(&mode, "mode", "", "forward or nat: the host builds the gateway (default: a gateway VM of your own)")
	fs.StringVar(&g.ExternalInterface, "external-interface", "", "with --mode: the gateway host's interface on the outside network")
	fs.Var(prefixesValue{&g.ExternalAddresses}, "external-address", "with --mode: the gateway's address on the outside network with its prefix length (one per family, repeatable)")
	fs.Var(addrsValue{&g.ExternalGateways}, "external-gateway", "with --mode: the outside router the gateway's default route goes to (one per family, repeatable)")
	for _, f := range []string{"name", "virtual-subnet-id", "mac-address", "customer-address", "host"} {
		cmd.MarkFlagRequired(f)
	}
	aliasFlags(cmd, "vsid", "virtual-subnet-id", "mac", "mac-address", "ca", "customer-address")
	cmd.RegisterFlagCompletionFunc("host", completeHosts)
	cmd.RegisterFlagCompletionFunc("virtual-subnet-id", completeSubnets)
	cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"forward", "nat"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func gatewayGet() *cobra.Command {
	return &cobra.Command{
		Use: "get [NAME]", Short: "Show one gateway or list them", Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: completeFirst(completeGateways), Example: "  wnvctl gateway get\n  wnvctl gateway get gw1 -o yaml",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			if len(args) == 1 {
				g, err := c.Gateway(ctx, args[0])
				if err != nil {
					return err
				}
				return outputGateways(cmd, g, []policyapi.Gateway{g})
			}
			gs, err := c.Gateways(ctx)
			if err != nil {
				return err
			}
			return outputGateways(cmd, gs, gs)
		}),
	}
}

func gatewayDelete() *cobra.Command {
	return &cobra.Command{
		Use: "delete NAME", Short: "Delete a gateway and its record and default route", Args: cobra.ExactArgs(1),
		ValidArgsFunction: completeFirst(completeGateways), Example: "  wnvctl gateway delete gw1",
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			return c.DeleteGateway(ctx, args[0])
		}),
	}
}

func outputGateways(cmd *cobra.Command, v any, gs []policyapi.Gateway) error {
	t := outTable{header: []string{"NAME", "VSID", "MAC", "CA", "HOST", "PA", "ROUTINGDOMAINID", "MODE", "EXTERNAL"}}
	for _, g := range gs {
		cas := g.CustomerAddresses()
		ext := ""
		if g.Mode != "" {
			ext = g.ExternalInterface + " " + prefixesValue{&g.ExternalAddresses}.String()
		}
		t.add(g.Name, numCell(g.VirtualSubnetID), g.MACAddress.String(), strCell(addrsValue{&cas}.String()), g.Host, addrCell(g.ProviderAddress), guidCell(g.RoutingDomainID),
			strCell(string(g.Mode)), strCell(ext))
	}
	return printResult(cmd, v, t)
}
