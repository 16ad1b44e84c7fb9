// SPDX-License-Identifier: GPL-2.0
//go:build ignore

/*
 * wnv's kernel fast path: two tcx ingress programs that execute the
 * forwarding decisions the Go switch installs in the maps below, and a tcx
 * egress program that tags the PAs' underlay frames with their VLAN.
 *
 * wnv_port runs on every VM port (a TAP or the host end of a veth) and
 * switches what the VM sends: local delivery or NVGRE/VXLAN encapsulation.
 * wnv_underlay runs on each underlay interface and decapsulates what a
 * decision says belongs to a local port. Anything else goes to the slow
 * path (the Go switch in wnvd), which decides it and installs a decision.
 *
 * 802.1Q is done here too, fast path on or off, because the kernel may
 * have no VLAN devices: wnv_underlay_out pushes the VlanID of a PA on
 * every frame from it (the kernel's ARP and ND included), and wnv_underlay
 * accepts a frame for a PA only with the PA's VLAN and pops the tag before
 * the stack sees it.
 *
 * Frames are read with bpf_skb_load_bytes and written with
 * bpf_skb_store_bytes: headers need not sit in the linear part of the skb
 * (TSO super-frames from a VM often have them split).
 */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "datapath.h"

char LICENSE[] SEC("license") = "GPL"; /* bpf_redirect_neigh is GPL-only */

/* Newer than Debian 12's linux/bpf.h (Linux 6.3 and 6.18). */
#define ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#define ADJ_ROOM_DECAP_L4_GRE (1ULL << 9)
#define ADJ_ROOM_DECAP_L4_UDP (1ULL << 10)

#define GRE_KEY_PRESENT 0x2000
#define ETH_P_TEB_ 0x6558
#define VXLAN_PORT 4789
#define VXLAN_FLAG_I 0x08
#define OUTER_TTL 64
#define EINVAL_ 22
#define NEXTHDR_ICMPV6 58
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ICMP_ 1

/* Maps, pinned by name under wnvd's pin directory so that they (and the
 * decisions in them) outlive wnvd. */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32); /* ifindex */
	__type(value, struct port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORT_CAS);
	__type(key, struct addr_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_port_cas SEC(".maps");

/* Sources outside its subnet that a gateway port forwards from, as the slow
 * path validated them: the value is the generation they hold in. LRU, like
 * the decisions: an evicted one goes back to the slow path. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_EGRESS);
	__type(key, struct addr_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_fwd_srcs SEC(".maps");

/* Decisions are LRU: bounded, and an evicted one is re-decided by the slow
 * path. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_EGRESS);
	__type(key, struct addr_key);
	__type(value, struct egress);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_INGRESS);
	__type(key, struct ingress_key);
	__type(value, struct ingress);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_ingress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LOCAL_PAS);
	__type(key, struct pa_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_local_pas SEC(".maps");

/* The VLAN of every PA configured on the underlay (up or not: DAD probes
 * are tagged too), 0 for none. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LOCAL_PAS);
	__type(key, struct pa_key);
	__type(value, __u16);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_pa_vlans SEC(".maps");

/* Updated, never created, by the programs: one entry per underlay. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_UNDERLAYS);
	__type(key, __u32); /* ifindex */
	__type(value, struct underlay_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_underlay_stats SEC(".maps");

/* Rewrite PAs: local VMs' own PAs (IP Rewrite, Rule Nat). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LOCAL_PAS);
	__type(key, struct pa_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_rewrite_pas SEC(".maps");

/* IP Rewrite deliveries the slow path validated, by PA pair: LRU, like the
 * decisions. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_REWRITE_IN);
	__type(key, struct rewrite_key);
	__type(value, struct rewrite_in);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_rewrite_in SEC(".maps");

/* Rewrite PAs whose records have UseVmMACAddress, and their VMs' MACs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_LOCAL_PAS);
	__type(key, struct pa_key);
	__type(value, struct vm_mac);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_vm_macs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32); /* port index */
	__type(value, struct port_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_port_stats SEC(".maps");

/* Updated, never created, by the programs: a remote sender cannot grow it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_VSIDS);
	__type(key, __u32);
	__type(value, struct vsid_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_vsid_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_REASON_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_reasons SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_PATHS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wnv_path_stats SEC(".maps");

/* The drop monitor: not pinned, so a new wnvd starts with it off and
 * nobody watching costs one lookup per drop. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct monitor_config);
} wnv_monitor SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct monitor_state);
} wnv_monitor_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MONITOR_RING_BYTES);
} wnv_monitor_events SEC(".maps");

/* The ring buffer's records, named for bpf2go (a ring buffer map has no
 * value type). */
const struct monitor_event *unused_monitor_event __attribute__((unused));

/* Headers written in front of the inner frame. */

struct gre_hdr {
	__be16 flags;
	__be16 protocol;
	__be32 key;
};

struct vxlan_hdr {
	__be32 flags;
	__be32 vni;
};

struct nvgre4 {
	struct iphdr ip;
	struct gre_hdr gre;
	struct ethhdr eth;
} __attribute__((packed));

struct nvgre6 {
	struct ipv6hdr ip;
	struct gre_hdr gre;
	struct ethhdr eth;
} __attribute__((packed));

struct vxlan4 {
	struct iphdr ip;
	struct udphdr udp;
	struct vxlan_hdr vx;
	struct ethhdr eth;
} __attribute__((packed));

/* Counters. */

static __always_inline void count_path(__u32 path)
{
	__u64 *v = bpf_map_lookup_elem(&wnv_path_stats, &path);
	if (v)
		*v += 1;
}

static __always_inline void count_reason(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&wnv_reasons, &reason);
	if (v)
		*v += 1;
}

static __always_inline struct port_stats *port_stats(const struct port *p)
{
	__u32 index = p->index;
	return bpf_map_lookup_elem(&wnv_port_stats, &index);
}

static __always_inline struct vsid_stats *vsid_stats(__u32 vsid)
{
	return bpf_map_lookup_elem(&wnv_vsid_stats, &vsid);
}

/* monitor_admit samples 1 in mc->sample drops and lets at most mc->rate
 * samples a second through, counting what it suppresses. The same as
 * monitor.Limiter in Go, which has the tests. */
static __always_inline int monitor_admit(const struct monitor_config *mc, struct monitor_state *st)
{
	if (++st->seen < mc->sample) {
		st->sampled_out += 1;
		return 0;
	}
	st->seen = 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 burst = mc->rate * NSEC_PER_SEC_;
	__u64 elapsed = now - st->last_ns;
	st->last_ns = now;
	if (!st->last_ns || elapsed >= NSEC_PER_SEC_)
		st->tokens = burst;
	else
		st->tokens += elapsed * mc->rate;
	if (st->tokens > burst)
		st->tokens = burst;
	if (st->tokens < NSEC_PER_SEC_) {
		st->rate_limited += 1;
		return 0;
	}
	st->tokens -= NSEC_PER_SEC_;
	return 1;
}

/* monitor_drop puts a sample of a drop (reason, port, VSID and the first
 * bytes of the frame) in the ring buffer, if wnvd monitors drops. */
static __always_inline void monitor_drop(struct __sk_buff *skb, const struct port *p, __u32 vsid,
					 __u32 reason)
{
	__u32 zero = 0;
	struct monitor_config *mc = bpf_map_lookup_elem(&wnv_monitor, &zero);
	if (!mc || !mc->on)
		return;
	struct monitor_state *st = bpf_map_lookup_elem(&wnv_monitor_state, &zero);
	if (!st || !monitor_admit(mc, st))
		return;
	struct monitor_event *e = bpf_ringbuf_reserve(&wnv_monitor_events, sizeof(*e), 0);
	if (!e) {
		st->lost += 1;
		return;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->reason = reason;
	e->ifindex = skb->ifindex;
	e->port_index = p ? p->index : 0;
	e->flags = p ? MONITOR_HAS_PORT : 0;
	e->vsid = vsid;
	e->len = skb->len;
	e->weight = mc->sample > 1 ? mc->sample : 1;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	__u32 cap = skb->len;
	if (cap > MONITOR_SNAP_LEN)
		cap = MONITOR_SNAP_LEN;
	e->cap_len = 0;
	if (cap > 0 && bpf_skb_load_bytes(skb, 0, e->data, cap) == 0)
		e->cap_len = cap;
	bpf_ringbuf_submit(e, 0);
}

/* count_drop counts a drop of reason for port p (if known) and vsid, and
 * shows it to the monitor. */
static __always_inline void count_drop(struct __sk_buff *skb, const struct port *p, __u32 vsid,
				       __u32 reason)
{
	monitor_drop(skb, p, vsid, reason);
	count_reason(reason);
	if (p) {
		struct port_stats *ps = port_stats(p);
		if (ps)
			ps->drops += 1;
	}
	struct vsid_stats *vs = vsid_stats(vsid);
	if (vs)
		vs->drops += 1;
}

/* Small helpers. */

static __always_inline struct config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&wnv_config, &zero);
}

static __always_inline int slow_path_alive(const struct config *cfg)
{
	return cfg->slow_deadline_ns >= bpf_ktime_get_ns();
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) |
		(a[5] ^ b[5])) == 0;
}

