// Package fastpath is wnv's kernel fast path: TC (tcx) eBPF programs that
// forward what the Go switch (package vswitch) has decided, without
// copying packets to userspace, and do the PAs' 802.1Q VLANs. The Go switch stays the one place where
// policy is decided; this package only executes its decisions.
//
// wnv_port runs at the tcx ingress of every VM port (a TAP or the host end
// of a veth), where the frames a VM sends arrive. For an untagged unicast
// IPv4 or IPv6 frame from the port's MAC and one of its CAs, to a
// destination with a current egress decision, it rewrites the frame
// (destination MAC; when routed, the gateway's MAC and TTL−1) and delivers
// it to a local port or encapsulates it (NVGRE or VXLAN, with the tunnel
// GSO state, so a VM's TSO super-frames stay whole) and sends it to the
// underlay through the kernel's route and neighbour tables. A frame from
// another MAC is dropped (spoofed-mac); everything else goes to the slow
// path: the program marks it with SlowMark and redirects it to the ingress
// of the same port, where wnvd's packet socket (filtered on SlowMark) reads
// it and the program drops the marked copy, so the host's stack never sees
// a VM's frame.
//
// wnv_underlay runs at the tcx ingress of every underlay interface. An NVGRE
// or VXLAN packet to a local PA whose (VSID, source PA, inner MACs and CAs)
// has a current ingress decision is decapsulated and delivered to the
// decision's port; any other tunnel packet to a local PA is left to the
// host's stack, which hands it to wnvd's GRE and UDP sockets; any other
// packet passes untouched. A GSO tunnel packet (a super-frame that crossed
// a veth underlay whole) stays whole; where the kernel cannot clear its
// tunnel GSO state, only a veth port whose peer is in another namespace
// takes it, and a TAP's goes to the slow path. Both programs deliver to
// such a veth port with bpf_redirect_peer, straight into the peer.
//
// IP Rewrite (Rule Nat) runs in both: under a rewrite egress decision,
// wnv_port swaps a VM's CAs for the PAs (incremental checksum fixes, GSO
// state kept) and sends the packet to the underlay as the host's own; a
// packet to a rewrite PA (SetRewritePAs) whose PA pair has a current
// rewrite ingress decision (InstallRewriteIngress) gets its CAs and MACs
// back in wnv_underlay and goes to the port; other such packets go to the
// slow path, never to the host's stack. wnv_underlay_out puts a VM's MAC on
// what leaves from its PA when its record has UseVmMACAddress (SetVMMACs).
//
// VLANs (SetPAVLAN) are done by the underlay programs whether the fast path
// is on or off, since the kernel may have no VLAN devices: wnv_underlay_out,
// at the tcx egress of every underlay interface, tags every frame from a PA
// with a VlanID (by IP source, ARP sender, or the address a DAD probe is
// for); wnv_underlay lets a frame for a PA (by IP destination, ARP target,
// ND target) in only with the PA's VLAN, pops the tag, and drops any other
// as wrong-vlan.
//
// Decisions carry a generation: one that is not the current one
// (SetGeneration, BumpGeneration) is a miss, so one write invalidates all
// of them when policy or ports change. If wnvd has not called
// SlowPathAlive recently, what would go to the slow path is dropped and
// counted as slow-path-down.
//
// Every drop is counted per reason, port and VSID; while wnvd monitors
// (SetMonitor), the programs also put a sample of it (the frame's first
// SnapLen bytes) in a ring buffer that DropReader reads, 1 in N drops and
// at most a rate a second per CPU, counting what they pass over
// (MonitorCounts).
//
// Maps and links are pinned under Config.PinDir: forwarding goes on while
// wnvd is down or restarting (fail static), and Open adopts what it finds.
package fastpath
