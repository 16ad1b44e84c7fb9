package main

import (
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// One grammar for every object (docs/operations.md, "Command grammar"):
//
//	wnvctl OBJECT VERB [NAME] [--property-name VALUE]...
//
// The verbs are kubectl's: create, get, set, delete (and actions such as
// attach, migrate); the flags are the object's property names in kebab-case
// (VirtualSubnetID is --virtual-subnet-id). The HNV cmdlet verbs (New,
// Remove) and the WMI property names (--VirtualSubnetID) are accepted as
// aliases, as are the short flags of earlier releases (--vsid), listed per
// command with aliasFlags. Aliases stay out of the flag lists of --help.

// verbAliases are the other spellings of the canonical verbs: the cmdlet
// verbs New-, Remove- and kubectl's list. Command names match regardless of
// case (cobra.EnableCaseInsensitive), so "lookup-record New" works too.
var verbAliases = map[string][]string{
	"create": {"new"},
	"get":    {"list"},
	"delete": {"remove"},
}

// group returns an object's command with its verbs, each given its verb
// aliases and the one-line flag errors.
func group(use, short string, verbs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short}
	g.SetFlagErrorFunc(flagError)
	var examples []string
	for _, v := range verbs {
		v.Aliases = append(v.Aliases, verbAliases[v.Name()]...)
		v.SetFlagErrorFunc(flagError)
		examples = append(examples, firstExample(v.Example))
	}
	g.Example = strings.Join(examples, "\n")
	g.AddCommand(verbs...)
	return g
}

// firstExample is the first command of an example, with its continuation
// lines.
func firstExample(ex string) string {
	lines := strings.Split(ex, "\n")
	for i, l := range lines {
		if !strings.HasSuffix(l, "\\") {
			return strings.Join(lines[:i+1], "\n")
		}
	}
	return ex
}

// flagAliases holds, per command's flag set, the alias spellings that are not
// just a property name in another case (those normalizeFlag maps by itself).
var flagAliases = map[*pflag.FlagSet]map[string]string{}

// aliasFlags makes each alias a spelling of canonical on cmd: pairs are
// alias, canonical, alias, canonical...
func aliasFlags(cmd *cobra.Command, pairs ...string) {
	m := flagAliases[cmd.Flags()]
	if m == nil {
		m = map[string]string{}
		flagAliases[cmd.Flags()] = m
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
}

// normalizeFlag maps a flag name as typed to its canonical name: a listed
// alias of the command, else the name in kebab-case (--VirtualSubnetID and
// --virtual-subnet-id are one flag).
func normalizeFlag(fs *pflag.FlagSet, name string) pflag.NormalizedName {
	if c, ok := flagAliases[fs][name]; ok {
		return pflag.NormalizedName(c)
	}
	return pflag.NormalizedName(kebab(name))
}

var (
	lowerUpper   = regexp.MustCompile(`([a-z0-9])([A-Z])`)
	acronymUpper = regexp.MustCompile(`([A-Z]+)([A-Z][a-z])`)
)

// kebab turns a property name into its flag: VirtualSubnetID is
// virtual-subnet-id, MACAddress mac-address, UseVmMACAddress
// use-vm-mac-address.
func kebab(name string) string {
	if strings.ToLower(name) == name {
		return name
	}
	s := lowerUpper.ReplaceAllString(name, "$1-$2")
	s = acronymUpper.ReplaceAllString(s, "$1-$2")
	return strings.ToLower(s)
}

// grammarHelp is the grammar in the root's help.
const grammarHelp = `Every object has the same grammar:

  wnvctl OBJECT VERB [NAME] [--property-name VALUE]... [-o table|json|yaml]

The verbs are create, get, set and delete, or an action such as attach or migrate; the flags are
the object's property names in kebab-case (--virtual-subnet-id). The HNV spellings work too:
cmdlet verbs and WMI property names (lookup-record New --VirtualSubnetID 5001), and the short
flags of earlier releases (--vsid). 'wnvctl grammar' lists every alias.`

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "grammar",
		Short: "List the aliases every command accepts: HNV cmdlet verbs, WMI property names, earlier flags",
		Long: grammarHelp + `

Besides those listed, any flag may be given as its property name in the WMI's CamelCase
(--VirtualSubnetID, --MACAddress, --UseVmMACAddress): it is the kebab-case flag.`,
		Example: "  wnvctl grammar\n  wnvctl grammar -o yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			as := aliases(cmd.Root())
			t := outTable{header: []string{"COMMAND", "ALIAS", "MEANS"}}
			for _, a := range as {
				t.add(a.Command, a.Alias, a.Means)
			}
			return printResult(cmd, as, t)
		},
	})
}

// alias is one alias of a command or flag, as wnvctl grammar lists it.
type alias struct {
	Command string `json:"Command"`
	Alias   string `json:"Alias"`
	Means   string `json:"Means"`
}

// aliases lists the aliases of every command under c and of their flags.
func aliases(c *cobra.Command) []alias {
	var out []alias
	for _, a := range c.Aliases {
		out = append(out, alias{c.Parent().CommandPath(), a, c.Name()})
	}
	flags := flagAliases[c.Flags()]
	for _, a := range slices.Sorted(maps.Keys(flags)) {
		out = append(out, alias{c.CommandPath(), "--" + a, "--" + flags[a]})
	}
	for _, sub := range c.Commands() {
		out = append(out, aliases(sub)...)
	}
	return out
}