static __always_inline void copy16(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, 16);
}

static __always_inline void copy4(__u8 *dst, const void *src)
{
	__builtin_memcpy(dst, src, 4);
}

/* ipv4_csum returns the header checksum of ip, whose own checksum field
 * must be zero; of a received header, 0 when it is valid. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < (int)sizeof(*ip) / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * deliver sends a frame to local port p at ifindex. A veth whose peer is
 * in another namespace (a container's, or a VM's made of one) gets it with
 * bpf_redirect_peer: straight into the peer's ingress in this softirq,
 * instead of through the host end's transmit and a backlog queue.
 * bpf_redirect_peer drops what it cannot deliver, so the flag is set only
 * where it can (PORT_PEER, from the port's link when it was attached).
 */
static __always_inline int deliver(const struct port *p, __u32 ifindex)
{
	if (p->flags & PORT_PEER)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}

/* ---------------------------------------------------------------------
 * Ports
 */

/*
 * to_slow_path hands a frame from a VM to wnvd ("mark and re-inject").
 * wnvd reads a port with an AF_PACKET socket whose filter accepts only
 * skb->mark == SLOW_MARK. Packet taps run before tc ingress in
 * __netif_receive_skb_core, so the tap saw this frame unmarked and
 * ignored it: mark it and redirect it to the ingress of the same device,
 * where it is received again (through the backlog, same netns, so the mark
 * survives), the tap takes a copy, and wnv_port drops it: the host's own
 * stack must never see a VM's frames.
 */
static __always_inline int to_slow_path(struct __sk_buff *skb, const struct config *cfg,
					const struct port *p)
{
	if (!slow_path_alive(cfg)) {
		count_drop(skb, p, p ? p->vsid : 0, REASON_SLOW_PATH_DOWN);
		return TC_ACT_SHOT;
	}
	skb->mark = SLOW_MARK;
	count_path(PATH_PORT_SLOW);
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

/* What from_port learns of a frame's IP header. */
struct ip_info {
	__u8 family;
	__u8 ttl;     /* or hop limit */
	__be16 ttl_w; /* IPv4: the 16-bit word holding TTL and protocol */
	__u32 hdr_len;
	__u32 l4_hdr_len; /* of a GSO frame: TCP or UDP header */
	__u8 src[16];
	__u8 dst[16];
};

/* parse_ipv4 accepts a header without options that is not a fragment, with
 * a valid length and checksum. */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct ip_info *ii, __u8 *proto)
{
	struct iphdr ip;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return -1;
	__u32 tot = bpf_ntohs(ip.tot_len);
	if (ip.version != 4 || ip.ihl != 5 || (ip.frag_off & bpf_htons(0x3fff)) ||
	    tot < sizeof(ip) || tot > skb->len - ETH_HLEN || ipv4_csum(&ip) != 0)
		return -1;
	ii->family = FAMILY_V4;
	ii->ttl = ip.ttl;
	ii->ttl_w = ((const __be16 *)&ip)[4];
	ii->hdr_len = sizeof(ip);
	copy4(ii->src, &ip.saddr);
	copy4(ii->dst, &ip.daddr);
	*proto = ip.protocol;
	return 0;
}

/* parse_ipv6 reads the fixed header; multicast destinations are the slow
 * path's (neighbour discovery, MLD). */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct ip_info *ii, __u8 *proto)
{
	struct ipv6hdr ip;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return -1;
	if (ip.version != 6 || bpf_ntohs(ip.payload_len) + sizeof(ip) > skb->len - ETH_HLEN ||
	    ip.daddr.in6_u.u6_addr8[0] == 0xff)
		return -1;
	ii->family = FAMILY_V6;
	ii->ttl = ip.hop_limit;
	ii->hdr_len = sizeof(ip);
	copy16(ii->src, ip.saddr.in6_u.u6_addr8);
	copy16(ii->dst, ip.daddr.in6_u.u6_addr8);
	*proto = ip.nexthdr;
	return 0;
}

/* l4_hdr_len is the length of a GSO frame's TCP or UDP header, which every
 * segment repeats; -1 for any other protocol. */
static __always_inline int l4_hdr_len(struct __sk_buff *skb, __u32 off, __u8 proto)
{
	if (proto == IPPROTO_UDP)
		return sizeof(struct udphdr);
	if (proto != IPPROTO_TCP)
		return -1;
	__u8 doff;
	if (bpf_skb_load_bytes(skb, off + 12, &doff, 1))
		return -1;
	return (doff >> 4) * 4;
}

