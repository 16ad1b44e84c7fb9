package main

import (
	"context"
	"errors"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

func init() {
	customerRoutes := routeVerbs[policy.CustomerRoute, policy.CustomerRouteFilter]{
		kind:  "customer",
		flags: func() routeFlags[policy.CustomerRoute, policy.CustomerRouteFilter] { return &customerRouteFlags{} },
		example: "  wnvctl customer-route create --routing-domain-id {11111111-2222-3333-4444-000000000000} \\\n" +
			"    --virtual-subnet-id 5001 --destination-prefix 10.0.0.0/24",
		samplePrefix: "10.0.0.0/24",
		required:     []string{"routing-domain-id", "virtual-subnet-id", "destination-prefix"},
		chosenBy:     []string{"routing-domain-id", "virtual-subnet-id", "destination-prefix", "next-hop"},
		add:          (*provider.Client).AddCustomerRoute,
		list:         (*provider.Client).CustomerRoutes,
		set:          (*provider.Client).SetCustomerRoutes,
		remove:       (*provider.Client).RemoveCustomerRoutes,
		table:        customerRouteTable,
	}
	providerRoutes := routeVerbs[policy.ProviderRoute, policy.ProviderRouteFilter]{
		kind:         "provider",
		flags:        func() routeFlags[policy.ProviderRoute, policy.ProviderRouteFilter] { return &providerRouteFlags{} },
		example:      "  wnvctl provider-route create --interface-index 2 --destination-prefix 198.19.0.0/16 --next-hop 198.18.0.1",
		samplePrefix: "198.19.0.0/16",
		required:     []string{"destination-prefix"},
		chosenBy:     []string{"interface-index", "destination-prefix", "next-hop"},
		add:          (*provider.Client).AddProviderRoute,
		list:         (*provider.Client).ProviderRoutes,
		set:          (*provider.Client).SetProviderRoutes,
		remove:       (*provider.Client).RemoveProviderRoutes,
		table:        providerRouteTable,
	}
	rootCmd.AddCommand(
		customerRoutes.group("Manage customer routes (CA-space routing per routing domain)"),
		providerRoutes.group("Manage provider routes (PA-space routing)"))
}

// routeFlags binds one kind of route's properties to flags.
type routeFlags[R, F any] interface {
	// identity binds the identity properties of create.
	identity(cmd *cobra.Command)
	// selection binds the identity properties as filters, which choose the
	// routes of set; with all, also Metric and CustomerID, for get and
	// delete. Each takes a list (commas or a repeated flag).
	selection(cmd *cobra.Command, all bool)
	filter() *F
	route() *R
	metric() *uint32
	customerID() *policy.GUID
}

// routeVerbs builds the create, get, set and delete commands of one kind of
// route: customer and provider routes differ only in their identity flags,
// the provider API calls and the table.
type routeVerbs[R, F any] struct {
	kind    string // "customer" or "provider"
	flags   func() routeFlags[R, F]
	example string // of create
	// samplePrefix is a destination prefix for the other examples.
	samplePrefix string
	required     []string // flags create requires
	chosenBy     []string // the identity flags, which choose the routes of set
	add          func(*provider.Client, context.Context, R) (R, error)
	list         func(*provider.Client, context.Context, F) ([]R, error)
	set          func(*provider.Client, context.Context, F, uint32) ([]R, error)
	remove       func(*provider.Client, context.Context, F) ([]R, error)
	table        func([]R) outTable
}

func (v routeVerbs[R, F]) group(short string) *cobra.Command {
	return group(v.kind+"-route", short, v.createCmd(), v.getCmd(), v.setCmd(), v.deleteCmd())
}

func (v routeVerbs[R, F]) createCmd() *cobra.Command {
	f := v.flags()
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a " + v.kind + " route",
		Example: v.example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := v.add(c, ctx, *f.route())
			if err != nil {
				return err
			}
			return printResult(cmd, r, v.table([]R{r}))
		},
	}
	f.identity(cmd)
	cmd.Flags().Uint32Var(f.metric(), "metric", 0, "metric; the lowest wins among equal prefixes")
	cmd.Flags().Var(guidValue{f.customerID()}, "customer-id", "GUID of the tenant that owns the route")
	for _, name := range v.required {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func (v routeVerbs[R, F]) getCmd() *cobra.Command {
	return v.filtered("get", "List "+v.kind+" routes, all or those matching the given properties",
		"  wnvctl "+v.kind+"-route get\n  wnvctl "+v.kind+"-route get --destination-prefix "+v.samplePrefix+" -o yaml", v.list)
}

func (v routeVerbs[R, F]) deleteCmd() *cobra.Command {
	return v.filtered("delete", "Delete the "+v.kind+" routes matching the given properties (all when none is given)",
		"  wnvctl "+v.kind+"-route delete --destination-prefix "+v.samplePrefix, v.remove)
}

// filtered builds a verb that passes the filter its flags give to call
// and prints what call returns.
func (v routeVerbs[R, F]) filtered(use, short, example string, call func(*provider.Client, context.Context, F) ([]R, error)) *cobra.Command {
	f := v.flags()
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			rs, err := call(c, ctx, *f.filter())
			if err != nil {
				return err
			}
			return printResult(cmd, rs, v.table(rs))
		},
	}
	f.selection(cmd, true)
	return cmd
}

