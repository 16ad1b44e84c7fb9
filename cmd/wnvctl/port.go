package main

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/provider"
)

func init() {
	rootCmd.AddCommand(group("port", "Attach, detach and list VM ports", portAttach(), portDetach(), portGet()))
}

func portAttach() *cobra.Command {
	var s provider.PortSpec
	cmd := &cobra.Command{
		Use:   "attach",
		Short: "Attach a VM port: an existing interface (a hypervisor's TAP, a veth's host end) whose frames belong to a virtual subnet",
		Example: "  wnvctl port attach --name vm1 --interface vnet0 --mac-address 00:15:5d:01:02:03 \\\n" +
			"    --virtual-subnet-id 5001 --customer-address 10.0.0.5",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			p, err := c.AttachPort(ctx, s)
			if err != nil {
				return err
			}
			return outputPorts(cmd, p, []provider.Port{p})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&s.Name, "name", "", "port name, 1..63 characters")
	fs.StringVar(&s.Interface, "interface", "", "the existing interface in wnvd's network namespace (default: --name)")
	fs.Var(macValue{&s.MACAddress}, "mac-address", "the VM's MAC address")
	fs.Var(vsidValue{&s.VirtualSubnetID}, "virtual-subnet-id", "virtual subnet of the port, 4096..16777214 (0: not virtualized)")
	fs.Var(addrsValue{&s.CustomerAddresses}, "customer-address", "a customer address of the VM (repeatable)")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("mac-address")
	return cmd
}

func portDetach() *cobra.Command {
	var name string
	var migrated bool
	cmd := &cobra.Command{
		Use:     "detach",
		Short:   "Detach a VM port",
		Example: "  wnvctl port detach --name vm1\n  wnvctl port detach --name vm1 --migrated",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			if migrated {
				return c.DetachMigratedPort(ctx, name)
			}
			return c.DetachPort(ctx, name)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the port")
	cmd.RegisterFlagCompletionFunc("name", completePorts)
	cmd.Flags().BoolVar(&migrated, "migrated", false, "the VM live-migrated to another host: forward its late packets to its new PA for the grace period")
	cmd.MarkFlagRequired("name")
	return cmd
}

func portGet() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "get",
		Short:   "List the attached ports, or the one named by --name",
		Example: "  wnvctl port get\n  wnvctl port get --name vm1 -o yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			if changed(cmd, "name") {
				p, err := c.Port(ctx, name)
				if err != nil {
					return err
				}
				return outputPorts(cmd, p, []provider.Port{p})
			}
			ps, err := c.Ports(ctx)
			if err != nil {
				return err
			}
			return outputPorts(cmd, ps, ps)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "only this port")
	cmd.RegisterFlagCompletionFunc("name", completePorts)
	return cmd
}

func outputPorts(cmd *cobra.Command, v any, ps []provider.Port) error {
	t := outTable{header: []string{"Name", "Index", "Interface", "Ifindex", "MACAddress", "VirtualSubnetID", "CustomerAddresses", "MTU", "RxFrames", "TxFrames", "Drops"}}
	for _, p := range ps {
		cas := make([]string, len(p.CustomerAddresses))
		for i, a := range p.CustomerAddresses {
			cas[i] = a.String()
		}
		mtu := "-"
		if p.MTU != 0 {
			mtu = strconv.Itoa(p.MTU)
		}
		t.add(p.Name, strconv.Itoa(p.Index), strCell(p.Interface), strconv.Itoa(p.Ifindex), macCell(p.MACAddress),
			numCell(p.VirtualSubnetID), strCell(strings.Join(cas, ",")), mtu,
			numCell(p.Counters.RxFrames), numCell(p.Counters.TxFrames), numCell(p.Counters.Drops))
	}
	return printResult(cmd, v, t)
}

func init() {
	nh := nextHopCmd()
	nh.SetFlagErrorFunc(flagError)
	rootCmd.AddCommand(nh, countersCmd())
}

