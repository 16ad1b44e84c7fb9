// Package dataplane is the I/O edge between the pure switch and the kernel:
// VM ports as TAP devices, the underlay as raw IP protocol 47 sockets (NVGRE)
// and UDP port 4789 sockets (VXLAN) bound to the host's provider addresses
// (PAs), and PA management with duplicate address detection.
//
// Everything moves in batches. A TAP or underlay socket is registered with
// Go's runtime poller, so a ReadBatch that has nothing to read parks its
// goroutine instead of an OS thread, and Close wakes it with an error
// wrapping os.ErrClosed. ReadBatch and WriteBatch are safe for concurrent use
// without locks: each call takes its syscall vectors from a pool in the
// object, so steady-state calls do not allocate. (The sockets drive recvmmsg
// and sendmmsg themselves rather than through golang.org/x/net's PacketConn
// batches, which allocate a net.Addr for every received message.) The
// syscalls themselves go through RawSyscall: the fds are non-blocking, and
// the runtime's sysmon would otherwise hand a worker's P to another thread
// whenever a large send spends more than 20 us in the kernel. Frames the
// kernel refuses on write (interface down, no buffer space, no route, too
// big) are counted in Stats and skipped rather than returned as errors, so a
// bad port or peer cannot wedge a worker.
//
// Offloads: a TAP opened with Offload has IFF_VNET_HDR and TUNSETOFFLOAD
// (checksum, TSO4, TSO6), so the VM hands over 64 KiB TCP super-frames behind
// a virtio-net header and WriteOffload gives it coalesced ones back (package
// offload does the segmenting and coalescing). The VXLAN socket sends UDP GSO
// batches (UDP_SEGMENT) and reads with UDP_GRO (Packet.Segment). A raw GRE
// socket has no GSO: NVGRE moves one segment per message.
//
// All functions act in the network namespace of the calling thread, except
// that OpenTAP can move the new interface into a named namespace.
//
// Kernel caveats:
//
//   - GRE demux. A raw IPPROTO_GRE socket receives a clone of every GRE packet
//     addressed to its bound PA before any protocol handler runs, so it works
//     whether or not ip_gre/ip6_gre are present. When they are, every network
//     namespace gets fallback devices (gre0, gretap0, ip6gre0) that stay down;
//     ip_gre then finds no tunnel for an NVGRE packet and answers it with an
//     ICMP destination-unreachable after our socket already has it. That is
//     noise, not loss: an unconnected raw socket without IP_RECVERR ignores
//     such errors at the sender. Configure no kernel GRE tunnel on a PA that
//     wnv owns, or the kernel and wnv both consume its packets. Kernels built
//     without CONFIG_NET_IPGRE_DEMUX (like the lab machine's) have none of this.
//   - IPv4 raw sockets deliver the IP header, which ReadBatch strips; IPv6 raw
//     sockets deliver the payload only, so Dst is the bound PA.
//   - An IPv6 PA cannot be bound until the kernel's DAD has finished
//     (EADDRNOTAVAIL while tentative): open the GRE socket after
//     DetectDuplicate reports AddressPreferred.
//   - IPv4 has no kernel DAD: DetectDuplicate probes with ARP (RFC 5227)
//     before the address is added. IPv6 DAD is the kernel's, started by
//     AddAddress; a failed address stays on the interface with IFA_F_DADFAILED
//     until the caller removes it.
//   - Closing a TAP's file descriptor deletes the interface in whichever
//     namespace it lives, once any ReadBatch in progress has returned.
package dataplane