/* fits says whether the frame, once encapsulated, fits the underlay MTU:
 * for a GSO frame, each segment the kernel or the NIC will cut from it. */
static __always_inline int fits(struct __sk_buff *skb, const struct egress *d,
				const struct ip_info *ii)
{
	__u32 len = skb->len;
	if (skb->gso_size)
		len = ETH_HLEN + ii->hdr_len + ii->l4_hdr_len + skb->gso_size;
	return len <= d->max_len;
}

/* dec_ttl makes the TTL (fixing the IPv4 checksum) or hop limit of the IP
 * header at l3 one less. */
static __always_inline int dec_ttl(struct __sk_buff *skb, __u32 l3, const struct ip_info *ii)
{
	__u8 ttl = ii->ttl - 1;
	if (ii->family == FAMILY_V6)
		return bpf_skb_store_bytes(skb, l3 + offsetof(struct ipv6hdr, hop_limit), &ttl, 1, 0);
	__be16 new_w = ii->ttl_w;
	((__u8 *)&new_w)[0] = ttl;
	if (bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), ii->ttl_w, new_w, 2))
		return -1;
	return bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, ttl), &ttl, 1, 0);
}

/* rewrite_inner makes the rewrites a decision asks for on the frame whose
 * IP header starts at l3: the destination MAC, and for a routed frame the
 * gateway's MAC (the decision's, which policy may set per subnet) as source
 * and the TTL or hop limit one less. */
static __always_inline int rewrite_inner(struct __sk_buff *skb, __u32 l2, const struct egress *d,
					 const struct ip_info *ii)
{
	if (bpf_skb_store_bytes(skb, l2, d->dst_mac, ETH_ALEN, 0))
		return -1;
	if (!d->routed)
		return 0;
	if (bpf_skb_store_bytes(skb, l2 + ETH_ALEN, d->src_mac, ETH_ALEN, 0))
		return -1;
	return dec_ttl(skb, l2 + ETH_HLEN, ii);
}

/* The header structs are packed: their parts are built apart and copied in. */
static __always_inline struct iphdr outer_ipv4(const struct egress *d, __u8 proto, __u32 len)
{
	struct iphdr ip = {
		.version = 4,
		.ihl = 5,
		.tot_len = bpf_htons(len),
		.frag_off = bpf_htons(0x4000), /* DF: the decision checked the MTU */
		.ttl = OUTER_TTL,
		.protocol = proto,
	};
	copy4((__u8 *)&ip.saddr, d->src_pa);
	copy4((__u8 *)&ip.daddr, d->dst_pa);
	ip.check = ipv4_csum(&ip);
	return ip;
}

static __always_inline struct gre_hdr nvgre(const struct egress *d, __u8 flow)
{
	struct gre_hdr g = {
		.flags = bpf_htons(GRE_KEY_PRESENT),
		.protocol = bpf_htons(ETH_P_TEB_),
		.key = bpf_htonl(d->vsid << 8 | flow), /* VSID and FlowID */
	};
	return g;
}

/*
 * flow_id is the slow path's FlowID of the inner flow (vswitch.flowID, the
 * same multiplicative hash of addresses, protocol and TCP/UDP ports), so
 * that a flow keeps one FlowID, and so one ECMP path, whichever path
 * encapsulates its packets. The kernel's own skb hash is seeded per boot
 * and cannot be reproduced in Go. The objects are built for bpfel only, so
 * a plain 64-bit load is the slow path's little-endian read.
 */
static __always_inline __u8 flow_id(struct __sk_buff *skb, const struct ip_info *ii, __u8 proto)
{
	__u16 ports_be[2] = {};
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP)
		bpf_skb_load_bytes(skb, ETH_HLEN + ii->hdr_len, ports_be, sizeof(ports_be));
	__u64 ports = (__u64)proto << 32 ^ (__u64)bpf_ntohs(ports_be[0]) << 16 ^ bpf_ntohs(ports_be[1]);
	__u64 s[2], d[2];
	__builtin_memcpy(s, ii->src, 16);
	__builtin_memcpy(d, ii->dst, 16);
	if (ii->family == FAMILY_V4) {
		__u64 addrs = (__u64)bpf_ntohl((__u32)s[0]) << 32 | bpf_ntohl((__u32)d[0]);
		return (((addrs * 0x9e3779b97f4a7c15ULL) ^ ports) * 0xbf58476d1ce4e5b9ULL) >> 56;
	}
	__u64 h = s[0] ^ d[0] * 0x9e3779b97f4a7c15ULL;
	h = (h ^ s[1]) * 0xbf58476d1ce4e5b9ULL;
	h = (h ^ d[1]) * 0x94d049bb133111ebULL;
	return ((h ^ ports) * 0x9e3779b97f4a7c15ULL) >> 56;
}

/*
 * encapsulate puts the outer IP header, the GRE or UDP and VXLAN header
 * and the inner Ethernet header between the frame's Ethernet header and
 * its IP header, and sends the result out of the underlay.
 *
 * bpf_skb_adjust_room at BPF_ADJ_ROOM_MAC opens the room right behind the
 * Ethernet header. The ENCAP flags are what make this work for a TCP
 * super-frame (a GSO skb from a VM's TSO): they set skb->encapsulation,
 * the inner header offsets (ENCAP_L2(14) says the room ends with a 14-byte
 * inner Ethernet header, ENCAP_L2_ETH that the inner protocol is TEB) and
 * SKB_GSO_GRE or SKB_GSO_UDP_TUNNEL, so the NIC or the kernel's GSO cuts
 * it into tunnel packets with correct outer headers. FIXED_GSO keeps the
 * VM's segment size: fits() checked the segments already fit.
 * The room's old Ethernet header is left in front: bpf_redirect_neigh
 * replaces it after its route and neighbour lookup of the outer
 * destination (skb->protocol follows the outer family, set by the flags).
 */
