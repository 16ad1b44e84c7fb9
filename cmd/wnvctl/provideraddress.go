package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/provider"
)

func init() {
	rootCmd.AddCommand(
		group("provider-address", "Manage the provider addresses (PAs) of this host",
			providerAddressCreate(), providerAddressGet(), providerAddressSet(), providerAddressDelete()),
		group("global", "Show or change the host-wide setting", globalGet(), globalSet()))
}

// providerAddressFlags binds a provider address's properties to flags: to a
// for create and set's changes, to flt for the filters of get, set and delete.
type providerAddressFlags struct {
	a     policy.ProviderAddress
	flt   policy.ProviderAddressFilter
	iface string
}

// paSelectors are the flags that choose the addresses set changes.
var paSelectors = []string{"provider-address", "interface-index", "interface"}

func (f *providerAddressFlags) bind(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrValue{&f.a.ProviderAddress}, "provider-address", "the provider address")
	fs.IntVar(&f.a.InterfaceIndex, "interface-index", 0, "index of the underlay interface that holds the PA")
	fs.StringVar(&f.iface, "interface", "", "underlay interface by name, instead of --interface-index")
	fs.Uint16Var(&f.a.VlanID, "vlan-id", 0, "VLAN ID 1..4094, or 0 for none")
	fs.Uint8Var(&f.a.PrefixLength, "prefix-length", 0, "prefix length of the PA's subnet")
	fs.Var(macValue{&f.a.MACAddress}, "mac-address", "MAC of the underlay interface (optional)")
	cmd.MarkFlagsMutuallyExclusive("interface-index", "interface")
}

// selection binds the filters that choose the addresses of set (and, with
// filterFlags, of get and delete).
func (f *providerAddressFlags) selection(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrFilter(&f.flt.ProviderAddress), "provider-address", "only these provider addresses")
	fs.Var(intFilter(&f.flt.InterfaceIndex, "use interface indexes"), "interface-index", "only PAs on these underlay interfaces")
	fs.StringVar(&f.iface, "interface", "", "only PAs on this underlay interface, by name")
}

// filterFlags binds every property get and delete filter on; each takes a
// list (commas or a repeated flag).
func (f *providerAddressFlags) filterFlags(cmd *cobra.Command) {
	f.selection(cmd)
	fs := cmd.Flags()
	fs.Var(uintFilter(&f.flt.PrefixLength, 8, "use prefix lengths 0..128"), "prefix-length", "only PAs with these prefix lengths")
	fs.Var(uintFilter(&f.flt.VlanID, 16, "use VLAN IDs 0..4094"), "vlan-id", "only PAs on these VLANs (0: none)")
	fs.Var(listOf(&f.flt.AddressState, "states", policy.ParseAddressState, "use Invalid, Tentative, Duplicate, Deprecated or Preferred (or 0..4)"),
		"address-state", "only PAs in these DAD states")
	fs.Var(macFilter(&f.flt.MACAddress), "mac-address", "only PAs with these MAC addresses")
	fs.Var(boolFilter(&f.flt.ManagedByCluster), "managed-by-cluster", "only PAs with this ManagedByCluster")
}

// resolve turns --interface into the interface's index in wnvctl's network
// namespace, which is wnvd's on a host: the new PA's, or one more filter
// value.
func (f *providerAddressFlags) resolve() error {
	if f.iface == "" {
		return nil
	}
	ifi, err := net.InterfaceByName(f.iface)
	if err != nil {
		return fmt.Errorf("--interface %q was not found: name an interface of this host (ip link)", f.iface)
	}
	f.a.InterfaceIndex = ifi.Index
	f.flt.InterfaceIndex = append(f.flt.InterfaceIndex, ifi.Index)
	return nil
}

func providerAddressCreate() *cobra.Command {
	f := &providerAddressFlags{}
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Assign a provider address to this host",
		Example: "  wnvctl provider-address create --provider-address 198.18.0.2 --prefix-length 15 --interface eth0",
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
	cmd.MarkFlagRequired("provider-address")
	return cmd
}

