package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

func init() {
	pa := &cobra.Command{Use: "provider-address", Short: "Manage the provider addresses (PAs) of this host"}
	pa.SetFlagErrorFunc(flagError)
	pa.AddCommand(providerAddressNew(), providerAddressGet(), providerAddressRemove())

	g := &cobra.Command{Use: "global", Short: "Show or change the host-wide setting"}
	g.SetFlagErrorFunc(flagError)
	g.AddCommand(globalGet(), globalSet())

	rootCmd.AddCommand(pa, g)
}

type providerAddressFlags struct {
	a     policy.ProviderAddress
	iface string
}

func (f *providerAddressFlags) bind(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrValue{&f.a.ProviderAddress}, "ProviderAddress", "the provider address")
	fs.IntVar(&f.a.InterfaceIndex, "InterfaceIndex", 0, "index of the underlay interface that holds the PA")
	fs.StringVar(&f.iface, "Interface", "", "underlay interface by name, instead of --InterfaceIndex")
	fs.Uint16Var(&f.a.VlanID, "VlanID", 0, "VLAN ID 1..4094, or 0 for none")
	cmd.MarkFlagsMutuallyExclusive("InterfaceIndex", "Interface")
}

// resolve turns --Interface into the interface's index in wnvctl's network
// namespace, which is wnvd's on a host.
func (f *providerAddressFlags) resolve() error {
	if f.iface == "" {
		return nil
	}
	ifi, err := net.InterfaceByName(f.iface)
	if err != nil {
		return fmt.Errorf("--Interface %q was not found: name an interface of this host (ip link)", f.iface)
	}
	f.a.InterfaceIndex = ifi.Index
	return nil
}

func (f *providerAddressFlags) filter(cmd *cobra.Command) policy.ProviderAddressFilter {
	var flt policy.ProviderAddressFilter
	if changed(cmd, "ProviderAddress") {
		flt.ProviderAddress = f.a.ProviderAddress
	}
	if changed(cmd, "InterfaceIndex") || changed(cmd, "Interface") {
		flt.InterfaceIndex = f.a.InterfaceIndex
	}
	if changed(cmd, "VlanID") {
		flt.VlanID = f.a.VlanID
	}
	return flt
}

func providerAddressNew() *cobra.Command {
	f := &providerAddressFlags{}
	cmd := &cobra.Command{
		Use:     "new",
		Short:   "Assign a provider address to this host",
		Example: "  wnvctl provider-address new --ProviderAddress 198.18.0.2 --PrefixLength 15 --Interface eth0",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.resolve(); err != nil {
				return err
			}
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			a, err := c.AddProviderAddress(ctx, f.a)
			if err != nil {
				return err
			}
			return outputProviderAddresses(cmd, a, []policy.ProviderAddress{a})
		},
	}
	f.bind(cmd)
	cmd.Flags().Uint8Var(&f.a.PrefixLength, "PrefixLength", 0, "prefix length of the PA's subnet")
	cmd.Flags().Var(macValue{&f.a.MACAddress}, "MACAddress", "MAC of the underlay interface (optional)")
	cmd.MarkFlagRequired("ProviderAddress")
	return cmd
}

func providerAddressGet() *cobra.Command {
	return providerAddressFiltered("get", "List provider addresses, all or those matching the given properties",
		(*provider.Client).ProviderAddresses)
}

func providerAddressRemove() *cobra.Command {
	return providerAddressFiltered("remove", "Remove the provider addresses matching the given properties (all when none is given)",
		(*provider.Client).RemoveProviderAddresses)
}

// providerAddressFiltered builds a verb that passes the filter its flags give
// to call and prints what call returns.
func providerAddressFiltered(use, short string, call func(*provider.Client, context.Context, policy.ProviderAddressFilter) ([]policy.ProviderAddress, error)) *cobra.Command {
	f := &providerAddressFlags{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.resolve(); err != nil {
				return err
			}
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			as, err := call(c, ctx, f.filter(cmd))
			if err != nil {
				return err
			}
			return outputProviderAddresses(cmd, as, as)
		},
	}
	f.bind(cmd)
	return cmd
}

func outputProviderAddresses(cmd *cobra.Command, v any, as []policy.ProviderAddress) error {
	t := outTable{header: []string{"ProviderAddress", "PrefixLength", "InterfaceIndex", "VlanID", "MACAddress", "AddressState", "ManagedByCluster"}}
	for _, a := range as {
		t.add(addrCell(a.ProviderAddress), numCell(a.PrefixLength), strconv.Itoa(a.InterfaceIndex), numCell(a.VlanID),
			macCell(a.MACAddress), a.AddressState.String(), strconv.FormatBool(a.ManagedByCluster))
	}
	return printResult(cmd, v, t)
}

func globalGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get",
		Short: "Show the host-wide setting",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			g, err := c.Global(ctx)
			if err != nil {
				return err
			}
			return outputGlobal(cmd, g)
		},
	}
}

func globalSet() *cobra.Command {
	var g policy.Global
	cmd := &cobra.Command{
		Use:     "set",
		Short:   "Change the host-wide setting",
		Example: "  wnvctl global set --UseExternalRouter=true",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			out, err := c.SetGlobal(ctx, g)
			if err != nil {
				return err
			}
			return outputGlobal(cmd, out)
		},
	}
	cmd.Flags().BoolVar(&g.UseExternalRouter, "UseExternalRouter", false, "send cross-subnet traffic to the external routers named by customer routes")
	cmd.MarkFlagRequired("UseExternalRouter")
	return cmd
}

func outputGlobal(cmd *cobra.Command, g policy.Global) error {
	t := outTable{header: []string{"UseExternalRouter"}}
	t.add(strconv.FormatBool(g.UseExternalRouter))
	return printResult(cmd, g, t)
}
