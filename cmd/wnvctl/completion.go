package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/provider"
)

// completionTimeout bounds the request a completion makes for object names,
// so that a slow or absent server costs the shell at most this.
const completionTimeout = 2 * time.Second

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script: commands, flags, and object names from the policy server and wnvd",
		Long: `Print the completion script of a shell. Besides commands and flags it completes the names of
VMs, hosts, tenants, routing domains, subnets and gateways (asked of the policy server at --server)
and of ports and lookup records' customer addresses (asked of wnvd at --socket or --host), each with
a short timeout and nothing offered when the server does not answer.`,
		Example: "  source <(wnvctl completion bash)                          # bash, or in ~/.bashrc\n" +
			"  wnvctl completion zsh > \"${fpath[1]}/_wnvctl\"             # zsh, then a new shell\n" +
			"  wnvctl completion fish > ~/.config/fish/completions/wnvctl.fish",
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 || !slices.Contains([]string{"bash", "zsh", "fish"}, args[0]) {
				return fmt.Errorf("shell %q is not supported: give one of bash, zsh or fish", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return cmd.Root().GenBashCompletionV2(w, true)
			case "zsh":
				return cmd.Root().GenZshCompletion(w)
			default:
				return cmd.Root().GenFishCompletion(w, true)
			}
		},
	})
	rootCmd.CompletionOptions.DisableDefaultCmd = true
}

// completeFirst completes the first argument only, for commands that take
// one object name.
func completeFirst(f cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return f(cmd, args, toComplete)
	}
}

// fromServer completes with the names list gets from the policy server of
// the command line's --server and credentials; any failure offers nothing.
func fromServer(list func(context.Context, *policyclient.Client) ([]cobra.Completion, error)) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		cfg, err := clientTLS()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		names, err := list(ctx, policyclient.New(flagServer, cfg))
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// fromProvider completes with the names list gets from the wnvd of the
// command line's --socket or --host; any failure offers nothing.
func fromProvider(list func(context.Context, *provider.Client) ([]cobra.Completion, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		c, _, cancel, err := providerClient(cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cancel()
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		names, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// Completions of object names, each with a description where the name alone
// says little.
var (
	completeVMs = fromServer(func(ctx context.Context, c *policyclient.Client) ([]cobra.Completion, error) {
		vms, err := c.VMs(ctx, policyapi.VMFilter{})
		return names(vms, func(v policyapi.VM) cobra.Completion {
			return cobra.CompletionWithDesc(v.Name, fmt.Sprintf("VSID %d on %s", v.VirtualSubnetID, v.Host))
		}), err
	})
	completeHosts = fromServer(func(ctx context.Context, c *policyclient.Client) ([]cobra.Completion, error) {
		hs, err := c.Hosts(ctx)
		return names(hs, func(h policyapi.Host) cobra.Completion { return h.Name }), err
	})
	completeTenants = fromServer(func(ctx context.Context, c *policyclient.Client) ([]cobra.Completion, error) {
		ts, err := c.Tenants(ctx)
		return names(ts, func(t policyapi.Tenant) cobra.Completion {
			return cobra.CompletionWithDesc(t.CustomerID.String(), t.Name)
		}), err
	})
	completeRoutingDomains = fromServer(func(ctx context.Context, c *policyclient.Client) ([]cobra.Completion, error) {
		rds, err := c.RoutingDomains(ctx)
		return names(rds, func(rd policyapi.RoutingDomain) cobra.Completion {
			return cobra.CompletionWithDesc(rd.RoutingDomainID.String(), rd.Name)
		}), err
	})
	completeSubnets = fromServer(func(ctx context.Context, c *policyclient.Client) ([]cobra.Completion, error) {
		ss, err := c.Subnets(ctx, policy.GUID{})
		return names(ss, func(s policyapi.Subnet) cobra.Completion {
			return cobra.CompletionWithDesc(fmt.Sprint(s.VirtualSubnetID), prefixesValue{&s.Prefixes}.String())
		}), err
	})
	completeGateways = fromServer(func(ctx context.Context, c *policyclient.Client) ([]cobra.Completion, error) {
		gs, err := c.Gateways(ctx)
		return names(gs, func(g policyapi.Gateway) cobra.Completion { return g.Name }), err
	})
	completePorts = fromProvider(func(ctx context.Context, c *provider.Client) ([]cobra.Completion, error) {
		ps, err := c.Ports(ctx)
		return names(ps, func(p provider.Port) cobra.Completion { return p.Name }), err
	})
	completeRecordCAs = fromProvider(func(ctx context.Context, c *provider.Client) ([]cobra.Completion, error) {
		rs, err := c.LookupRecords(ctx, policy.LookupRecordFilter{})
		var cas []netip.Addr
		for _, r := range rs {
			if !slices.Contains(cas, r.CustomerAddress) {
				cas = append(cas, r.CustomerAddress)
			}
		}
		return names(cas, func(a netip.Addr) cobra.Completion { return a.String() }), err
	})
)

func names[T any](xs []T, name func(T) cobra.Completion) []cobra.Completion {
	out := make([]cobra.Completion, len(xs))
	for i, x := range xs {
		out[i] = name(x)
	}
	return out
}