func nextHopCmd() *cobra.Command {
	var q provider.NextHopQuery
	cmd := &cobra.Command{
		Use:     "next-hop",
		Short:   "Show where a packet between two customer addresses goes (Select-NextHop)",
		Example: "  wnvctl next-hop --source-customer-address 10.0.0.5 --destination-customer-address 10.0.1.7 --source-virtual-subnet-id 5001",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			nh, err := c.NextHop(ctx, q)
			if err != nil {
				return err
			}
			t := outTable{header: []string{"SourceCustomerAddress", "DestinationCustomerAddress", "SourceVirtualSubnetID",
				"NextHopAddress", "SourceMACAddress", "NextHopMACAddress", "ProviderAddress", "VirtualSubnetID"}}
			t.add(addrCell(nh.SourceCustomerAddress), addrCell(nh.DestinationCustomerAddress), numCell(nh.SourceVirtualSubnetID),
				addrCell(nh.NextHopAddress), macCell(nh.SourceMACAddress), macCell(nh.NextHopMACAddress),
				addrCell(nh.ProviderAddress), numCell(nh.VirtualSubnetID))
			return printResult(cmd, nh, t)
		},
	}
	fs := cmd.Flags()
	fs.Var(addrValue{&q.SourceCustomerAddress}, "source-customer-address", "CA of the sending VM")
	fs.Var(addrValue{&q.DestinationCustomerAddress}, "destination-customer-address", "CA to reach")
	fs.Var(vsidValue{&q.SourceVirtualSubnetID}, "source-virtual-subnet-id", "virtual subnet of the sending VM")
	for _, name := range []string{"source-customer-address", "destination-customer-address", "source-virtual-subnet-id"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func countersCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "counters",
		Example: "  wnvctl counters\n  wnvctl counters --host host2:8450 --credentials /etc/wnv/admin -o json",
		Short:   "Show the host's counters per port, per virtual subnet and per drop reason (kernel fast path and wnvd merged), how many frames each path carried, and the 802.1Q tags of each underlay interface",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			cs, err := c.Counters(ctx)
			if err != nil {
				return err
			}
			ports := outTable{header: []string{"Port", "RxFrames", "RxBytes", "TxFrames", "TxBytes", "Drops"}}
			for _, p := range cs.Ports {
				ports.add(p.Name, numCell(p.RxFrames), numCell(p.RxBytes), numCell(p.TxFrames), numCell(p.TxBytes), numCell(p.Drops))
			}
			vsids := outTable{header: []string{"VirtualSubnetID", "TxFrames", "RxFrames", "Encapsulated", "Decapsulated", "Local", "Replies", "Flooded", "Drops"}}
			for _, v := range cs.VSIDs {
				vsids.add(numCell(v.VirtualSubnetID), numCell(v.TxFrames), numCell(v.RxFrames), numCell(v.Encapsulated), numCell(v.Decapsulated),
					numCell(v.Local), numCell(v.Replies), numCell(v.Flooded), numCell(v.Drops))
			}
			drops := outTable{header: []string{"DropReason", "Count"}}
			for _, d := range cs.Drops {
				drops.add(d.Reason, numCell(d.Count))
			}
			notes := outTable{header: []string{"Notification", "Raised", "RateLimited", "Merged", "Delivered", "Dropped"}}
			for _, n := range cs.Notifications {
				notes.add(n.Type, numCell(n.Raised), numCell(n.RateLimited), numCell(n.Merged), numCell(n.Delivered), numCell(n.Dropped))
			}
			mig := outTable{header: []string{"Migration", "Forwarded", "RedirectsSent", "RedirectsApplied"}}
			mig.add("packets", numCell(cs.Migration.Forwarded), numCell(cs.Migration.RedirectsSent), numCell(cs.Migration.RedirectsApplied))
			tables := []outTable{ports, vsids, drops, notes, mig}
			if p := cs.Paths; p != nil {
				paths := outTable{header: []string{"Path", "FromPorts", "FromUnderlay"}}
				paths.add("kernel", numCell(p.KernelFromPorts), numCell(p.KernelFromUnderlay))
				paths.add("slow", numCell(p.SlowFromPorts), numCell(p.SlowFromUnderlay))
				tables = append(tables, paths)
			}
			if g := cs.GSO; g != nil {
				gso := outTable{header: []string{"TunnelGSO", "Redirected", "Dropped", "Refused"}}
				gso.add("super-frames", numCell(g.Redirected), numCell(g.Dropped), numCell(g.Refused))
				tables = append(tables, gso)
			}
			if c := cs.Checkpoint; c != nil {
				ckpt := outTable{header: []string{"Checkpoint", "Saves", "Current"}}
				ckpt.add("file", numCell(c.Saves), strconv.FormatBool(c.Current))
				tables = append(tables, ckpt)
			}
			if r := cs.ProviderRoutes; r != nil {
				routes := outTable{header: []string{"ProviderRoutes", "Installed", "Waiting", "Failed", "Failures"}}
				routes.add("kernel", numCell(uint64(r.Installed)), numCell(uint64(r.Waiting)), numCell(uint64(r.Failed)), numCell(r.Failures))
				tables = append(tables, routes)
			}
			if len(cs.Underlays) > 0 {
				uls := outTable{header: []string{"Underlay", "InterfaceIndex", "TxTagged", "RxTagged", "WrongVLAN"}}
				for _, u := range cs.Underlays {
					uls.add(u.Name, strconv.Itoa(u.InterfaceIndex), numCell(u.TxTagged), numCell(u.RxTagged), numCell(u.WrongVLAN))
				}
				tables = append(tables, uls)
			}
			return printResult(cmd, cs, tables...)
		},
	}
}
