package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/policyapi"
)

// LearnVM is the VM the demo adds to show L2Only learning: on host2 in
// Blue's VSID 5001, with an L2Only record and no CA in policy; it
// configures LearnCA itself.
var LearnVM = VM{Name: "bluel2", Tenant: "Blue", Host: "host2", VSID: 5001, MAC: packet.MAC{2, 0, 0, 0, 0x50, 0x0a},
	V4: netip.MustParseAddr("10.0.0.50"), V6: netip.MustParseAddr("fd00:0:0:1::50")}

// LearnCA is the CA LearnVM configures and the hosts learn.
var LearnCA = LearnVM.V4

// demoLearning shows L2Only learning as Windows Server 2012 R2 has it: an
// L2Only VM joins Blue's subnet, configures its CA itself and speaks; host2
// learns it, the policy server hands the Dynamic record to every host, and
// blue1 reaches the VM by IP. The VM is gone again afterwards.
func (l *Lab) demoLearning(ctx context.Context, w io.Writer) []string {
	v := LearnVM
	fmt.Fprintf(w, "\n== L2Only learning: %s (MAC %s, an L2Only record, no CA in policy) joins VSID %d on %s and configures %s itself ==\n",
		v.Name, v.MAC, v.VSID, v.Host, LearnCA)
	took, err := l.learn(ctx, v)
	if rerr := l.removeLearnVM(ctx, v); err == nil {
		err = rerr
	}
	if err != nil {
		fmt.Fprintln(w, "FAIL:", err)
		return []string{"L2Only learning: " + err.Error()}
	}
	fmt.Fprintf(w, "%s spoke: every host has a Dynamic lookup record for %s at %s's PA after %v; blue1 reaches it by IP (answered by %s)\n",
		v.Name, LearnCA, v.Host, took.Round(time.Millisecond), v.Name)
	return nil
}

// learn adds v, lets it speak, and waits until every host has its Dynamic
// record and blue1 reaches it; it returns how long the records took.
func (l *Lab) learn(ctx context.Context, v VM) (time.Duration, error) {
	if err := l.createVMNamespace(v); err != nil {
		return 0, err
	}
	if _, err := l.Server().CreateVM(ctx, policyapi.VM{Name: v.Name, Interface: v.Name, MACAddress: v.MAC, VirtualSubnetID: v.VSID, Host: v.Host, L2Only: true}); err != nil {
		return 0, fmt.Errorf("policy server: create L2Only VM %s: %w", v.Name, err)
	}
	if err := l.configureVM(v); err != nil {
		return 0, err
	}
	if err := l.startResponder(v); err != nil {
		return 0, err
	}
	blue1, _ := l.Topology.VM("blue1")
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		// What v sends teaches its host its CA.
		l.ProbeUDP(ctx, v.Name, blue1.V4, netip.Addr{}, 1, 200*time.Millisecond)
		missing, err := l.hostsWithoutLearned(ctx, v)
		if err != nil {
			return 0, err
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no Dynamic record for %s on %v within 30s", LearnCA, missing)
		}
	}
	took := time.Since(start)
	r, ok, err := l.ProbeUDP(ctx, "blue1", LearnCA, netip.Addr{}, 5, 500*time.Millisecond)
	if err != nil || !ok || r.Responder != v.Name {
		return 0, fmt.Errorf("blue1 to the learned %s: answered by %q (%v), want %s", LearnCA, r.Responder, err, v.Name)
	}
	return took, nil
}

// hostsWithoutLearned lists the hosts with no Dynamic record of v's CA.
func (l *Lab) hostsWithoutLearned(ctx context.Context, v VM) ([]string, error) {
	var missing []string
	for _, h := range l.Topology.Hosts {
		recs, err := l.Client(h.Name).LookupRecords(ctx, policy.LookupRecordFilter{CustomerAddress: []netip.Addr{LearnCA}, VirtualSubnetID: []policy.VSID{v.VSID}})
		if err != nil {
			return nil, fmt.Errorf("lookup records of %s: %w", h.Name, err)
		}
		if len(recs) != 1 || recs[0].Type != policy.Dynamic || recs[0].MACAddress != v.MAC {
			missing = append(missing, h.Name)
		}
	}
	return missing, nil
}

// removeLearnVM deletes v at the policy server and its namespace and
// responder here.
func (l *Lab) removeLearnVM(ctx context.Context, v VM) error {
	err := l.Server().DeleteVM(ctx, v.Name)
	stopProcess(l.pid("probe-"+v.Name), 3*time.Second)
	os.Remove(l.pidPath("probe-" + v.Name))
	if ns := l.Topology.Namespace(v.Name); namespaceExists(ns) {
		if derr := deleteNamespace(ns); err == nil {
			err = derr
		}
	}
	return err
}
