package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
)

func init() {
	rootCmd.AddCommand(group("virtual-subnet", "Manage per-subnet settings: the encapsulation (NVGRE by default, or VXLAN)",
		virtualSubnetCreate(), virtualSubnetGet(), virtualSubnetSet(), virtualSubnetDelete()))
}

type encapValue struct{ p *policy.Encapsulation }

func (v encapValue) String() string { return v.p.String() }
func (v encapValue) Type() string   { return "encapsulation" }
func (v encapValue) Set(s string) error {
	e, err := policy.ParseEncapsulation(s)
	if err != nil {
		return ruleError("use NVGRE or VXLAN")
	}
	*v.p = e
	return nil
}

// virtualSubnetFlags binds a virtual subnet's properties to flags.
type virtualSubnetFlags struct{ v policy.VirtualSubnet }

func (f *virtualSubnetFlags) vsid(cmd *cobra.Command) {
	cmd.Flags().Var(vsidValue{&f.v.VirtualSubnetID}, "virtual-subnet-id", "virtual subnet ID, 4096..16777214")
}

func (f *virtualSubnetFlags) encap(cmd *cobra.Command, usage string) {
	cmd.Flags().Var(encapValue{&f.v.Encapsulation}, "encapsulation", usage)
}

func (f *virtualSubnetFlags) filter(cmd *cobra.Command) policy.VirtualSubnetFilter {
	var flt policy.VirtualSubnetFilter
	if changed(cmd, "virtual-subnet-id") {
		flt.VirtualSubnetID = f.v.VirtualSubnetID
	}
	return flt
}

func virtualSubnetCreate() *cobra.Command {
	f := &virtualSubnetFlags{}
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a virtual subnet's settings",
		Example: "  wnvctl virtual-subnet create --virtual-subnet-id 5001 --encapsulation VXLAN",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			v, err := c.AddVirtualSubnet(ctx, f.v)
			if err != nil {
				return err
			}
			return outputVirtualSubnets(cmd, v, []policy.VirtualSubnet{v})
		},
	}
	f.vsid(cmd)
	f.encap(cmd, "NVGRE (the default) or VXLAN (UDP 4789, VNI = VirtualSubnetID)")
	cmd.MarkFlagRequired("virtual-subnet-id")
	return cmd
}

func virtualSubnetGet() *cobra.Command {
	f := &virtualSubnetFlags{}
	cmd := &cobra.Command{
		Use:     "get",
		Short:   "List virtual subnets' settings, all or one",
		Example: "  wnvctl virtual-subnet get\n  wnvctl virtual-subnet get --virtual-subnet-id 5001",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			vs, err := c.VirtualSubnets(ctx, f.filter(cmd))
			if err != nil {
				return err
			}
			return outputVirtualSubnets(cmd, vs, vs)
		},
	}
	f.vsid(cmd)
	return cmd
}

func virtualSubnetSet() *cobra.Command {
	f := &virtualSubnetFlags{}
	cmd := &cobra.Command{
		Use:     "set",
		Short:   "Change the encapsulation of a virtual subnet",
		Example: "  wnvctl virtual-subnet set --virtual-subnet-id 5001 --encapsulation NVGRE",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt := f.filter(cmd)
			if flt == (policy.VirtualSubnetFilter{}) {
				return errors.New("no virtual subnet chosen: give --virtual-subnet-id")
			}
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			vs, err := c.SetVirtualSubnets(ctx, flt, policy.VirtualSubnetChange{Encapsulation: &f.v.Encapsulation})
			if err != nil {
				return err
			}
			return outputVirtualSubnets(cmd, vs, vs)
		},
	}
	f.vsid(cmd)
	f.encap(cmd, "the new encapsulation: NVGRE or VXLAN")
	cmd.MarkFlagRequired("encapsulation")
	return cmd
}

func virtualSubnetDelete() *cobra.Command {
	f := &virtualSubnetFlags{}
	cmd := &cobra.Command{
		Use:     "delete",
		Short:   "Delete a virtual subnet's settings (all when none is given); its traffic goes back to NVGRE",
		Example: "  wnvctl virtual-subnet delete --virtual-subnet-id 5001",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			vs, err := c.RemoveVirtualSubnets(ctx, f.filter(cmd))
			if err != nil {
				return err
			}
			return outputVirtualSubnets(cmd, vs, vs)
		},
	}
	f.vsid(cmd)
	return cmd
}

func outputVirtualSubnets(cmd *cobra.Command, v any, vs []policy.VirtualSubnet) error {
	t := outTable{header: []string{"VirtualSubnetID", "Encapsulation"}}
	for _, s := range vs {
		t.add(numCell(s.VirtualSubnetID), s.Encapsulation.String())
	}
	return printResult(cmd, v, t)
}