static __always_inline int encapsulate(struct __sk_buff *skb, const struct egress *d,
				       const struct ethhdr *eth, const struct ip_info *ii, __u8 proto)
{
	__u32 hash = bpf_get_hash_recalc(skb); /* of the inner flow */
	__u8 flow = flow_id(skb, ii, proto);
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
		      BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	struct ethhdr inner = *eth;
	__u32 room;
	__be16 outer_proto;

	if (d->outer_family == FAMILY_V6) {
		room = sizeof(struct nvgre6);
		flags |= BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | BPF_F_ADJ_ROOM_ENCAP_L4_GRE;
		outer_proto = bpf_htons(ETH_P_IPV6);
	} else if (d->encap == ENCAP_VXLAN) {
		room = sizeof(struct vxlan4);
		flags |= BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
		outer_proto = bpf_htons(ETH_P_IP);
	} else {
		room = sizeof(struct nvgre4);
		flags |= BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_GRE;
		outer_proto = bpf_htons(ETH_P_IP);
	}
	/* Before anything is written: a failure leaves the frame as it was. */
	if (bpf_skb_adjust_room(skb, room, BPF_ADJ_ROOM_MAC, flags))
		return -1;

	/* From here on, a failure has changed the frame: the caller drops it. */
	__u32 len = skb->len - ETH_HLEN; /* outer IP packet */
	int err;
	if (d->outer_family == FAMILY_V6) {
		struct nvgre6 h = {};
		h.ip.version = 6;
		/* The flow label lets the underlay's ECMP spread the flows. */
		h.ip.flow_lbl[0] = (hash >> 16) & 0x0f;
		h.ip.flow_lbl[1] = hash >> 8;
		h.ip.flow_lbl[2] = hash;
		h.ip.payload_len = bpf_htons(len - sizeof(h.ip));
		h.ip.nexthdr = IPPROTO_GRE;
		h.ip.hop_limit = OUTER_TTL;
		copy16(h.ip.saddr.in6_u.u6_addr8, d->src_pa);
		copy16(h.ip.daddr.in6_u.u6_addr8, d->dst_pa);
		h.gre = nvgre(d, flow);
		h.eth = inner;
		err = bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0);
	} else if (d->encap == ENCAP_VXLAN) {
		struct vxlan4 h = {};
		/* Source port from the flow hash, in 49152-65535, for ECMP; no
		 * UDP checksum (allowed over IPv4, RFC 7348). */
		h.udp.source = bpf_htons(0xc000 | (hash & 0x3fff));
		h.udp.dest = bpf_htons(VXLAN_PORT);
		h.udp.len = bpf_htons(len - sizeof(h.ip));
		h.vx.flags = bpf_htonl(VXLAN_FLAG_I << 24);
		h.vx.vni = bpf_htonl(d->vsid << 8);
		h.eth = inner;
		h.ip = outer_ipv4(d, IPPROTO_UDP, len);
		err = bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0);
	} else {
		struct nvgre4 h = {};
		h.gre = nvgre(d, flow);
		h.eth = inner;
		h.ip = outer_ipv4(d, IPPROTO_GRE, len);
		err = bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0);
	}
	if (err || rewrite_inner(skb, room, d, ii) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &outer_proto, 2, 0))
		return -2;
	return 0;
}

/* ---------------------------------------------------------------------
 * IP Rewrite: addresses and the way out
 */

/* l4_csum_off is the offset of the checksum in a TCP, UDP or ICMPv6 header
 * (covering a pseudo-header of the addresses), 0 for an ICMP one (no
 * pseudo-header), -1 for any other protocol: its packets are the slow
 * path's. */
static __always_inline int l4_csum_off(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 16;
	case IPPROTO_UDP:
		return 6;
	case IPPROTO_ICMPV6:
		return 2;
	case ICMP_:
		return 0;
	}
	return -1;
}

/*
 * rewrite_addrs replaces the addresses of the IP packet behind the Ethernet
 * header (IPv4 or IPv6 by family; its transport header at l4, of protocol
 * proto) with src and dst, fixing the checksums incrementally: the IPv4
 * header's, and the transport checksum over the pseudo-header. For a
 * checksum still partial (CHECKSUM_PARTIAL: a GSO super-frame, or a
 * checksum offload) bpf_l4_csum_replace moves the pseudo-header sum the
 * field holds to the new addresses, so the offload finishes it right; a
 * zero UDP checksum (none, over IPv4) stays zero (MARK_MANGLED_0). Over
 * IPv6, BPF_F_IPV6 keeps a CHECKSUM_COMPLETE sum right (the address bytes
 * and the checksum change by opposite amounts).
 *
 * The transport checksum is fixed first: -1 if it fails, the frame as it
 * was (a kernel without BPF_F_IPV6 refuses it, an L4 header beyond the
 * frame fails); -2 for a failure after the frame changed.
 */
static __always_inline int rewrite_addrs(struct __sk_buff *skb, __u8 family, __u32 l4, __u8 proto,
					 const __u8 *old_src, const __u8 *old_dst, const __u8 *src,
					 const __u8 *dst)
{
	int off = l4_csum_off(proto);
	if (off < 0)
		return -1;
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	if (family == FAMILY_V6) {
		__u8 from[32], to[32];
		copy16(from, old_src);
		copy16(from + 16, old_dst);
		copy16(to, src);
		copy16(to + 16, dst);
		__s64 diff = bpf_csum_diff((__be32 *)from, sizeof(from), (__be32 *)to, sizeof(to), 0);
		if (diff < 0 ||
		    bpf_l4_csum_replace(skb, l4 + off, 0, diff, BPF_F_PSEUDO_HDR | BPF_F_IPV6 | mangled))
			return -1;
		if (bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct ipv6hdr, saddr), to, sizeof(to), 0))
			return -2;
		return 0;
	}
	__be32 os, od, ns, nd;
	__builtin_memcpy(&os, old_src, 4);
	__builtin_memcpy(&od, old_dst, 4);
	__builtin_memcpy(&ns, src, 4);
	__builtin_memcpy(&nd, dst, 4);
	__u32 check = ETH_HLEN + offsetof(struct iphdr, check);
	if (proto != ICMP_) {
		__u64 flags = BPF_F_PSEUDO_HDR | mangled | sizeof(ns);
		if (bpf_l4_csum_replace(skb, l4 + off, os, ns, flags))
			return -1;
		if (bpf_l4_csum_replace(skb, l4 + off, od, nd, flags))
			return -2;
	}
	if (bpf_l3_csum_replace(skb, check, os, ns, sizeof(ns)) ||
	    bpf_l3_csum_replace(skb, check, od, nd, sizeof(nd)))
		return -2;
	__be32 addrs[2] = {ns, nd};
	if (bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, saddr), addrs, sizeof(addrs), 0))
		return -2;
	return 0;
}

/* rewritable says whether a VM's packet of protocol proto (transport header
 * at l4) may leave by IP Rewrite: GRE, UDP to port 4789 (the receiver
 * would take them for tunnel packets) and neighbour discovery are
 * encapsulated instead, by the slow path (vswitch's rewrite), and so is
 * what rewrite_addrs cannot fix. */
static __always_inline int rewritable(struct __sk_buff *skb, __u32 l4, __u8 proto)
{
	if (l4_csum_off(proto) < 0)
		return 0;
	if (proto == IPPROTO_UDP) {
		__be16 dport;
		return !bpf_skb_load_bytes(skb, l4 + 2, &dport, sizeof(dport)) &&
		       dport != bpf_htons(VXLAN_PORT);
	}
	if (proto == IPPROTO_ICMPV6) {
		__u8 type;
		return !bpf_skb_load_bytes(skb, l4, &type, 1) && (type < 133 || type > 137);
	}
	return 1;
}

