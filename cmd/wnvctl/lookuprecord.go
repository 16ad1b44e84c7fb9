package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/policy"
)

func init() {
	rootCmd.AddCommand(group("lookup-record", "Manage lookup records (CA + VSID + MAC -> PA)",
		lookupRecordCreate(), lookupRecordGet(), lookupRecordSet(), lookupRecordDelete()))
}

// lookupRecordFlags binds the properties of a lookup record to flags: to
// rec for create and set's changes, to flt for the filters of get, set and
// delete.
type lookupRecordFlags struct {
	rec policy.LookupRecord
	flt policy.LookupRecordFilter
}

// identityNames are the flags that choose the records set changes.
var identityNames = []string{"customer-address", "virtual-subnet-id", "mac-address"}

// identity binds the identity properties of create.
func (f *lookupRecordFlags) identity(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrValue{&f.rec.CustomerAddress}, "customer-address", "the VM's customer address (0.0.0.0 or :: for L2Only and GatewayWildcard)")
	fs.Var(vsidValue{&f.rec.VirtualSubnetID}, "virtual-subnet-id", "virtual subnet ID, 4096..16777214")
	fs.Var(macValue{&f.rec.MACAddress}, "mac-address", "the VM's MAC address for this CA")
}

// identityFilter binds the identity properties as filters, which choose the
// records of set (and, with filterFlags, of get and delete).
func (f *lookupRecordFlags) identityFilter(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrFilter(&f.flt.CustomerAddress), "customer-address", "only records of these customer addresses (0.0.0.0 or :: for L2Only and GatewayWildcard)")
	cmd.RegisterFlagCompletionFunc("customer-address", completeRecordCAs)
	fs.Var(vsidFilter(&f.flt.VirtualSubnetID), "virtual-subnet-id", "only records of these virtual subnets")
	fs.Var(macFilter(&f.flt.MACAddress), "mac-address", "only records of these MAC addresses")
}

func (f *lookupRecordFlags) settable(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Var(addrValue{&f.rec.ProviderAddress}, "provider-address", "provider address of the VM's host")
	fs.Var(ruleValue{&f.rec.Rule}, "rule", "Nat, Encap or None (or 0..2)")
	fs.Var(guidValue{&f.rec.CustomerID}, "customer-id", "GUID of the tenant that owns the record")
	fs.StringVar(&f.rec.VMName, "vm-name", "", "label: the VM's name")
	fs.StringVar(&f.rec.Context, "context", "", "label: free text")
	fs.BoolVar(&f.rec.UseVmMACAddress, "use-vm-mac-address", false, "with Rule Nat: put the VM's MAC on the wire")
}

// filterFlags binds every property get and delete filter on. Each takes a
// list (commas or a repeated flag); the string and GUID ones take wildcards.
func (f *lookupRecordFlags) filterFlags(cmd *cobra.Command) {
	f.identityFilter(cmd)
	fs := cmd.Flags()
	fs.Var(addrFilter(&f.flt.ProviderAddress), "provider-address", "only records mapping to these provider addresses")
	fs.Var(wildcardFilter(&f.flt.CustomerID), "customer-id", "only records of these tenants (wildcards)")
	fs.Var(wildcardFilter(&f.flt.Context), "context", "only records with these contexts (wildcards)")
	fs.Var(listOf(&f.flt.Rule, "rules", policy.ParseRule, "use Nat, Encap or None (or 0..2)"), "rule", "only records with these rules")
	fs.Var(wildcardFilter(&f.flt.VMName), "vm-name", "only records with these VM names (wildcards)")
	fs.Var(boolFilter(&f.flt.UseVmMACAddress), "use-vm-mac-address", "only records with this UseVmMACAddress")
	fs.Var(listOf(&f.flt.Type, "types", policy.ParseRecordType, "use Static, Dynamic, GatewayWildcard or L2Only (or 0..3)"), "type", "only records of these types")
	fs.Var(boolFilter(&f.flt.Unusable), "unusable", "only records the data path can (false) or cannot (true) use yet")
	fs.Var(boolFilter(&f.flt.Unsynchronized), "unsynchronized", "only records (not) confirmed with the policy server")
}

func lookupRecordCreate() *cobra.Command {
	f := &lookupRecordFlags{rec: policy.LookupRecord{Rule: policy.TranslationMethodEncap, Type: policy.Static}}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a lookup record",
		Example: "  wnvctl lookup-record create --customer-address 10.0.0.5 --virtual-subnet-id 5001 \\\n" +
			"    --mac-address 00:15:5d:01:02:03 --provider-address 198.18.0.2",
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
	cmd.Flags().Var(typeValue{&f.rec.Type}, "type", "Static, Dynamic, GatewayWildcard or L2Only (or 0..3)")
	for _, name := range []string{"customer-address", "virtual-subnet-id", "mac-address", "provider-address"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func lookupRecordGet() *cobra.Command {
	f := &lookupRecordFlags{}
	cmd := &cobra.Command{
		Use:   "get",
		Short: "List lookup records, all or those matching the given properties",
		Example: "  wnvctl lookup-record get --virtual-subnet-id 5001\n" +
			"  wnvctl lookup-record get --vm-name 'web*' --unusable true -o yaml",
		Args: cobra.NoArgs,
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
		Short: "Change the records chosen by --customer-address, --virtual-subnet-id and --mac-address (each a list)",
		Example: "  wnvctl lookup-record set --customer-address 10.0.0.5 --virtual-subnet-id 5001 \\\n" +
			"    --provider-address 198.18.0.3",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !anyChanged(cmd, identityNames...) {
				return errors.New("no record chosen: give at least one of " + flagList(identityNames))
			}
			var ch policy.LookupRecordChange
			if changed(cmd, "provider-address") {
				ch.ProviderAddress = &f.rec.ProviderAddress
			}
			if changed(cmd, "rule") {
				ch.Rule = &f.rec.Rule
			}
			if changed(cmd, "customer-id") {
				ch.CustomerID = &f.rec.CustomerID
			}
			if changed(cmd, "vm-name") {
				ch.VMName = &f.rec.VMName
			}
			if changed(cmd, "context") {
				ch.Context = &f.rec.Context
			}
			if changed(cmd, "use-vm-mac-address") {
				ch.UseVmMACAddress = &f.rec.UseVmMACAddress
			}
			if ch == (policy.LookupRecordChange{}) {
				return errors.New("nothing to set: give at least one of --provider-address, --rule, --customer-id, --vm-name, --context, --use-vm-mac-address")
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

func lookupRecordDelete() *cobra.Command {
	f := &lookupRecordFlags{}
	cmd := &cobra.Command{
		Use:     "delete",
		Short:   "Delete the lookup records matching the given properties (all when none is given)",
		Example: "  wnvctl lookup-record delete --customer-address 10.0.0.5,10.0.0.6 --virtual-subnet-id 5001",
		Args:    cobra.NoArgs,
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
