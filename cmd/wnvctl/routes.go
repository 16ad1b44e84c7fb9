package main

import (
	"errors"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
)

func init() {
	cr := &cobra.Command{Use: "customer-route", Short: "Manage customer routes (CA-space routing per routing domain)"}
	cr.SetFlagErrorFunc(flagError)
	cr.AddCommand(customerRouteNew(), customerRouteGet(), customerRouteSet(), customerRouteRemove())

	pr := &cobra.Command{Use: "provider-route", Short: "Manage provider routes (PA-space routing)"}
	pr.SetFlagErrorFunc(flagError)
	pr.AddCommand(providerRouteNew(), providerRouteGet(), providerRouteSet(), providerRouteRemove())

	rootCmd.AddCommand(cr, pr)
}

// customerRouteFlags binds a customer route's properties to flags.
type customerRouteFlags struct{ r policy.CustomerRoute }

func (f *customerRouteFlags) identity(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(guidValue{&f.r.RoutingDomainID}, "RoutingDomainID", "routing domain GUID such as {11111111-2222-3333-4444-000000000000}")
	fs.Var(vsidValue{&f.r.VirtualSubnetID}, "VirtualSubnetID", "virtual subnet ID, 4096..16777214")
	fs.Var(prefixValue{&f.r.DestinationPrefix}, "DestinationPrefix", "destination CA prefix such as 10.0.0.0/24")
	fs.Var(addrValue{&f.r.NextHop}, "NextHop", "next-hop CA; absent, 0.0.0.0 or :: means on-link")
}

func (f *customerRouteFlags) filter(cmd *cobra.Command, withCustomer bool) policy.CustomerRouteFilter {
	var flt policy.CustomerRouteFilter
	if changed(cmd, "RoutingDomainID") {
		flt.RoutingDomainID = f.r.RoutingDomainID
	}
	if changed(cmd, "VirtualSubnetID") {
		flt.VirtualSubnetID = f.r.VirtualSubnetID
	}
	if changed(cmd, "DestinationPrefix") {
		flt.DestinationPrefix = f.r.DestinationPrefix
	}
	if changed(cmd, "NextHop") {
		flt.NextHop = f.r.NextHop
	}
	if withCustomer && changed(cmd, "CustomerID") {
		flt.CustomerID = f.r.CustomerID
	}
	return flt
}

func customerRouteNew() *cobra.Command {
	f := &customerRouteFlags{}
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Create a customer route",
		Example: "  wnvctl customer-route new --RoutingDomainID {11111111-2222-3333-4444-000000000000} \\\n" +
			"    --VirtualSubnetID 5001 --DestinationPrefix 10.0.0.0/24",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel := providerClient(cmd)
			defer cancel()
			r, err := c.AddCustomerRoute(ctx, f.r)
			if err != nil {
				return err
			}
			return outputCustomerRoutes(cmd, r, []policy.CustomerRoute{r})
		},
	}
	f.identity(cmd)
	cmd.Flags().Uint32Var(&f.r.Metric, "Metric", 0, "metric; the lowest wins among equal prefixes")
	cmd.Flags().Var(guidValue{&f.r.CustomerID}, "CustomerID", "GUID of the tenant that owns the route")
	for _, name := range []string{"RoutingDomainID", "VirtualSubnetID", "DestinationPrefix"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func customerRouteGet() *cobra.Command {
	f := &customerRouteFlags{}
	cmd := &cobra.Command{
		Use:   "get",
		Short: "List customer routes, all or those matching the given properties",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel := providerClient(cmd)
			defer cancel()
			rs, err := c.CustomerRoutes(ctx, f.filter(cmd, true))
			if err != nil {
				return err
			}
			return outputCustomerRoutes(cmd, rs, rs)
		},
	}
	f.identity(cmd)
	cmd.Flags().Var(guidValue{&f.r.CustomerID}, "CustomerID", "only routes of this tenant")
	return cmd
}

func customerRouteSet() *cobra.Command {
	f := &customerRouteFlags{}
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set the Metric of the customer routes chosen by their identity properties",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt := f.filter(cmd, false)
			if flt == (policy.CustomerRouteFilter{}) {
				return errors.New("no route chosen: give at least one of --RoutingDomainID, --VirtualSubnetID, --DestinationPrefix, --NextHop")
			}
			c, ctx, cancel := providerClient(cmd)
			defer cancel()
			rs, err := c.SetCustomerRoutes(ctx, flt, f.r.Metric)
			if err != nil {
				return err
			}
			return outputCustomerRoutes(cmd, rs, rs)
		},
	}
	f.identity(cmd)
	cmd.Flags().Uint32Var(&f.r.Metric, "Metric", 0, "the new metric")
	cmd.MarkFlagRequired("Metric")
	return cmd
}

func customerRouteRemove() *cobra.Command {
	f := &customerRouteFlags{}
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Remove the customer routes matching the given properties (all when none is given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel := providerClient(cmd)
			defer cancel()
			rs, err := c.RemoveCustomerRoutes(ctx, f.filter(cmd, true))
			if err != nil {
				return err
			}
			return outputCustomerRoutes(cmd, rs, rs)
		},
	}
	f.identity(cmd)
	cmd.Flags().Var(guidValue{&f.r.CustomerID}, "CustomerID", "only routes of this tenant")
	return cmd
}