/*
 * rewrite_out rewrites a VM's packet for IP Rewrite, as a KIND_REWRITE
 * decision says: the source CA becomes d->src_pa (the VM's own PA) and the
 * destination CA d->dst_pa, and the TTL drops by one when routed. The
 * caller sends it with bpf_redirect_neigh, which routes it from this host
 * and resolves the next hop, as the host's own packets are (bpf_fib_lookup
 * would want forwarding enabled on the underlay, even for an output
 * lookup); wnv_underlay_out puts the VM's MAC on it if its record says so.
 * A GSO super-frame keeps its GSO state: the kernel or the NIC cuts it into
 * segments with the new addresses, as it would the host's own. It returns
 * 0, -1 for the slow path (the frame unchanged: what the slow path
 * encapsulates or answers as too big), -2 for a frame changed and then
 * failed.
 */
static __always_inline int rewrite_out(struct __sk_buff *skb, const struct egress *d,
				       struct ip_info *ii, __u8 proto)
{
	__u32 l4 = ETH_HLEN + ii->hdr_len;
	if (!rewritable(skb, l4, proto))
		return -1;
	if (skb->gso_size) {
		int h = l4_hdr_len(skb, l4, proto);
		if (h < 0)
			return -1;
		ii->l4_hdr_len = h;
	}
	if (!fits(skb, d, ii))
		return -1;
	int err = rewrite_addrs(skb, ii->family, l4, proto, ii->src, ii->dst, d->src_pa, d->dst_pa);
	if (err)
		return err;
	if (d->routed && dec_ttl(skb, ETH_HLEN, ii))
		return -2;
	return 0;
}

/* from_port switches a frame from port p at ifindex (read once by the
 * caller: clang would keep a pointer into the context for each read, which
 * the verifier refuses). */
static __always_inline int from_port(struct __sk_buff *skb, const struct config *cfg,
				     const struct port *p, __u32 ifindex)
{
	struct ethhdr eth;
	struct ip_info ii = {};
	__u8 proto;
	__u32 len = skb->len;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return to_slow_path(skb, cfg, p);
	if (eth.h_proto == bpf_htons(ETH_P_8021Q) || eth.h_proto == bpf_htons(ETH_P_8021AD))
		return to_slow_path(skb, cfg, p);
	if (!mac_eq(eth.h_source, p->mac)) {
		count_drop(skb, p, p->vsid, REASON_SPOOFED_MAC);
		return TC_ACT_SHOT;
	}
	if (eth.h_dest[0] & 1) /* multicast, broadcast: flooding is the slow path's */
		return to_slow_path(skb, cfg, p);
	if (eth.h_proto == bpf_htons(ETH_P_IP)) {
		if (parse_ipv4(skb, &ii, &proto))
			return to_slow_path(skb, cfg, p);
	} else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
		if (parse_ipv6(skb, &ii, &proto))
			return to_slow_path(skb, cfg, p);
	} else {
		return to_slow_path(skb, cfg, p); /* ARP and the rest */
	}

	/* The source CA: one of the port's, or one it forwards from. DHCP,
	 * link-local, spoofed and new forwarded sources are the slow path's
	 * to judge. */
	int own_ca = 0;
	if (!(p->flags & PORT_L2_ONLY)) {
		struct addr_key ck = {.ifindex = ifindex, .family = ii.family};
		copy16(ck.addr, ii.src);
		own_ca = bpf_map_lookup_elem(&wnv_port_cas, &ck) != NULL;
		if (!own_ca) {
			__u64 *gen = bpf_map_lookup_elem(&wnv_fwd_srcs, &ck);
			if (!gen || *gen != cfg->gen)
				return to_slow_path(skb, cfg, p);
		}
	}

	struct addr_key ek = {.ifindex = ifindex, .family = ii.family};
	copy16(ek.addr, ii.dst);
	struct egress *d = bpf_map_lookup_elem(&wnv_egress, &ek);
	if (!d || d->gen != cfg->gen)
		return to_slow_path(skb, cfg, p);
	if (d->routed && ii.ttl <= 1) /* the slow path sends the ICMP error */
		return to_slow_path(skb, cfg, p);

	struct port *dp = NULL; /* the local port a KIND_LOCAL decision delivers to */
	if (d->kind == KIND_LOCAL) {
		__u32 out = d->out_ifindex;
		dp = bpf_map_lookup_elem(&wnv_ports, &out);
		if (!dp) /* not (or no longer) a port */
			return to_slow_path(skb, cfg, p);
		if (rewrite_inner(skb, 0, d, &ii)) {
			count_path(PATH_ERRORS);
			return TC_ACT_SHOT;
		}
		struct port_stats *ps = port_stats(dp);
		if (ps) {
			ps->tx_frames += 1;
			ps->tx_bytes += len;
		}
		struct vsid_stats *vs = vsid_stats(d->vsid);
		if (vs)
			vs->local += 1;
	} else if (d->kind == KIND_ENCAP) {
		/* VXLAN over IPv6 needs a UDP checksum over the whole packet,
		 * which the slow path computes. */
		if (d->encap == ENCAP_VXLAN && d->outer_family == FAMILY_V6)
			return to_slow_path(skb, cfg, p);
		if (skb->gso_size) {
			int l4 = l4_hdr_len(skb, ETH_HLEN + ii.hdr_len, proto);
			if (l4 < 0)
				return to_slow_path(skb, cfg, p);
			ii.l4_hdr_len = l4;
		}
		if (!fits(skb, d, &ii)) /* the slow path answers "too big" */
			return to_slow_path(skb, cfg, p);
		int err = encapsulate(skb, d, &eth, &ii, proto);
		if (err == -1)
			return to_slow_path(skb, cfg, p);
		if (err) {
			count_path(PATH_ERRORS);
			return TC_ACT_SHOT;
		}
		struct vsid_stats *vs = vsid_stats(d->vsid);
		if (vs)
			vs->encapsulated += 1;
	} else if (d->kind == KIND_REWRITE && own_ca) {
		/* Only the port's own CAs have the PA (forwarded sources are
		 * encapsulated). */
		int err = rewrite_out(skb, d, &ii, proto);
		if (err == -1)
			return to_slow_path(skb, cfg, p);
		if (err) {
			count_path(PATH_ERRORS);
			return TC_ACT_SHOT;
		}
		struct vsid_stats *vs = vsid_stats(d->vsid);
		if (vs)
			vs->encapsulated += 1;
	} else {
		return to_slow_path(skb, cfg, p);
	}

	struct port_stats *ps = port_stats(p);
	if (ps) {
		ps->rx_frames += 1;
		ps->rx_bytes += len;
	}
	count_path(PATH_PORT_FAST);
	if (dp)
		return deliver(dp, d->out_ifindex);
	return bpf_redirect_neigh(d->out_ifindex, NULL, 0, 0);
}

