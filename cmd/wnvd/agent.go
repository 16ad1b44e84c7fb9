package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/wnv/wnv/dataplane"
	"github.com/wnv/wnv/edge"
	"github.com/wnv/wnv/host"
	"github.com/wnv/wnv/hostagent"
	"github.com/wnv/wnv/pki"
	"github.com/wnv/wnv/policyclient"
	"github.com/wnv/wnv/provider"
)

// agentFlags are the `wnvd host` flags of the host agent, the fail-static
// checkpoint and the migration grace period.
type agentFlags struct {
	server                    string
	caFile, certFile, keyFile string
	credentials               string
	checkpoint                string
	pas                       []string
	grace, holdTimeout        time.Duration
	edges                     bool
	edgePrefix, edgeMountNS   string
	edgeMTU                   int
	// apiEndpoint is the remote provider API's address, which the agent
	// reports for the policy server's traces.
	apiEndpoint string
}

func (a *agentFlags) register(f *pflag.FlagSet) {
	f.StringVar(&a.server, "policy-server", "", "run the host agent against this policy server (http(s)://host:port); off when empty")
	f.StringVar(&a.caFile, "policy-ca", "", "CA certificate to trust for an https policy server")
	f.StringVar(&a.certFile, "policy-cert", "", "client certificate for mutual TLS with the policy server")
	f.StringVar(&a.keyFile, "policy-key", "", "client key for mutual TLS with the policy server")
	f.StringVar(&a.credentials, "policy-credentials", os.Getenv("WNV_POLICY_CREDENTIALS"), "the `DIR` of the host's credential (ca.pem, cert.pem, key.pem written by wnvctl pki issue host NAME --pa PA --out DIR); env WNV_POLICY_CREDENTIALS")
	f.StringVar(&a.checkpoint, "checkpoint", "", "bbolt file of the host's last policy and ports, restored at start (default /var/lib/wnv/<name>.db with --policy-server; \"none\" disables)")
	f.StringSliceVar(&a.pas, "pa", nil, "provider address with prefix length (e.g. 198.18.0.2/15) the agent installs and registers (repeatable; default: the host's current ones)")
	f.DurationVar(&a.grace, "migration-grace", host.DefaultMigrationGrace, "how long packets for a VM that migrated away are forwarded to its new host")
	f.BoolVar(&a.edges, "edge-gateways", false, "build the edge gateways the policy server places on this host (network namespaces routing to the host's outside network; needs nftables)")
	f.StringVar(&a.edgePrefix, "edge-namespace-prefix", "wnvgw-", "name prefix of the edge gateways' network namespaces; the agent owns (and removes) every namespace with it")
	f.StringVar(&a.edgeMountNS, "edge-mount-namespace", "", "mount namespace (e.g. /proc/1/ns/mnt) to pin the edge gateways' network namespaces in, when wnvd runs in a private one (ip netns exec) that would take them along when it exits")
	f.IntVar(&a.edgeMTU, "edge-mtu", 1400, "MTU of an edge gateway's link into its virtual subnet: the underlay MTU minus the encapsulation overhead, or less")
	f.DurationVar(&a.holdTimeout, "hold-timeout", 500*time.Millisecond, "how long a packet to a destination without policy waits for the agent's fetch")
}

