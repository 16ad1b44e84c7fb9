package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
)

func init() {
	cmd := &cobra.Command{
		Use:   "lookup-record",
		Short: "Manage lookup records (CA + VSID + MAC -> PA)",
	}
	cmd.SetFlagErrorFunc(flagError)
	cmd.AddCommand(lookupRecordNew(), lookupRecordGet(), lookupRecordSet(), lookupRecordRemove())
	rootCmd.AddCommand(cmd)
}

// lookupRecordFlags binds the properties of a lookup record to flags: to
// rec for new and set's changes, to flt for the filters of get, set and
// remove.
type lookupRecordFlags struct {
	rec policy.LookupRecord
	flt policy.LookupRecordFilter
}

// identityNames are the flags that choose the records set changes.
var identityNames = []string{"CustomerAddress", "VirtualSubnetID", "MACAddress"}

// identity binds the identity properties of new.
func (f *lookupRecordFlags) identity(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrValue{&f.rec.CustomerAddress}, "CustomerAddress", "the VM's customer address (0.0.0.0 or :: for L2Only and GatewayWildcard)")
	fs.Var(vsidValue{&f.rec.VirtualSubnetID}, "VirtualSubnetID", "virtual subnet ID, 4096..16777214")
	fs.Var(macValue{&f.rec.MACAddress}, "MACAddress", "the VM's MAC address for this CA")
}

// identityFilter binds the identity properties as filters, which choose the
// records of set (and, with filterFlags, of get and remove).
func (f *lookupRecordFlags) identityFilter(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrFilter(&f.flt.CustomerAddress), "CustomerAddress", "only records of these customer addresses (0.0.0.0 or :: for L2Only and GatewayWildcard)")
	fs.Var(vsidFilter(&f.flt.VirtualSubnetID), "VirtualSubnetID", "only records of these virtual subnets")
	fs.Var(macFilter(&f.flt.MACAddress), "MACAddress", "only records of these MAC addresses")
}

func (f *lookupRecordFlags) settable(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrValue{&f.rec.ProviderAddress}, "ProviderAddress", "provider address of the VM's host")
	fs.Var(ruleValue{&f.rec.Rule}, "Rule", "Nat, Encap or None (or 0..2)")
	fs.Var(guidValue{&f.rec.CustomerID}, "CustomerID", "GUID of the tenant that owns the record")
	fs.StringVar(&f.rec.VMName, "VMName", "", "label: the VM's name")
	fs.StringVar(&f.rec.Context, "Context", "", "label: free text")
	fs.BoolVar(&f.rec.UseVmMACAddress, "UseVmMACAddress", false, "with Rule Nat: put the VM's MAC on the wire")
}

// filterFlags binds every property get and remove filter on. Each takes a
// list (commas or a repeated flag); the string and GUID ones take wildcards.
func (f *lookupRecordFlags) filterFlags(cmd *cobra.Command) {
	f.identityFilter(cmd)
	fs := cmd.Flags()
	fs.Var(addrFilter(&f.flt.ProviderAddress), "ProviderAddress", "only records mapping to these provider addresses")
	fs.Var(wildcardFilter(&f.flt.CustomerID), "CustomerID", "only records of these tenants (wildcards)")
	fs.Var(wildcardFilter(&f.flt.Context), "Context", "only records with these contexts (wildcards)")
	fs.Var(listOf(&f.flt.Rule, "rules", policy.ParseRule, "use Nat, Encap or None (or 0..2)"), "Rule", "only records with these rules")
	fs.Var(wildcardFilter(&f.flt.VMName), "VMName", "only records with these VM names (wildcards)")
	fs.Var(boolFilter(&f.flt.UseVmMACAddress), "UseVmMACAddress", "only records with this UseVmMACAddress")
	fs.Var(listOf(&f.flt.Type, "types", policy.ParseRecordType, "use Static, Dynamic, GatewayWildcard or L2Only (or 0..3)"), "Type", "only records of these types")
	fs.Var(boolFilter(&f.flt.Unusable), "Unusable", "only records the data path can (false) or cannot (true) use yet")
	fs.Var(boolFilter(&f.flt.Unsynchronized), "Unsynchronized", "only records (not) confirmed with the policy server")
}