SEC("tcx/ingress")
int wnv_port(struct __sk_buff *skb)
{
	/* Second pass of a frame handed to the slow path: the packet socket
	 * has its copy. */
	if (skb->mark == SLOW_MARK)
		return TC_ACT_SHOT;
	struct config *cfg = get_config();
	if (!cfg)
		return TC_ACT_SHOT;
	__u32 ifindex = skb->ifindex;
	struct port *p = bpf_map_lookup_elem(&wnv_ports, &ifindex);
	if (!p || (cfg->flags & CFG_FAST_PATH_OFF))
		return to_slow_path(skb, cfg, p);
	return from_port(skb, cfg, p, ifindex);
}

/* ---------------------------------------------------------------------
 * Underlay
 */

/* underlay_slow_path leaves a tunnel packet to the kernel's stack, which
 * hands it to wnvd's raw GRE or UDP 4789 socket, unless wnvd is down. */
static __always_inline int underlay_slow_path(struct __sk_buff *skb, const struct config *cfg,
					      __u32 vsid)
{
	if (!slow_path_alive(cfg)) {
		count_drop(skb, NULL, vsid, REASON_SLOW_PATH_DOWN);
		return TC_ACT_SHOT;
	}
	count_path(PATH_UNDERLAY_SLOW);
	return TC_ACT_OK;
}

/* What from_underlay learns of the outer headers. */
struct tunnel {
	__u32 l4;	/* offset of the GRE or UDP header */
	__u32 hdr_len;	/* outer IP and tunnel headers */
	__u8 proto;	/* IPPROTO_GRE or IPPROTO_UDP */
	__u8 pa_family;
	__u8 src_pa[16];
};

/* parse_outer accepts an IPv4 (no options, no fragment) or IPv6 packet
 * carrying GRE or UDP directly, to a local PA. */
static __always_inline int parse_outer(struct __sk_buff *skb, __be16 proto, struct tunnel *t)
{
	struct pa_key pk = {};
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return -1;
		if (ip.version != 4 || ip.ihl != 5 || (ip.frag_off & bpf_htons(0x3fff)))
			return -1;
		t->proto = ip.protocol;
		t->pa_family = FAMILY_V4;
		t->l4 = ETH_HLEN + sizeof(ip);
		copy4(t->src_pa, &ip.saddr);
		copy4(pk.addr, &ip.daddr);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return -1;
		if (ip.version != 6)
			return -1;
		t->proto = ip.nexthdr;
		t->pa_family = FAMILY_V6;
		t->l4 = ETH_HLEN + sizeof(ip);
		copy16(t->src_pa, ip.saddr.in6_u.u6_addr8);
		copy16(pk.addr, ip.daddr.in6_u.u6_addr8);
	} else {
		return -1;
	}
	if (t->proto != IPPROTO_GRE && t->proto != IPPROTO_UDP)
		return -1;
	pk.family = t->pa_family;
	if (!bpf_map_lookup_elem(&wnv_local_pas, &pk))
		return -1;
	return 0;
}

/* parse_tunnel returns the VSID of an NVGRE or VXLAN header, or -1 (a
 * malformed header is the slow path's to count). */
static __always_inline __s64 parse_tunnel(struct __sk_buff *skb, struct tunnel *t)
{
	if (t->proto == IPPROTO_GRE) {
		struct gre_hdr g;
		if (bpf_skb_load_bytes(skb, t->l4, &g, sizeof(g)))
			return -1;
		if (g.flags != bpf_htons(GRE_KEY_PRESENT) || g.protocol != bpf_htons(ETH_P_TEB_))
			return -1;
		t->hdr_len = t->l4 - ETH_HLEN + sizeof(g);
		return bpf_ntohl(g.key) >> 8;
	}
	struct {
		struct udphdr udp;
		struct vxlan_hdr vx;
	} h;
	if (bpf_skb_load_bytes(skb, t->l4, &h, sizeof(h)))
		return -1;
	if (h.udp.dest != bpf_htons(VXLAN_PORT) || !(bpf_ntohl(h.vx.flags) >> 24 & VXLAN_FLAG_I))
		return -1;
	t->hdr_len = t->l4 - ETH_HLEN + sizeof(h);
	return bpf_ntohl(h.vx.vni) >> 8;
}

/*
 * decapsulate removes the outer IP header, the tunnel header and the inner
 * Ethernet header (bpf_skb_adjust_room shrinking at BPF_ADJ_ROOM_MAC) and
 * writes the inner Ethernet header over the outer one that is left, for
 * port p. DECAP_L3 sets skb->protocol to the inner family.
 *
 * A GSO packet (a tunnel super-frame that crossed a veth underlay whole,
 * or a GRO'd one) keeps its segment size (FIXED_GSO), and its tunnel GSO
 * state: DECAP_L4 (bpf-next, not in Linux 6.18) clears it, and a kernel
 * without it refuses the flag (EINVAL, the packet untouched). Then a
 * non-GSO packet is decapsulated without the flag; so is a GSO one for a
 * PORT_PEER port, whose peer's stack receives the super-frame whole and
 * reads nothing of the tunnel state the shrink left behind (the inner
 * header offsets it keeps still point at the inner headers); a TAP would
 * have to describe that state to the hypervisor, which tun refuses, so a
 * GSO packet for any other port goes to the slow path.
 */
static __always_inline int decapsulate(struct __sk_buff *skb, const struct tunnel *t,
				       const struct ethhdr *inner, const struct port *p)
{
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO;
	flags |= inner->h_proto == bpf_htons(ETH_P_IPV6) ? ADJ_ROOM_DECAP_L3_IPV6 : ADJ_ROOM_DECAP_L3_IPV4;
	__u64 l4 = t->proto == IPPROTO_GRE ? ADJ_ROOM_DECAP_L4_GRE : ADJ_ROOM_DECAP_L4_UDP;
	int len = -(int)(t->hdr_len + ETH_HLEN);

	long err = bpf_skb_adjust_room(skb, len, BPF_ADJ_ROOM_MAC, flags | l4);
	if (err == -EINVAL_ && (!skb->gso_size || (p->flags & PORT_PEER)))
		err = bpf_skb_adjust_room(skb, len, BPF_ADJ_ROOM_MAC, flags);
	if (err)
		return -1;
	if (bpf_skb_store_bytes(skb, 0, inner, sizeof(*inner), 0))
		return -2;
	return 0;
}

