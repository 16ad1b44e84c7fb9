package main

import (
	"errors"
	"strconv"

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

// lookupRecordFlags binds the properties of a lookup record to flags.
type lookupRecordFlags struct {
	rec                      policy.LookupRecord
	unusable, unsynchronized *bool // state filters of get and remove
}

// identity binds the identity properties, which every verb takes.
func (f *lookupRecordFlags) identity(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrValue{&f.rec.CustomerAddress}, "CustomerAddress", "the VM's customer address (0.0.0.0 or :: for L2Only and GatewayWildcard)")
	fs.Var(vsidValue{&f.rec.VirtualSubnetID}, "VirtualSubnetID", "virtual subnet ID, 4096..16777214")
	fs.Var(macValue{&f.rec.MACAddress}, "MACAddress", "the VM's MAC address for this CA")
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

// identityFilter selects by the given identity flags; an absent flag matches
// anything.
func (f *lookupRecordFlags) identityFilter(cmd *cobra.Command) policy.LookupRecordFilter {
	var flt policy.LookupRecordFilter
	if changed(cmd, "CustomerAddress") {
		flt.CustomerAddress = f.rec.CustomerAddress
	}
	if changed(cmd, "VirtualSubnetID") {
		flt.VirtualSubnetID = f.rec.VirtualSubnetID
	}
	if changed(cmd, "MACAddress") {
		flt.MACAddress = f.rec.MACAddress
	}
	return flt
}

// filter adds the non-identity filters of get and remove.
func (f *lookupRecordFlags) filter(cmd *cobra.Command) policy.LookupRecordFilter {
	flt := f.identityFilter(cmd)
	if changed(cmd, "ProviderAddress") {
		flt.ProviderAddress = f.rec.ProviderAddress
	}
	if changed(cmd, "CustomerID") {
		flt.CustomerID = f.rec.CustomerID
	}
	if changed(cmd, "VMName") {
		flt.VMName = f.rec.VMName
	}
	flt.Unusable, flt.Unsynchronized = f.unusable, f.unsynchronized
	return flt
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
			rs, err := c.LookupRecords(ctx, f.filter(cmd))
			if err != nil {
				return err
			}
			return outputLookupRecords(cmd, rs, rs)
		},
	}
	f.filterFlags(cmd)
	return cmd
}

func (f *lookupRecordFlags) filterFlags(cmd *cobra.Command) {
	f.identity(cmd)
	fs := cmd.Flags()
	fs.Var(addrValue{&f.rec.ProviderAddress}, "ProviderAddress", "only records mapping to this provider address")
	fs.Var(guidValue{&f.rec.CustomerID}, "CustomerID", "only records of this tenant")
	fs.StringVar(&f.rec.VMName, "VMName", "", "only records with this VM name")
	fs.Var(stateValue{&f.unusable}, "Unusable", "only records the data path can (false) or cannot (true) use yet")
	fs.Var(stateValue{&f.unsynchronized}, "Unsynchronized", "only records (not) confirmed with the policy server")
}

// stateValue is a filter on a read-only boolean state: unset matches both.
// It takes its value as the next argument, as the cmdlets do
// (--Unusable true).
type stateValue struct{ p **bool }

func (v stateValue) String() string {
	if *v.p == nil {
		return ""
	}
	return strconv.FormatBool(**v.p)
}
func (v stateValue) Type() string { return "true|false" }
func (v stateValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return ruleError("use true or false")
	}
	*v.p = &b
	return nil
}

func lookupRecordSet() *cobra.Command {
	f := &lookupRecordFlags{}
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Change the records chosen by --CustomerAddress, --VirtualSubnetID and --MACAddress",
		Example: "  wnvctl lookup-record set --CustomerAddress 10.0.0.5 --VirtualSubnetID 5001 \\\n" +
			"    --ProviderAddress 198.18.0.3",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt := f.identityFilter(cmd)
			if flt == (policy.LookupRecordFilter{}) {
				return errors.New("no record chosen: give at least one of --CustomerAddress, --VirtualSubnetID, --MACAddress")
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
			rs, err := c.SetLookupRecords(ctx, flt, ch)
			if err != nil {
				return err
			}
			return outputLookupRecords(cmd, rs, rs)
		},
	}
	f.identity(cmd)
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
			rs, err := c.RemoveLookupRecords(ctx, f.filter(cmd))
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