func outputCustomerRoutes(cmd *cobra.Command, v any, rs []policy.CustomerRoute) error {
	t := outTable{header: []string{"RoutingDomainID", "VirtualSubnetID", "DestinationPrefix", "NextHop", "Metric", "CustomerID"}}
	for _, r := range rs {
		t.add(guidCell(r.RoutingDomainID), numCell(r.VirtualSubnetID), prefixCell(r.DestinationPrefix),
			addrCell(r.NextHop), numCell(r.Metric), guidCell(r.CustomerID))
	}
	return printResult(cmd, v, t)
}

// providerRouteFlags binds a provider route's properties to flags.
type providerRouteFlags struct{ r policy.ProviderRoute }

func (f *providerRouteFlags) identity(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.IntVar(&f.r.InterfaceIndex, "InterfaceIndex", 0, "index of the underlay interface")
	fs.Var(prefixValue{&f.r.DestinationPrefix}, "DestinationPrefix", "destination PA prefix such as 198.18.0.0/15")
	fs.Var(addrValue{&f.r.NextHop}, "NextHop", "next-hop PA; absent, 0.0.0.0 or :: means on-link")
}

func (f *providerRouteFlags) filter(cmd *cobra.Command, withCustomer bool) policy.ProviderRouteFilter {
	var flt policy.ProviderRouteFilter
	if changed(cmd, "InterfaceIndex") {
		flt.InterfaceIndex = f.r.InterfaceIndex
	}
	if changed(cmd, "DestinationPrefix") {
		flt.DestinationPrefix = f.r.DestinationPrefix
	}
	if changed(cmd, "NextHop") {
		flt.NextHop = f.r.NextHop
	}
	if withCustomer && changed(cmd, "CustomerID") {
		flt.CustomerID = f.r.CustomerID
	}
	return flt
}

func providerRouteNew() *cobra.Command {
	f := &providerRouteFlags{}
	cmd := &cobra.Command{
		Use:     "new",
		Short:   "Create a provider route",
		Example: "  wnvctl provider-route new --InterfaceIndex 2 --DestinationPrefix 198.19.0.0/16 --NextHop 198.18.0.1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel := providerClient(cmd)
			defer cancel()
			r, err := c.AddProviderRoute(ctx, f.r)
			if err != nil {
				return err
			}
			return outputProviderRoutes(cmd, r, []policy.ProviderRoute{r})
		},
	}
	f.identity(cmd)
	cmd.Flags().Uint32Var(&f.r.Metric, "Metric", 0, "metric; the lowest wins among equal prefixes")
	cmd.Flags().Var(guidValue{&f.r.CustomerID}, "CustomerID", "GUID of the tenant that owns the route")
	cmd.MarkFlagRequired("DestinationPrefix")
	return cmd
}

func providerRouteGet() *cobra.Command {
	f := &providerRouteFlags{}
	cmd := &cobra.Command{
		Use:   "get",
		Short: "List provider routes, all or those matching the given properties",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel := providerClient(cmd)
			defer cancel()
			rs, err := c.ProviderRoutes(ctx, f.filter(cmd, true))
			if err != nil {
				return err
			}
			return outputProviderRoutes(cmd, rs, rs)
		},
	}
	f.identity(cmd)
	cmd.Flags().Var(guidValue{&f.r.CustomerID}, "CustomerID", "only routes of this tenant")
	return cmd
}

func providerRouteSet() *cobra.Command {
	f := &providerRouteFlags{}
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set the Metric of the provider routes chosen by their identity properties",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt := f.filter(cmd, false)
			if flt == (policy.ProviderRouteFilter{}) {
				return errors.New("no route chosen: give at least one of --InterfaceIndex, --DestinationPrefix, --NextHop")
			}
			c, ctx, cancel := providerClient(cmd)
			defer cancel()
			rs, err := c.SetProviderRoutes(ctx, flt, f.r.Metric)
			if err != nil {
				return err
			}
			return outputProviderRoutes(cmd, rs, rs)
		},
	}
	f.identity(cmd)
	cmd.Flags().Uint32Var(&f.r.Metric, "Metric", 0, "the new metric")
	cmd.MarkFlagRequired("Metric")
	return cmd
}

func providerRouteRemove() *cobra.Command {
	f := &providerRouteFlags{}
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Remove the provider routes matching the given properties (all when none is given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel := providerClient(cmd)
			defer cancel()
			rs, err := c.RemoveProviderRoutes(ctx, f.filter(cmd, true))
			if err != nil {
				return err
			}
			return outputProviderRoutes(cmd, rs, rs)
		},
	}
	f.identity(cmd)
	cmd.Flags().Var(guidValue{&f.r.CustomerID}, "CustomerID", "only routes of this tenant")
	return cmd
}

func outputProviderRoutes(cmd *cobra.Command, v any, rs []policy.ProviderRoute) error {
	t := outTable{header: []string{"InterfaceIndex", "DestinationPrefix", "NextHop", "Metric", "CustomerID"}}
	for _, r := range rs {
		t.add(strconv.Itoa(r.InterfaceIndex), prefixCell(r.DestinationPrefix), addrCell(r.NextHop),
			numCell(r.Metric), guidCell(r.CustomerID))
	}
	return printResult(cmd, v, t)
}