static __always_inline int from_underlay(struct __sk_buff *skb, const struct config *cfg)
{
	struct ethhdr eth;
	struct tunnel t = {};

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) || parse_outer(skb, eth.h_proto, &t))
		return TC_ACT_OK; /* not ours */
	__s64 v = parse_tunnel(skb, &t);
	if (v < 0)
		return TC_ACT_OK;
	__u32 vsid = v;

	struct ethhdr inner;
	__u32 off = ETH_HLEN + t.hdr_len;
	if (bpf_skb_load_bytes(skb, off, &inner, sizeof(inner)) || (inner.h_dest[0] & 1))
		return underlay_slow_path(skb, cfg, vsid);

	struct ingress_key k = {.vsid = vsid, .pa_family = t.pa_family};
	copy16(k.src_pa, t.src_pa);
	__builtin_memcpy(k.src_mac, inner.h_source, ETH_ALEN);
	__builtin_memcpy(k.dst_mac, inner.h_dest, ETH_ALEN);
	off += ETH_HLEN;
	if (inner.h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || ip.version != 4)
			return underlay_slow_path(skb, cfg, vsid);
		k.family = FAMILY_V4;
		copy4(k.src_ca, &ip.saddr);
		copy4(k.dst_ca, &ip.daddr);
	} else if (inner.h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || ip.version != 6)
			return underlay_slow_path(skb, cfg, vsid);
		k.family = FAMILY_V6;
		copy16(k.src_ca, ip.saddr.in6_u.u6_addr8);
		copy16(k.dst_ca, ip.daddr.in6_u.u6_addr8);
	} else {
		return underlay_slow_path(skb, cfg, vsid); /* VLAN, ARP, redirects */
	}

	struct ingress *d = bpf_map_lookup_elem(&wnv_ingress, &k);
	if (!d || d->gen != cfg->gen)
		return underlay_slow_path(skb, cfg, vsid);
	__u32 ifindex = d->ifindex;
	struct port *p = bpf_map_lookup_elem(&wnv_ports, &ifindex);
	if (!p)
		return underlay_slow_path(skb, cfg, vsid);

	int err = decapsulate(skb, &t, &inner, p);
	if (err == -1)
		return underlay_slow_path(skb, cfg, vsid);
	if (err) {
		count_path(PATH_ERRORS);
		return TC_ACT_SHOT;
	}
	struct port_stats *ps = port_stats(p);
	if (ps) {
		ps->tx_frames += 1;
		ps->tx_bytes += skb->len;
	}
	struct vsid_stats *vs = vsid_stats(vsid);
	if (vs)
		vs->decapsulated += 1;
	count_path(PATH_UNDERLAY_FAST);
	return deliver(p, ifindex);
}

/* ---------------------------------------------------------------------
 * Underlay VLANs
 */

struct arp4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

struct nd_head {
	__u8 type;
	__u8 code;
	__be16 csum;
	__u32 reserved;
	__u8 target[16];
};

/* pa_vlan returns the VLAN entry of the local PA an underlay frame is from
 * (out) or for (in), or NULL if it is none of theirs. Going out, a frame is
 * a PA's by its source: the IP source, the ARP sender, or for an RFC 5227
 * probe or IPv6 DAD (no source yet), the address probed for. Coming in, by
 * its destination: the IP destination or the ARP target; else the ND
 * target or the ARP sender (a PA's neighbour answering a probe, or
 * defending the address). The tag, if any, is not in the bytes: the
 * kernel moved it into the skb before tc ingress, and egress pushes it. */
static __always_inline __u16 *pa_vlan(struct __sk_buff *skb, int out)
{
	struct pa_key first = {}, second = {};
	__be16 proto;

	if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)))
		return NULL;
	if (proto == bpf_htons(ETH_P_ARP)) {
		struct arp4 a;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &a, sizeof(a)) || a.ptype != bpf_htons(ETH_P_IP) ||
		    a.plen != 4)
			return NULL;
		first.family = second.family = FAMILY_V4;
		copy4(first.addr, out ? a.spa : a.tpa);
		copy4(second.addr, out ? a.tpa : a.spa);
	} else if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return NULL;
		first.family = FAMILY_V4;
		copy4(first.addr, out ? &ip.saddr : &ip.daddr);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return NULL;
		first.family = FAMILY_V6;
		copy16(first.addr, out ? ip.saddr.in6_u.u6_addr8 : ip.daddr.in6_u.u6_addr8);
		struct nd_head nd;
		if (ip.nexthdr == NEXTHDR_ICMPV6 &&
		    !bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &nd, sizeof(nd)) &&
		    (nd.type == ND_NEIGHBOR_SOLICIT || nd.type == ND_NEIGHBOR_ADVERT)) {
			second.family = FAMILY_V6;
			copy16(second.addr, nd.target);
		}
	} else {
		return NULL;
	}
	__u16 *v = bpf_map_lookup_elem(&wnv_pa_vlans, &first);
	if (!v && second.family)
		v = bpf_map_lookup_elem(&wnv_pa_vlans, &second);
	return v;
}

static __always_inline struct underlay_stats *underlay_stats(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	return bpf_map_lookup_elem(&wnv_underlay_stats, &ifindex);
}

/* underlay_vlan_in lets a frame for a PA in only with the PA's VLAN, whose
 * tag it pops; it returns -1 for a frame to drop. */
