package host

import (
	"context"
	"net/netip"
	"time"

	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/packet"
	"github.com/wnv/wnv/policy"
	"github.com/wnv/wnv/vswitch"
)

// The shell of learning in L2Only subnets (vswitch/learn.go decides): the
// port workers hand each CA the switch learned to one goroutine, which puts
// its Dynamic lookup record in policy and raises customer-address-added;
// a host agent, a notification API client, reports it to the policy server.
// The same goroutine ages learned CAs out, removing their records and
// raising customer-address-deleted.

// learnQueue bounds the learned CAs waiting for the learner; a CA that does
// not fit is asked for again by the switch a second later.
const learnQueue = 256

// learnSweep is how often learned CAs are aged, at most.
const learnSweep = 5 * time.Second

// learned queues a CA the switch learned, without blocking the worker.
func (h *Host) learned(l *vswitch.Learned) {
	select {
	case h.learns <- *l:
	default:
	}
}

// learner applies learned CAs and ages them until ctx ends.
func (h *Host) learner(ctx context.Context) {
	sweep := min(learnSweep, max(h.learnedAge()/10, 10*time.Millisecond))
	tick := time.NewTicker(sweep)
	defer tick.Stop()
	var gone []vswitch.Learned
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-h.learns:
			h.applyLearned(l)
		case now := <-tick.C:
			gone = h.sw.ExpireLearned(now, gone[:0])
			for _, l := range gone {
				h.forgetLearned(l.Record)
			}
		}
	}
}

func (h *Host) learnedAge() time.Duration {
	if h.cfg.LearnedAge > 0 {
		return h.cfg.LearnedAge
	}
	return vswitch.DefaultLearnedAge
}

// applyLearned puts the Dynamic record of a learned CA in policy: added, or
// replacing the Dynamic record of another MAC (removed) or of another PA
// (moved: the store's moves raise customer-address-moved). A Static record
// is never touched. The record is Unsynchronized until the policy server
// confirms it (the host agent puts the server's copy).
func (h *Host) applyLearned(l vswitch.Learned) {
	rec := l.Record
	rec.Unsynchronized = true
	var b policy.Batch
	moved := false
	for _, old := range h.store.LookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{rec.CustomerAddress}, VirtualSubnetID: []policy.VSID{rec.VirtualSubnetID}}) {
		switch {
		case old.Type != policy.Dynamic:
			h.log.Info("not learning a CA a Static record gives another VM", "vsid", rec.VirtualSubnetID, "ca", rec.CustomerAddress, "mac", rec.MACAddress, "owner", old.MACAddress)
			return
		case old.MACAddress != rec.MACAddress:
			b.RemoveLookupRecords = append(b.RemoveLookupRecords, old)
		case old.ProviderAddress == rec.ProviderAddress:
			return // put already (the switch asked again before it saw it)
		default:
			moved = true
		}
	}
	b.PutLookupRecords = []policy.LookupRecord{rec}
	if err := h.store.Apply(b); err != nil {
		h.log.Warn("learning a CA", "vsid", rec.VirtualSubnetID, "ca", rec.CustomerAddress, "mac", rec.MACAddress, "err", err)
		return
	}
	h.log.Info("learned a CA", "vsid", rec.VirtualSubnetID, "ca", rec.CustomerAddress, "mac", rec.MACAddress, "pa", rec.ProviderAddress, "port", l.Port)
	if h.hub != nil && !moved {
		h.hub.CustomerAddressChange(rec.MACAddress, rec.CustomerAddress, uint32(rec.VirtualSubnetID), rec.ProviderAddress, uint32(notify.CustomerAddressAdded))
	}
}

// forgetLearned removes the Dynamic record of a CA aged out here, if it is
// still the one learned (not moved to another VM or host since), and raises
// customer-address-deleted.
func (h *Host) forgetLearned(rec policy.LookupRecord) {
	removed, err := h.store.RemoveLookupRecords(policy.LookupRecordFilter{CustomerAddress: []netip.Addr{rec.CustomerAddress}, VirtualSubnetID: []policy.VSID{rec.VirtualSubnetID},
		MACAddress: []packet.MAC{rec.MACAddress}, ProviderAddress: []netip.Addr{rec.ProviderAddress}, Type: []policy.RecordType{policy.Dynamic}})
	if err != nil || len(removed) == 0 {
		return // moved on: someone else's record now
	}
	h.log.Info("forgot a learned CA", "vsid", rec.VirtualSubnetID, "ca", rec.CustomerAddress, "mac", rec.MACAddress)
	if h.hub != nil {
		h.hub.CustomerAddressChange(rec.MACAddress, rec.CustomerAddress, uint32(rec.VirtualSubnetID), rec.ProviderAddress, uint32(notify.CustomerAddressDeleted))
	}
}
