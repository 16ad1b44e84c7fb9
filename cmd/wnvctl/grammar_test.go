package main

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/wnv/wnv/policy"
)

// kebabFlag is the form of every flag name: lower-case words joined by "-".
var kebabFlag = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// walk calls f for every command of the tree, wnvctl's own and cobra's help.
func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		walk(sub, f)
	}
}

// TestEveryCommandFollowsTheGrammar walks the command tree: every command has
// an example, every flag is kebab-case with at most a one-letter shorthand,
// and every alias, of a verb or a flag, leads to the command or flag it
// stands for; flag aliases stay out of --help.
func TestEveryCommandFollowsTheGrammar(t *testing.T) {
	rootCmd.InitDefaultHelpCmd()
	n := 0
	walk(rootCmd, func(c *cobra.Command) {
		n++
		path := c.CommandPath()
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s has no example", path)
		}
		check := func(f *pflag.Flag) {
			if !kebabFlag.MatchString(f.Name) {
				t.Errorf("%s --%s is not kebab-case", path, f.Name)
			}
			if len(f.Shorthand) > 1 {
				t.Errorf("%s --%s has shorthand %q: use one letter", path, f.Name, f.Shorthand)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
		if c.Flags().Lookup("output") == nil && c.InheritedFlags().Lookup("output") == nil {
			t.Errorf("%s has no -o", path)
		}
		for _, a := range c.Aliases {
			args := append(strings.Fields(c.Parent().CommandPath())[1:], a)
			got, _, err := rootCmd.Find(args)
			if err != nil || got != c {
				t.Errorf("alias %q of %s finds %v (%v)", strings.Join(args, " "), path, got.CommandPath(), err)
			}
		}
		usage := c.UsageString()
		for alias, canonical := range flagAliases[c.Flags()] {
			if c.Flags().Lookup(alias) == nil || c.Flags().Lookup(alias) != c.Flags().Lookup(canonical) {
				t.Errorf("%s --%s is not an alias of --%s", path, alias, canonical)
			}
			if strings.Contains(usage, "--"+alias+" ") {
				t.Errorf("%s --help shows the alias --%s", path, alias)
			}
		}
	})
	if n < 60 {
		t.Fatalf("walked %d commands: the tree is not all there", n)
	}
}

// TestAliases lists the spellings of earlier releases and of the HNV cmdlets
// that must keep working, each with the command and flag it means.
func TestAliases(t *testing.T) {
	for _, tc := range []struct {
		args        []string // the command as typed
		path        string   // the command it is
		flag, means string   // a flag as typed and the flag it is
	}{
		{[]string{"lookup-record", "new"}, "wnvctl lookup-record create", "VirtualSubnetID", "virtual-subnet-id"},
		{[]string{"lookup-record", "New"}, "wnvctl lookup-record create", "CustomerAddress", "customer-address"},
		{[]string{"lookup-record", "get"}, "wnvctl lookup-record get", "UseVmMACAddress", "use-vm-mac-address"},
		{[]string{"lookup-record", "remove"}, "wnvctl lookup-record delete", "VMName", "vm-name"},
		{[]string{"lookup-record", "Set"}, "wnvctl lookup-record set", "ProviderAddress", "provider-address"},
		{[]string{"customer-route", "new"}, "wnvctl customer-route create", "RoutingDomainID", "routing-domain-id"},
		{[]string{"customer-route", "remove"}, "wnvctl customer-route delete", "DestinationPrefix", "destination-prefix"},
		{[]string{"provider-route", "new"}, "wnvctl provider-route create", "NextHop", "next-hop"},
		{[]string{"provider-route", "list"}, "wnvctl provider-route get", "InterfaceIndex", "interface-index"},
		{[]string{"provider-address", "new"}, "wnvctl provider-address create", "PrefixLength", "prefix-length"},
		{[]string{"provider-address", "set"}, "wnvctl provider-address set", "VlanID", "vlan-id"},
		{[]string{"provider-address", "remove"}, "wnvctl provider-address delete", "AddressState", "address-state"},
		{[]string{"virtual-subnet", "new"}, "wnvctl virtual-subnet create", "Encapsulation", "encapsulation"},
		{[]string{"global", "set"}, "wnvctl global set", "UseExternalRouter", "use-external-router"},
		{[]string{"port", "attach"}, "wnvctl port attach", "Name", "name"},
		{[]string{"port", "detach"}, "wnvctl port detach", "Name", "name"},
		{[]string{"next-hop"}, "wnvctl next-hop", "SourceVirtualSubnetID", "source-virtual-subnet-id"},
		{[]string{"tenant", "create"}, "wnvctl tenant create", "id", "customer-id"},
		{[]string{"routing-domain", "create"}, "wnvctl routing-domain create", "tenant", "customer-id"},
		{[]string{"routing-domain", "create"}, "wnvctl routing-domain create", "id", "routing-domain-id"},
		{[]string{"subnet", "create"}, "wnvctl subnet create", "vsid", "virtual-subnet-id"},
		{[]string{"subnet", "create"}, "wnvctl subnet create", "routing-domain", "routing-domain-id"},
		{[]string{"subnet", "create"}, "wnvctl subnet create", "encap", "encapsulation"},
		{[]string{"subnet", "create"}, "wnvctl subnet create", "pa-pool", "provider-prefix"},
		{[]string{"subnet", "get"}, "wnvctl subnet get", "routing-domain", "routing-domain-id"},
		{[]string{"host", "register"}, "wnvctl host create", "pa", "provider-address"},
		{[]string{"vm", "create"}, "wnvctl vm create", "ca", "customer-address"},
		{[]string{"vm", "create"}, "wnvctl vm create", "mac", "mac-address"},
		{[]string{"vm", "get"}, "wnvctl vm get", "vsid", "virtual-subnet-id"},
		{[]string{"vm", "get"}, "wnvctl vm get", "routing-domain", "routing-domain-id"},
		{[]string{"gateway", "create"}, "wnvctl gateway create", "vsid", "virtual-subnet-id"},
		{[]string{"gateway", "create"}, "wnvctl gateway create", "ca", "customer-address"},
		{[]string{"pki", "list"}, "wnvctl pki get", "", ""},
		{[]string{"pki", "issue"}, "wnvctl pki issue", "pa", "provider-address"},
		{[]string{"monitor"}, "wnvctl monitor", "vsid", "virtual-subnet-id"},
	} {
		c, _, err := rootCmd.Find(tc.args)
		if err != nil || c.CommandPath() != tc.path {
			t.Errorf("wnvctl %s is %v (%v), want %s", strings.Join(tc.args, " "), c.CommandPath(), err, tc.path)
			continue
		}
		if tc.flag == "" {
			continue
		}
		if f := c.Flags().Lookup(tc.flag); f == nil || f.Name != tc.means {
			t.Errorf("%s --%s is %v, want --%s", tc.path, tc.flag, f, tc.means)
		}
	}
}

// TestOldSpellingSendsTheSameRequest creates a lookup record with the cmdlet
// spelling and again with the canonical one: wnvd gets the same record.
func TestOldSpellingSendsTheSameRequest(t *testing.T) {
	var got []policy.LookupRecord
	for _, args := range [][]string{
		{"lookup-record", "new", "--CustomerAddress", "10.0.0.5", "--VirtualSubnetID", "5001", "--MACAddress", "00-15-5D-01-02-03",
			"--ProviderAddress", "198.18.0.2", "--Rule", "TranslationMethodNat", "--UseVmMACAddress", "--VMName", "web1", "--CustomerID", "{aaaaaaaa-0000-0000-0000-000000000001}"},
		{"lookup-record", "create", "--customer-address", "10.0.0.5", "--virtual-subnet-id", "5001", "--mac-address", "00:15:5d:01:02:03",
			"--provider-address", "198.18.0.2", "--rule", "Nat", "--use-vm-mac-address", "--vm-name", "web1", "--customer-id", "{aaaaaaaa-0000-0000-0000-000000000001}"},
	} {
		b, sock := setup(t)
		ok(t, sock, args...)
		rs := b.Store().LookupRecords(policy.LookupRecordFilter{})
		if len(rs) != 1 {
			t.Fatalf("%s: records %v", strings.Join(args, " "), rs)
		}
		got = append(got, rs[0])
	}
	if !reflect.DeepEqual(got[0], got[1]) {
		t.Fatalf("the two spellings made different records:\n%+v\n%+v", got[0], got[1])
	}
	if !got[0].UseVmMACAddress || got[0].Rule != policy.TranslationMethodNat || got[0].VMName != "web1" {
		t.Fatalf("the record lost properties: %+v", got[0])
	}
}

// TestOutputYAML prints objects as YAML with the API's names, the same
// values as -o json.
func TestOutputYAML(t *testing.T) {
	_, sock := setup(t)
	ok(t, sock, "lookup-record", "create", "--customer-address", "10.0.0.5", "--virtual-subnet-id", "5001",
		"--mac-address", "00:15:5d:01:02:03", "--provider-address", "198.18.0.2")
	y := ok(t, sock, "-o", "yaml", "lookup-record", "get")
	if !strings.Contains(y, "- CustomerAddress: 10.0.0.5\n") || !strings.Contains(y, "  VirtualSubnetID: 5001\n") {
		t.Fatalf("-o yaml printed\n%s", y)
	}
	var fromYAML, fromJSON any
	if err := yaml.Unmarshal([]byte(y), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(ok(t, sock, "-o", "json", "lookup-record", "get")), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, fromYAML, fromJSON) {
		t.Fatalf("-o yaml and -o json differ:\n%v\n%v", fromYAML, fromJSON)
	}
}

// TestCompletion completes commands, the canonical flags (not the aliases)
// and object names from wnvd.
func TestCompletion(t *testing.T) {
	_, sock := setup(t)
	ok(t, sock, "port", "attach", "--name", "vm1", "--mac-address", "00:15:5d:01:02:03", "--virtual-subnet-id", "5001")
	complete := func(args ...string) []string {
		t.Helper()
		out, err := run(t, append([]string{cobra.ShellCompRequestCmd}, args...)...)
		if err != nil {
			t.Fatalf("__complete %s: %v", strings.Join(args, " "), err)
		}
		var got []string
		for _, l := range strings.Split(out, "\n") {
			if l != "" && !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "Completion ended") {
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return got
	}
	if got := complete("lookup-record", ""); !slices.Equal(got, []string{"create", "delete", "get", "set"}) {
		t.Errorf("lookup-record verbs: %v", got)
	}
	if got := complete("lookup-record", "create", "--virt"); !slices.Equal(got, []string{"--virtual-subnet-id"}) {
		t.Errorf("lookup-record create --virt: %v", got)
	}
	if got := complete("--socket", sock, "port", "detach", "--name", ""); !slices.Equal(got, []string{"vm1"}) {
		t.Errorf("port detach --name: %v", got)
	}
	if got := complete("--socket", t.TempDir()+"/none.sock", "port", "detach", "--name", ""); len(got) != 0 {
		t.Errorf("port detach --name without wnvd: %v", got)
	}
	server := startPolicyServer(t)
	for _, args := range [][]string{
		{"tenant", "create", "--customer-id", "{aaaaaaaa-0000-0000-0000-000000000001}", "--name", "contoso"},
		{"routing-domain", "create", "--routing-domain-id", rdID, "--customer-id", "{aaaaaaaa-0000-0000-0000-000000000001}"},
		{"subnet", "create", "--virtual-subnet-id", "5001", "--routing-domain-id", rdID, "--prefix", "10.0.0.0/24"},
		{"host", "create", "--name", "host1", "--provider-address", "198.18.0.1"},
		{"vm", "create", "--name", "blue1", "--virtual-subnet-id", "5001", "--mac-address", "00:15:5d:00:00:01", "--customer-address", "10.0.0.5", "--host", "host1"},
	} {
		if out, err := psctl(t, server, args...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"vm", "get", ""}, []string{"blue1"}},
		{[]string{"vm", "get", "blue1", ""}, nil},
		{[]string{"vm", "migrate", "blue1", "--to", ""}, []string{"host1"}},
		{[]string{"vm", "create", "--virtual-subnet-id", ""}, []string{"5001"}},
		{[]string{"tenant", "delete", ""}, []string{"{aaaaaaaa-0000-0000-0000-000000000001}"}},
		{[]string{"subnet", "create", "--routing-domain-id", ""}, []string{rdID}},
		{[]string{"trace", "--from", ""}, []string{"blue1"}},
	} {
		n := 2 // --server after the command's words
		if tc.args[0] == "trace" {
			n = 1
		}
		args := append(append(slices.Clone(tc.args[:n]), "--server", server), tc.args[n:]...)
		if got := complete(args...); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	if got := complete("vm", "get", "--server", "http://127.0.0.1:1", ""); len(got) != 0 {
		t.Errorf("vm get without a policy server: %v", got)
	}
	if got := complete("-o", ""); !slices.Equal(got, []string{"table", "json", "yaml"}) {
		t.Errorf("-o: %v", got)
	}
	if _, err := run(t, "completion", "tcsh"); err == nil || err.Error() != `shell "tcsh" is not supported: give one of bash, zsh or fish` {
		t.Errorf("completion tcsh: %v", err)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out, err := run(t, "completion", shell); err != nil || !strings.Contains(out, "wnvctl") {
			t.Errorf("completion %s: %v\n%.200s", shell, err, out)
		}
	}
}

// FuzzNormalizeFlag: any spelling normalizes to a name without capitals that
// normalizes to itself, and a property name to its kebab-case flag.
func FuzzNormalizeFlag(f *testing.F) {
	for _, s := range []string{"VirtualSubnetID", "MACAddress", "UseVmMACAddress", "vsid", "virtual-subnet-id", "VMName", "X", "", "A1B", "ÄÖ"} {
		f.Add(s)
	}
	fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
	f.Fuzz(func(t *testing.T, name string) {
		n := string(normalizeFlag(fs, name))
		if strings.ContainsAny(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("%q normalizes to %q, with capitals", name, n)
		}
		if again := string(normalizeFlag(fs, n)); again != n {
			t.Fatalf("%q normalizes to %q, which normalizes to %q", name, n, again)
		}
	})
	if got := kebab("UseVmMACAddress"); got != "use-vm-mac-address" {
		f.Fatalf("kebab(UseVmMACAddress) = %q", got)
	}
}
