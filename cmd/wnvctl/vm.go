package main

import (
	"cmp"
	"context"
	"strings"

	"github.com/spf13/cobra"
	"github.com/wnv/wnv/policyapi"
	"github.com/wnv/wnv/policyclient"
)

func init() {
	rootCmd.AddCommand(policyServerGroup("vm", "Create, list, delete and live-migrate VMs through the policy server",
		vmCreate(), vmGet(), vmDelete(), vmMigrate()))
}

func vmCreate() *cobra.Command {
	var vm policyapi.VM
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a VM on a host: its lookup records reach every host of its routing domain",
		Example: "  wnvctl vm create --name blue1 --virtual-subnet-id 5001 --mac-address 00:15:5d:00:00:01 \\\n" +
			"    --customer-address 10.0.0.5 --customer-address fd00:0:0:1::5 --host host1 --interface vnet7",
		Args: cobra.NoArgs,
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, _ []string) error {
			vm, err := c.CreateVM(ctx, vm)
			if err != nil {
				return err
			}
			return outputVMs(cmd, vm, []policyapi.VM{vm})
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&vm.Name, "name", "", "VM name")
	fs.Var(vsidValue{&vm.VirtualSubnetID}, "virtual-subnet-id", "virtual subnet, 4096..16777214")
	fs.Var(macValue{&vm.MACAddress}, "mac-address", "the VM's MAC address")
	fs.Var(addrsValue{&vm.CustomerAddresses}, "customer-address", "a customer address of the VM (repeatable)")
	fs.StringVar(&vm.Host, "host", "", "host the VM runs on")
	fs.StringVar(&vm.Interface, "interface", "", "the VM's interface on its host: the TAP its hypervisor creates, or a veth's host end (default: --name)")
	for _, f := range []string{"name", "virtual-subnet-id", "mac-address", "customer-address", "host"} {
		cmd.MarkFlagRequired(f)
	}
	aliasFlags(cmd, "vsid", "virtual-subnet-id", "mac", "mac-address", "ca", "customer-address")
	cmd.RegisterFlagCompletionFunc("host", completeHosts)
	cmd.RegisterFlagCompletionFunc("virtual-subnet-id", completeSubnets)
	return cmd
}

func vmGet() *cobra.Command {
	var f policyapi.VMFilter
	cmd := &cobra.Command{
		Use:               "get [NAME]",
		Short:             "Show one VM, or list VMs (optionally of one host, subnet or routing domain)",
		Example:           "  wnvctl vm get\n  wnvctl vm get blue1 -o yaml\n  wnvctl vm get --host host2 --virtual-subnet-id 5001",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeFirst(completeVMs),
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			if len(args) == 1 {
				vm, err := c.VM(ctx, args[0])
				if err != nil {
					return err
				}
				return outputVMs(cmd, vm, []policyapi.VM{vm})
			}
			vms, err := c.VMs(ctx, f)
			if err != nil {
				return err
			}
			return outputVMs(cmd, vms, vms)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&f.Host, "host", "", "only VMs on this host")
	fs.Var(vsidValue{&f.VirtualSubnetID}, "virtual-subnet-id", "only VMs of this virtual subnet")
	fs.Var(guidValue{&f.RoutingDomainID}, "routing-domain-id", "only VMs of this routing domain")
	aliasFlags(cmd, "vsid", "virtual-subnet-id", "routing-domain", "routing-domain-id")
	cmd.RegisterFlagCompletionFunc("host", completeHosts)
	cmd.RegisterFlagCompletionFunc("virtual-subnet-id", completeSubnets)
	cmd.RegisterFlagCompletionFunc("routing-domain-id", completeRoutingDomains)
	return cmd
}

func vmDelete() *cobra.Command {
	return &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a VM: its lookup records leave every host",
		Example:           "  wnvctl vm delete blue1",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeFirst(completeVMs),
		RunE: serverRun(func(ctx context.Context, _ *cobra.Command, c *policyclient.Client, args []string) error {
			return c.DeleteVM(ctx, args[0])
		}),
	}
}

func vmMigrate() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:               "migrate NAME --to HOST",
		Short:             "Live-migrate a VM: its lookup records move to the new host's PA",
		Example:           "  wnvctl vm migrate blue2 --to host3",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeFirst(completeVMs),
		RunE: serverRun(func(ctx context.Context, cmd *cobra.Command, c *policyclient.Client, args []string) error {
			vm, err := c.MigrateVM(ctx, args[0], to)
			if err != nil {
				return err
			}
			return outputVMs(cmd, vm, []policyapi.VM{vm})
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "destination host")
	cmd.MarkFlagRequired("to")
	cmd.RegisterFlagCompletionFunc("to", completeHosts)
	return cmd
}

func outputVMs(cmd *cobra.Command, v any, vms []policyapi.VM) error {
	t := outTable{header: []string{"NAME", "VSID", "MAC", "CUSTOMER ADDRESSES", "HOST", "INTERFACE", "PA", "PREVIOUS HOST", "MIGRATED", "REWRITE PAS"}}
	for _, vm := range vms {
		cas := make([]string, len(vm.CustomerAddresses))
		for i, a := range vm.CustomerAddresses {
			cas[i] = a.String()
		}
		migrated := "-"
		if !vm.MigratedAt.IsZero() {
			migrated = vm.MigratedAt.Format("2006-01-02T15:04:05.000Z")
		}
		t.add(vm.Name, numCell(vm.VirtualSubnetID), macCell(vm.MACAddress), strCell(strings.Join(cas, ",")), vm.Host,
			strCell(cmp.Or(vm.Interface, vm.Name)), addrCell(vm.ProviderAddress), strCell(vm.PreviousHost), migrated, strCell(prefixesValue{&vm.RewriteAddresses}.String()))
	}
	return printResult(cmd, v, t)
}