func lookupRecordNew() *cobra.Command {
	f := &lookupRecordFlags{rec: policy.LookupRecord{Rule: policy.TranslationMethodEncap, Type: policy.Static}}
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Create a lookup record",
		Example: "  wnvctl lookup-record new --CustomerAddress 10.0.0.5 --VirtualSubnetID 5001 \\\n" +
			"    --MACAddress 00:15:5d:01:02:03 --ProviderAddress 198.18.0.2",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := c.AddLookupRecord(ctx, f.rec)
			if err != nil {
				return err
			}
			return outputLookupRecords(cmd, r, []policy.LookupRecord{r})
		},
	}
	f.identity(cmd)
	f.settable(cmd)
	cmd.Flags().Var(typeValue{&f.rec.Type}, "Type", "Static, Dynamic, GatewayWildcard or L2Only (or 0..3)")
	for _, name := range []string{"CustomerAddress", "VirtualSubnetID", "MACAddress", "ProviderAddress"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func lookupRecordGet() *cobra.Command {
	f := &lookupRecordFlags{}
	cmd := &cobra.Command{
		Use:   "get",
		Short: "List lookup records, all or those matching the given properties",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			rs, err := c.LookupRecords(ctx, f.flt)
			if err != nil {
				return err
			}
			return outputLookupRecords(cmd, rs, rs)
		},
	}
	f.filterFlags(cmd)
	return cmd
}

func lookupRecordSet() *cobra.Command {
	f := &lookupRecordFlags{}
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Change the records chosen by --CustomerAddress, --VirtualSubnetID and --MACAddress (each a list)",
		Example: "  wnvctl lookup-record set --CustomerAddress 10.0.0.5 --VirtualSubnetID 5001 \\\n" +
			"    --ProviderAddress 198.18.0.3",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !anyChanged(cmd, identityNames...) {
				return errors.New("no record chosen: give at least one of " + flagList(identityNames))
			}
			var ch policy.LookupRecordChange
			if changed(cmd, "ProviderAddress") {
				ch.ProviderAddress = &f.rec.ProviderAddress
			}
			if changed(cmd, "Rule") {
				ch.Rule = &f.rec.Rule
			}
			if changed(cmd, "CustomerID") {
				ch.CustomerID = &f.rec.CustomerID
			}
			if changed(cmd, "VMName") {
				ch.VMName = &f.rec.VMName
			}
			if changed(cmd, "Context") {
				ch.Context = &f.rec.Context
			}
			if changed(cmd, "UseVmMACAddress") {
				ch.UseVmMACAddress = &f.rec.UseVmMACAddress
			}
			if ch == (policy.LookupRecordChange{}) {
				return errors.New("nothing to set: give at least one of --ProviderAddress, --Rule, --CustomerID, --VMName, --Context, --UseVmMACAddress")
			}
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			rs, err := c.SetLookupRecords(ctx, f.flt, ch)
			if err != nil {
				return err
			}
			return outputLookupRecords(cmd, rs, rs)
		},
	}
	f.identityFilter(cmd)
	f.settable(cmd)
	return cmd
}

func lookupRecordRemove() *cobra.Command {
	f := &lookupRecordFlags{}
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Remove the lookup records matching the given properties (all when none is given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := providerClient(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			rs, err := c.RemoveLookupRecords(ctx, f.flt)
			if err != nil {
				return err
			}
			return outputLookupRecords(cmd, rs, rs)
		},
	}
	f.filterFlags(cmd)
	return cmd
}

// outputLookupRecords prints v as JSON, or rs as a table.
func outputLookupRecords(cmd *cobra.Command, v any, rs []policy.LookupRecord) error {
	t := outTable{header: []string{"CustomerAddress", "VirtualSubnetID", "MACAddress", "ProviderAddress", "Rule", "Type", "CustomerID", "VMName", "Flags", "UnusableReason"}}
	for _, r := range rs {
		t.add(addrCell(r.CustomerAddress), numCell(r.VirtualSubnetID), macCell(r.MACAddress), addrCell(r.ProviderAddress),
			r.Rule.String(), r.Type.String(), guidCell(r.CustomerID), strCell(r.VMName), recordFlags(r), strCell(r.UnusableReason))
	}
	return printResult(cmd, v, t)
}

// recordFlags abbreviates the boolean properties that are set.
func recordFlags(r policy.LookupRecord) string {
	var s []byte
	for _, f := range []struct {
		on   bool
		name string
	}{{r.UseVmMACAddress, "UseVmMACAddress"}, {r.Unusable, "Unusable"}, {r.Unsynchronized, "Unsynchronized"}} {
		if f.on {
			if len(s) > 0 {
				s = append(s, ',')
			}
			s = append(s, f.name...)
		}
	}
	return strCell(string(s))
}