static __always_inline int underlay_vlan_in(struct __sk_buff *skb)
{
	__u16 *want = pa_vlan(skb, 0);
	if (!want) /* the stack ignores a tag it has no VLAN device for */
		return 0;
	__u16 have = skb->vlan_present ? skb->vlan_tci & VLAN_ID_MASK : 0;
	struct underlay_stats *us = underlay_stats(skb);
	if (have != *want) {
		count_reason(REASON_WRONG_VLAN);
		if (us)
			us->wrong_vlan += 1;
		return -1;
	}
	if (skb->vlan_present) {
		if (bpf_skb_vlan_pop(skb)) {
			count_path(PATH_ERRORS);
			return -1;
		}
		if (have && us)
			us->rx_tagged += 1;
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * IP Rewrite
 */

/* rewrite_slow_path hands an IP Rewrite packet to wnvd the way to_slow_path
 * does a VM's frame: marked and received again by the underlay, where
 * wnvd's packet socket takes a copy and wnv_underlay drops it, so the
 * host's stack never sees it. */
static __always_inline int rewrite_slow_path(struct __sk_buff *skb, const struct config *cfg)
{
	if (!slow_path_alive(cfg)) {
		count_drop(skb, NULL, 0, REASON_SLOW_PATH_DOWN);
		return TC_ACT_SHOT;
	}
	skb->mark = SLOW_MARK;
	count_path(PATH_UNDERLAY_SLOW);
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

/*
 * rewrite_in delivers an IP Rewrite packet (transport header at l4, of
 * protocol proto) as the slow path validated its PA pair k in this
 * generation (wnv_rewrite_in): the PAs go back to the CAs, with the
 * checksums fixed as on the way out (rewrite_addrs), the MACs become the
 * record's, and the frame goes to the destination's port. A GSO
 * super-frame (one the sender's kernel path sent whole over a veth, or the
 * underlay's GRO merged) keeps its GSO state, which describes plain TCP or
 * UDP before and after. It returns -1 for the slow path (no current
 * decision: a PA pair it never validated is its to drop as
 * rewrite-mismatch).
 */
static __always_inline int rewrite_in(struct __sk_buff *skb, const struct config *cfg,
				      const struct rewrite_key *k, __u32 l4, __u8 proto)
{
	struct rewrite_in *d = bpf_map_lookup_elem(&wnv_rewrite_in, k);
	if (!d || d->gen != cfg->gen)
		return -1;
	__u32 ifindex = d->ifindex;
	struct port *p = bpf_map_lookup_elem(&wnv_ports, &ifindex);
	if (!p)
		return -1;
	int err = rewrite_addrs(skb, k->family, l4, proto, k->src_pa, k->dst_pa, d->src_ca, d->dst_ca);
	if (err == -1)
		return -1;
	struct ethhdr eth;
	__builtin_memcpy(eth.h_dest, d->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth.h_source, d->src_mac, ETH_ALEN);
	if (err || bpf_skb_store_bytes(skb, 0, &eth, 2 * ETH_ALEN, 0)) {
		count_path(PATH_ERRORS);
		return TC_ACT_SHOT;
	}
	struct port_stats *ps = port_stats(p);
	if (ps) {
		ps->tx_frames += 1;
		ps->tx_bytes += skb->len;
	}
	struct vsid_stats *vs = vsid_stats(p->vsid);
	if (vs)
		vs->decapsulated += 1;
	count_path(PATH_UNDERLAY_FAST);
	return deliver(p, ifindex);
}

/* from_rewrite takes a packet to a rewrite PA, but for what the tunnel path
 * takes (GRE, UDP to port 4789, fragments of either: senders encapsulate
 * those between Nat VMs too) and neighbour discovery (the host's stack
 * answers for its PAs): to its port as rewrite_in decides, or else to the
 * slow path. It returns -1 for a packet that is not IP Rewrite traffic. */
static __always_inline int from_rewrite(struct __sk_buff *skb, const struct config *cfg)
{
	struct ethhdr eth;
	struct rewrite_key k = {};
	struct pa_key pk = {};
	__u8 proto;
	int frag = 0;
	__u32 l4;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return -1;
	if (eth.h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) || ip.version != 4)
			return -1;
		k.family = FAMILY_V4;
		copy4(k.src_pa, &ip.saddr);
		copy4(k.dst_pa, &ip.daddr);
		proto = ip.protocol;
		frag = (ip.frag_off & bpf_htons(0x3fff)) != 0;
		l4 = ETH_HLEN + ip.ihl * 4;
	} else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) || ip.version != 6)
			return -1;
		k.family = FAMILY_V6;
		copy16(k.src_pa, ip.saddr.in6_u.u6_addr8);
		copy16(k.dst_pa, ip.daddr.in6_u.u6_addr8);
		proto = ip.nexthdr;
		l4 = ETH_HLEN + sizeof(ip);
	} else {
		return -1;
	}
	pk.family = k.family;
	copy16(pk.addr, k.dst_pa);
	if (!bpf_map_lookup_elem(&wnv_rewrite_pas, &pk) || proto == IPPROTO_GRE)
		return -1;
	if (proto == IPPROTO_ICMPV6) {
		/* Neighbour discovery for the PA is the host's stack's. */
		__u8 type;
		if (bpf_skb_load_bytes(skb, l4, &type, 1) || (type >= 133 && type <= 137))
			return -1;
	}
	if (proto == IPPROTO_UDP) {
		__be16 dport;
		if (frag || bpf_skb_load_bytes(skb, l4 + 2, &dport, sizeof(dport)) ||
		    dport == bpf_htons(VXLAN_PORT))
			return -1;
	}
	/* A fragment carries no transport header to fix (or only the first
	 * does): the slow path fixes the IP header alone. */
	if (!frag && !(cfg->flags & CFG_FAST_PATH_OFF)) {
		int rc = rewrite_in(skb, cfg, &k, l4, proto);
		if (rc >= 0)
			return rc;
	}
	return rewrite_slow_path(skb, cfg);
}

/* vm_mac_out puts the VM's MAC as source on a frame leaving from the PA of
 * a record with UseVmMACAddress (wnv_vm_macs): rewritten by wnv_port or by
 * the slow path, which sends through the host's stack. The host's own
 * neighbour discovery for the PA keeps the host's MAC, as its ARP does. */
static __always_inline void vm_mac_out(struct __sk_buff *skb)
{
	struct pa_key pk = {};
	__be16 proto;

	if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)))
		return;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return;
		pk.family = FAMILY_V4;
		copy4(pk.addr, &ip.saddr);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip;
		__u8 type;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return;
		if (ip.nexthdr == IPPROTO_ICMPV6 &&
		    (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &type, 1) || (type >= 133 && type <= 137)))
			return;
		pk.family = FAMILY_V6;
		copy16(pk.addr, ip.saddr.in6_u.u6_addr8);
	} else {
		return;
	}
	struct vm_mac *m = bpf_map_lookup_elem(&wnv_vm_macs, &pk);
	if (m && bpf_skb_store_bytes(skb, ETH_ALEN, m->mac, ETH_ALEN, 0))
		count_path(PATH_ERRORS); /* it leaves with the host's MAC */
}

SEC("tcx/ingress")
int wnv_underlay(struct __sk_buff *skb)
{
	/* Second pass of an IP Rewrite packet handed to the slow path. */
	if (skb->mark == SLOW_MARK)
		return TC_ACT_SHOT;
	if (underlay_vlan_in(skb))
		return TC_ACT_SHOT;
	struct config *cfg = get_config();
	if (!cfg)
		return TC_ACT_OK;
	int rc = from_rewrite(skb, cfg);
	if (rc >= 0)
		return rc;
	if (cfg->flags & CFG_FAST_PATH_OFF)
		return TC_ACT_OK;
	return from_underlay(skb, cfg);
}

SEC("tcx/egress")
int wnv_underlay_out(struct __sk_buff *skb)
{
	vm_mac_out(skb);
	if (skb->vlan_present)
		return TC_ACT_OK;
	__u16 vlan;
	if ((skb->mark & VLAN_MARK_MASK) == VLAN_MARK) {
		vlan = skb->mark & VLAN_ID_MASK;
	} else {
		__u16 *v = pa_vlan(skb, 1);
		if (!v)
			return TC_ACT_OK;
		vlan = *v & VLAN_ID_MASK;
	}
	if (!vlan)
		return TC_ACT_OK;
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vlan)) {
		count_path(PATH_ERRORS);
		return TC_ACT_SHOT;
	}
	struct underlay_stats *us = underlay_stats(skb);
	if (us)
		us->tx_tagged += 1;
	return TC_ACT_OK;
}