func (v routeVerbs[R, F]) setCmd() *cobra.Command {
	f := v.flags()
	cmd := &cobra.Command{
		Use:     "set",
		Short:   "Set the Metric of the " + v.kind + " routes chosen by their identity properties",
		Example: "  wnvctl " + v.kind + "-route set --destination-prefix " + v.samplePrefix + " --metric 10",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !anyChanged(cmd, v.chosenBy...) {
				return errors.New("no route chosen: give at least one of " + flagList(v.chosenBy))
			}
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			rs, err := v.set(c, ctx, *f.filter(), *f.metric())
			if err != nil {
				return err
			}
			return printResult(cmd, rs, v.table(rs))
		},
	}
	f.selection(cmd, false)
	cmd.Flags().Uint32Var(f.metric(), "metric", 0, "the new metric")
	cmd.MarkFlagRequired("metric")
	return cmd
}

// customerRouteFlags binds a customer route's properties to flags.
type customerRouteFlags struct {
	r   policy.CustomerRoute
	flt policy.CustomerRouteFilter
}

func (f *customerRouteFlags) identity(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(guidValue{&f.r.RoutingDomainID}, "routing-domain-id", "routing domain GUID such as {11111111-2222-3333-4444-000000000000}")
	fs.Var(vsidValue{&f.r.VirtualSubnetID}, "virtual-subnet-id", "virtual subnet ID, 4096..16777214")
	fs.Var(prefixValue{&f.r.DestinationPrefix}, "destination-prefix", "destination CA prefix such as 10.0.0.0/24")
	fs.Var(addrValue{&f.r.NextHop}, "next-hop", "next-hop CA; absent, 0.0.0.0 or :: means on-link")
}

func (f *customerRouteFlags) selection(cmd *cobra.Command, all bool) {
	fs := cmd.Flags()
	fs.Var(wildcardFilter(&f.flt.RoutingDomainID), "routing-domain-id", "only routes of these routing domains (wildcards)")
	fs.Var(vsidFilter(&f.flt.VirtualSubnetID), "virtual-subnet-id", "only routes of these virtual subnets")
	fs.Var(prefixFilter(&f.flt.DestinationPrefix), "destination-prefix", "only routes to these CA prefixes")
	fs.Var(addrFilter(&f.flt.NextHop), "next-hop", "only routes via these next-hop CAs (0.0.0.0 or :: for on-link)")
	if all {
		fs.Var(uintFilter(&f.flt.Metric, 32, "use metrics 0..4294967295"), "metric", "only routes with these metrics")
		fs.Var(wildcardFilter(&f.flt.CustomerID), "customer-id", "only routes of these tenants (wildcards)")
	}
}

func (f *customerRouteFlags) filter() *policy.CustomerRouteFilter { return &f.flt }
func (f *customerRouteFlags) route() *policy.CustomerRoute        { return &f.r }
func (f *customerRouteFlags) metric() *uint32                     { return &f.r.Metric }
func (f *customerRouteFlags) customerID() *policy.GUID            { return &f.r.CustomerID }

func customerRouteTable(rs []policy.CustomerRoute) outTable {
	t := outTable{header: []string{"RoutingDomainID", "VirtualSubnetID", "DestinationPrefix", "NextHop", "Metric", "CustomerID"}}
	for _, r := range rs {
		t.add(guidCell(r.RoutingDomainID), numCell(r.VirtualSubnetID), prefixCell(r.DestinationPrefix),
			addrCell(r.NextHop), numCell(r.Metric), guidCell(r.CustomerID))
	}
	return t
}

// providerRouteFlags binds a provider route's properties to flags.
type providerRouteFlags struct {
	r   policy.ProviderRoute
	flt policy.ProviderRouteFilter
}

func (f *providerRouteFlags) identity(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.IntVar(&f.r.InterfaceIndex, "interface-index", 0, "index of the underlay interface")
	fs.Var(prefixValue{&f.r.DestinationPrefix}, "destination-prefix", "destination PA prefix such as 198.18.0.0/15")
	fs.Var(addrValue{&f.r.NextHop}, "next-hop", "next-hop PA; absent, 0.0.0.0 or :: means on-link")
}

func (f *providerRouteFlags) selection(cmd *cobra.Command, all bool) {
	fs := cmd.Flags()
	fs.Var(intFilter(&f.flt.InterfaceIndex, "use interface indexes"), "interface-index", "only routes on these underlay interfaces")
	fs.Var(prefixFilter(&f.flt.DestinationPrefix), "destination-prefix", "only routes to these PA prefixes")
	fs.Var(addrFilter(&f.flt.NextHop), "next-hop", "only routes via these next-hop PAs (0.0.0.0 or :: for on-link)")
	if all {
		fs.Var(uintFilter(&f.flt.Metric, 32, "use metrics 0..4294967295"), "metric", "only routes with these metrics")
		fs.Var(wildcardFilter(&f.flt.CustomerID), "customer-id", "only routes of these tenants (wildcards)")
	}
}

func (f *providerRouteFlags) filter() *policy.ProviderRouteFilter { return &f.flt }
func (f *providerRouteFlags) route() *policy.ProviderRoute        { return &f.r }
func (f *providerRouteFlags) metric() *uint32                     { return &f.r.Metric }
func (f *providerRouteFlags) customerID() *policy.GUID            { return &f.r.CustomerID }

func providerRouteTable(rs []policy.ProviderRoute) outTable {
	t := outTable{header: []string{"InterfaceIndex", "DestinationPrefix", "NextHop", "Metric", "CustomerID"}}
	for _, r := range rs {
		t.add(strconv.Itoa(r.InterfaceIndex), prefixCell(r.DestinationPrefix), addrCell(r.NextHop),
			numCell(r.Metric), guidCell(r.CustomerID))
	}
	return t
}