func providerAddressGet() *cobra.Command {
	return providerAddressFiltered("get", "List provider addresses, all or those matching the given properties",
		"  wnvctl provider-address get\n  wnvctl provider-address get --interface eth0 --address-state Preferred",
		(*provider.Client).ProviderAddresses)
}

func providerAddressDelete() *cobra.Command {
	return providerAddressFiltered("delete", "Delete the provider addresses matching the given properties (all when none is given)",
		"  wnvctl provider-address delete --provider-address 198.18.0.2",
		(*provider.Client).RemoveProviderAddresses)
}

// providerAddressFiltered builds a verb that passes the filter its flags give
// to call and prints what call returns.
func providerAddressFiltered(use, short, example string, call func(*provider.Client, context.Context, policy.ProviderAddressFilter) ([]policy.ProviderAddress, error)) *cobra.Command {
	f := &providerAddressFlags{}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
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
			as, err := call(c, ctx, f.flt)
			if err != nil {
				return err
			}
			return outputProviderAddresses(cmd, as, as)
		},
	}
	f.filterFlags(cmd)
	return cmd
}

// providerAddressSet is Set-NetVirtualizationProviderAddress: it changes
// VlanID, PrefixLength and MACAddress of the addresses its filters choose.
func providerAddressSet() *cobra.Command {
	f := &providerAddressFlags{}
	cmd := &cobra.Command{
		Use:     "set",
		Short:   "Change VlanID, PrefixLength or MACAddress of the provider addresses chosen by --provider-address, --interface-index or --interface (each a list)",
		Example: "  wnvctl provider-address set --provider-address 198.18.0.2 --vlan-id 12",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !anyChanged(cmd, paSelectors...) {
				return errors.New("no provider address chosen: give at least one of " + flagList(paSelectors))
			}
			var ch policy.ProviderAddressChange
			if changed(cmd, "vlan-id") {
				ch.VlanID = &f.a.VlanID
			}
			if changed(cmd, "prefix-length") {
				ch.PrefixLength = &f.a.PrefixLength
			}
			if changed(cmd, "mac-address") {
				ch.MACAddress = &f.a.MACAddress
			}
			if ch == (policy.ProviderAddressChange{}) {
				return errors.New("nothing to set: give at least one of --vlan-id, --prefix-length, --mac-address")
			}
			if err := f.resolve(); err != nil {
				return err
			}
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			as, err := c.SetProviderAddresses(ctx, f.flt, ch)
			if err != nil {
				return err
			}
			return outputProviderAddresses(cmd, as, as)
		},
	}
	f.selection(cmd)
	fs := cmd.Flags()
	fs.Uint16Var(&f.a.VlanID, "vlan-id", 0, "the new VLAN ID 1..4094, or 0 for none")
	fs.Uint8Var(&f.a.PrefixLength, "prefix-length", 0, "the new prefix length of the PA's subnet")
	fs.Var(macValue{&f.a.MACAddress}, "mac-address", "the new MAC of the underlay interface")
	cmd.MarkFlagsMutuallyExclusive("interface-index", "interface")
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
		Use:     "get",
		Short:   "Show the host-wide setting",
		Example: "  wnvctl global get -o json",
		Args:    cobra.NoArgs,
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
		Example: "  wnvctl global set --use-external-router=true",
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
	cmd.Flags().BoolVar(&g.UseExternalRouter, "use-external-router", false, "send cross-subnet traffic to the external routers named by customer routes")
	cmd.MarkFlagRequired("use-external-router")
	return cmd
}

func outputGlobal(cmd *cobra.Command, g policy.Global) error {
	t := outTable{header: []string{"UseExternalRouter"}}
	t.add(strconv.FormatBool(g.UseExternalRouter))
	return printResult(cmd, g, t)
}
