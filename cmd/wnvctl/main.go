// Command wnvctl manages wnv: policy objects and VM ports on a host (through
// wnvd's provider API), notifications, and the multi-host lab.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the wnvctl command tree. Each file registers its commands in
// init() with rootCmd.AddCommand, so that command groups stay independent.
var rootCmd = newRootCmd()

// newRootCmd is the root with the grammar's aliases (grammar.go), which
// reach every command and flag added below it.
func newRootCmd() *cobra.Command {
	cobra.EnableCaseInsensitive = true
	root := &cobra.Command{
		Use:           "wnvctl",
		Short:         "Manage wnv network virtualization hosts, policy and the lab",
		Long:          "Manage wnv network virtualization hosts, policy and the lab.\n\n" + grammarHelp,
		Example:       "  wnvctl vm get -o yaml\n  wnvctl lookup-record get --virtual-subnet-id 5001\n  wnvctl lab demo",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetGlobalNormalizationFunc(normalizeFlag)
	root.SetHelpCommand(&cobra.Command{
		Use:     "help [COMMAND]...",
		Short:   "Show the help of any command",
		Example: "  wnvctl help vm create\n  wnvctl vm create --help",
		ValidArgsFunction: func(c *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var subs []cobra.Completion
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() {
					subs = append(subs, cobra.CompletionWithDesc(s.Name(), s.Short))
				}
			}
			return subs, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return err
			}
			return cmd.Help()
		},
	})
	return root
}

// Global flags shared by every command that talks to a daemon or prints.
var (
	flagSocket      string
	flagHost        string
	flagCredentials string
	flagOutput      string
)

func init() {
	def := os.Getenv("WNV_SOCKET")
	if def == "" {
		def = "/run/wnv/wnvd.sock"
	}
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&flagSocket, "socket", def, "wnvd provider API socket (env WNV_SOCKET)")
	pf.StringVar(&flagHost, "host", os.Getenv("WNV_HOST"), "send the provider API commands to the wnvd at this `ADDR:PORT` (its --api-listen) over mutual TLS with --credentials, instead of --socket (env WNV_HOST)")
	pf.StringVar(&flagCredentials, "credentials", os.Getenv("WNV_CREDENTIALS"), "`DIR` of a client credential: ca.pem, cert.pem, key.pem, for the policy server and --host (env WNV_CREDENTIALS; the local admin's is <pki-dir>/admin of wnvd policy)")
	pf.StringVarP(&flagOutput, "output", "o", "table", "output format: table, json or yaml")
	rootCmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	rootCmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		switch flagOutput {
		case "table", "json", "yaml":
			return nil
		}
		return fmt.Errorf("--output %q is not supported: use table, json or yaml", flagOutput)
	}
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "wnvctl:", err)
		os.Exit(1)
	}
}