// start restores the checkpoint (before anything talks to the network) and
// returns the agent's run function, or nil without --policy-server.
func (a *agentFlags) start(ctx context.Context, cfg host.Config, h *host.Host, socket, notifySocket string) (func(context.Context) error, error) {
	ckptPath := a.checkpoint
	if ckptPath == "" && a.server != "" {
		ckptPath = filepath.Join("/var/lib/wnv", cfg.Name+".db")
	}
	h.SetMigrationGrace(a.grace)
	var ckpt *host.Checkpoint
	if ckptPath != "" && ckptPath != "none" {
		var err error
		if ckpt, err = host.OpenCheckpoint(ckptPath); err != nil {
			return nil, fmt.Errorf("--checkpoint: %w", err)
		}
		if _, _, err := h.Restore(ckpt); err != nil {
			ckpt.Close()
			return nil, fmt.Errorf("--checkpoint: %w", err)
		}
		go func() {
			h.KeepCheckpoint(ctx, ckpt, 100*time.Millisecond)
			ckpt.Close()
		}()
	}
	if a.server == "" {
		return nil, nil
	}
	var pas []netip.Prefix
	for _, s := range a.pas {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--pa %q is not an address with a prefix length: use e.g. 198.18.0.2/15", s)
		}
		pas = append(pas, p)
	}
	tlsCfg, err := a.clientTLS(cfg.Name, pas)
	if err != nil {
		return nil, err
	}
	h.HoldMisses(ctx, host.HoldConfig{Timeout: a.holdTimeout})
	links, err := dataplane.WatchLinks(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch network interfaces for VM ports: %w", err)
	}
	acfg := hostagent.Config{Host: cfg.Name, ProviderAddresses: pas, Interfaces: links, MigrationGrace: a.grace,
		Version: version(), APIEndpoint: a.apiEndpoint, SlowPathOnly: cfg.SlowPathOnly, Log: cfg.Log}
	if a.edges {
		if a.edgePrefix == "" || a.edgeMTU < 1280 {
			return nil, fmt.Errorf("--edge-namespace-prefix %q and --edge-mtu %d: give a non-empty prefix and an MTU of at least 1280 (IPv6's minimum)", a.edgePrefix, a.edgeMTU)
		}
		acfg.Edges, acfg.EdgePrefix, acfg.EdgeMTU = &edge.Linux{Prefix: a.edgePrefix, MountNamespace: a.edgeMountNS}, a.edgePrefix, a.edgeMTU
	}
	ag := hostagent.New(acfg,
		policyclient.New(a.server, tlsCfg), provider.NewClient(socket), notifySocket)
	return ag.Run, nil
}

// clientTLS loads the host's credential and checks, before any request,
// that it is a host credential of this host naming its PAs.
func (a *agentFlags) clientTLS(host string, pas []netip.Prefix) (*tls.Config, error) {
	var tlsCfg *tls.Config
	var err error
	switch {
	case a.credentials != "":
		if a.caFile != "" || a.certFile != "" || a.keyFile != "" {
			return nil, fmt.Errorf("give --policy-credentials or --policy-ca/--policy-cert/--policy-key, not both")
		}
		if tlsCfg, err = pki.CredentialsTLS(a.credentials); err != nil {
			return nil, fmt.Errorf("--policy-credentials: %w", err)
		}
	case a.caFile != "" || a.certFile != "":
		if tlsCfg, err = pki.ClientTLS(a.caFile, a.certFile, a.keyFile); err != nil {
			return nil, fmt.Errorf("--policy-ca/--policy-cert/--policy-key: %w", err)
		}
	}
	if !strings.HasPrefix(a.server, "https://") {
		return tlsCfg, nil
	}
	if tlsCfg == nil || len(tlsCfg.Certificates) == 0 {
		return nil, fmt.Errorf("--policy-server %s needs this host's credential: give --policy-credentials DIR (an admin writes it with `wnvctl pki issue host %s --pa PA --out DIR`)", a.server, host)
	}
	id, err := hostIdentity("the policy credential", tlsCfg.Certificates[0], host)
	if err != nil {
		return nil, err
	}
	for _, p := range pas {
		if !slices.Contains(id.ProviderAddresses, p.Addr().Unmap()) {
			return nil, fmt.Errorf("--pa %v is not in host %s's credential (%v): the policy server would refuse it; issue a credential with it", p, host, id.ProviderAddresses)
		}
	}
	return tlsCfg, nil
}

// version is wnvd's module version and VCS revision, as the build recorded
// them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
