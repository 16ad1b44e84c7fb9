/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared between datapath.c and the Go package (bpf2go generates the Go
 * types from these structs' BTF; layout_test.go checks the sizes). Every
 * struct used as a map key has its padding spelled out, so that C and Go
 * both zero it and equal keys hash equally.
 *
 * Addresses are 16 bytes with a family next to them: an IPv4 address sits
 * in the first 4 bytes, the other 12 are zero.
 */
#ifndef WNV_DATAPATH_H
#define WNV_DATAPATH_H

#include <linux/types.h>

/* skb->mark of a frame handed to the slow path ("WNVS"); see to_slow_path. */
#define SLOW_MARK 0x574e5653

/* skb->mark of a frame wnvd sends from no PA of its own (a moved VM's
 * packet, forwarded with its sender's PA as source), with the VLAN to tag
 * it with in the low 12 bits ("WV"). */
#define VLAN_MARK 0x57560000
#define VLAN_MARK_MASK 0xfffff000

#define MAX_PORTS 4096	      /* port indexes, and ports attached */
#define MAX_VSIDS 4096	      /* VSID counter entries (only Go creates them) */
#define MAX_PORT_CAS 65536
#define MAX_EGRESS 65536
#define MAX_INGRESS 65536
#define MAX_REWRITE_IN 65536
#define MAX_LOCAL_PAS 64
#define MAX_UNDERLAYS 64
#define NUM_REASON_SLOTS 64

/* Drop reasons, numbered as vswitch.Reason. */
#define REASON_MALFORMED 1
#define REASON_SPOOFED_MAC 3
#define REASON_SLOW_PATH_DOWN 28
#define REASON_WRONG_VLAN 42

#define FAMILY_V4 4
#define FAMILY_V6 6

/* config.flags */
#define CFG_FAST_PATH_OFF 1

struct config {
	__u64 gen;		/* decisions of another generation are misses */
	__u64 slow_deadline_ns; /* CLOCK_MONOTONIC; the slow path is down after it */
	__u32 flags;
	__u32 underlay_ifindex;
};

/* port.flags */
#define PORT_L2_ONLY 1
#define PORT_PEER 2 /* a veth whose peer is in another namespace (see deliver) */

struct port {
	__u32 index; /* the Go switch's port index: counters */
	__u32 vsid;
	__u8 mac[6];
	__u8 flags;
	__u8 pad;
};

/* Key of port_cas (a CA a port may send from) and of egress (a port's
 * destination). */
struct addr_key {
	__u32 ifindex;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

/* Key of local_pas. */
struct pa_key {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

/* Value of pa_vlans: the 802.1Q VLAN ID of a PA's underlay frames, 0 for
 * untagged. */
#define VLAN_ID_MASK 0x0fff

/* Counts of one underlay interface, per CPU (underlay_stats). */
struct underlay_stats {
	__u64 tx_tagged;  /* frames of a PA with a VlanID, tagged on the way out */
	__u64 rx_tagged;  /* frames of a PA's VLAN, accepted and untagged on the way in */
	__u64 wrong_vlan; /* frames for a PA, dropped: another VLAN, or untagged for a PA with one */
};

/* egress.kind */
#define KIND_LOCAL 1
#define KIND_ENCAP 2
#define KIND_REWRITE 3 /* IP Rewrite: the CAs become src_pa and dst_pa, nothing added */

/* egress.encap: policy.Encapsulation's numbers. */
#define ENCAP_NVGRE 0
#define ENCAP_VXLAN 1

struct egress {
	__u64 gen;
	__u32 out_ifindex; /* the local port's, or the underlay's */
	__u32 vsid;	   /* the destination's VSID */
	__u32 max_len;	   /* largest inner frame (Ethernet header included) that fits */
	__u8 kind;
	__u8 routed;
	__u8 encap;
	__u8 outer_family;
	__u8 dst_mac[6];
	__u8 src_mac[6]; /* routed: the gateway's, the new source MAC */
	__u8 pad[4];
	__u8 src_pa[16];
	__u8 dst_pa[16];
};

struct ingress_key {
	__u32 vsid;
	__u8 family;	/* of the inner CAs */
	__u8 pa_family; /* of the outer source PA */
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u8 pad[2];
	__u8 src_pa[16];
	__u8 src_ca[16];
	__u8 dst_ca[16];
};

struct ingress {
	__u64 gen;
	__u32 ifindex;
	__u32 pad;
};

/* Key of rewrite_in: the PA pair of an IP Rewrite packet. */
struct rewrite_key {
	__u8 family;
	__u8 pad[3];
	__u8 src_pa[16];
	__u8 dst_pa[16];
};

/* Value of vm_macs: a VM's MAC, the source of what leaves from its PA. */
struct vm_mac {
	__u8 mac[6];
	__u8 pad[2];
};

/* Value of rewrite_in: what the slow path validated the PA pair maps back
 * to, and the local port it delivers to. */
struct rewrite_in {
	__u64 gen;
	__u32 ifindex;
	__u8 src_mac[6]; /* the new MACs */
	__u8 dst_mac[6];
	__u8 src_ca[16]; /* the new addresses */
	__u8 dst_ca[16];
};

struct port_stats {
	__u64 rx_frames; /* from the VM, forwarded by the fast path */
	__u64 rx_bytes;
	__u64 tx_frames; /* to the VM, by the fast path */
	__u64 tx_bytes;
	__u64 drops;
};

struct vsid_stats {
	__u64 encapsulated;
	__u64 decapsulated;
	__u64 local;
	__u64 drops;
};

/* Index of path_stats. */
#define PATH_PORT_FAST 0
#define PATH_UNDERLAY_FAST 1
#define PATH_PORT_SLOW 2
#define PATH_UNDERLAY_SLOW 3
#define PATH_ERRORS 4 /* dropped: a helper failed after the frame was changed */
#define NUM_PATHS 8

/* The drop monitor (datapath.c, monitor_drop): wnvd turns it on while
 * someone watches; then each CPU samples 1 in `sample` drops, at most
 * `rate` a second (a token bucket of one second's worth), into a ring
 * buffer wnvd reads. */
#define MONITOR_SNAP_LEN 128 /* bytes of a dropped frame a sample carries */
#define MONITOR_RING_BYTES (256 * 1024)
#define NSEC_PER_SEC_ 1000000000ULL

struct monitor_config {
	__u32 on;
	__u32 sample; /* 1 in sample drops; 0 and 1 take every one */
	__u64 rate;   /* samples a second per CPU; wnvd caps it (1..1e6) */
};

/* Per CPU: the sampler, the token bucket and what they suppressed. */
struct monitor_state {
	__u64 seen;	    /* drops since the last one sampled */
	__u64 tokens;	    /* in billionths of a sample */
	__u64 last_ns;	    /* of the last refill */
	__u64 sampled_out;  /* drops the 1-in-N sampling passed over */
	__u64 rate_limited; /* samples over the rate */
	__u64 lost;	    /* samples the full ring buffer refused */
};

/* monitor_event.flags */
#define MONITOR_HAS_PORT 1 /* port_index is the dropping port's */

struct monitor_event {
	__u64 time_ns; /* CLOCK_MONOTONIC */
	__u32 reason;
	__u32 ifindex; /* where the frame arrived: a port, or the underlay */
	__u32 port_index;
	__u32 vsid;
	__u32 len;    /* of the frame */
	__u32 weight; /* drops the sample stands for: the sampling's N */
	__u16 cap_len; /* bytes of the frame in data */
	__u8 flags;
	__u8 pad[5];
	__u8 data[MONITOR_SNAP_LEN];
};

#endif
