package fastpath

// The programs are compiled with Debian's clang and libbpf-dev headers
// (make deps), for little-endian hosts only; the objects are committed.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -type config -type port -type addr_key -type pa_key -type egress -type ingress_key -type ingress -type rewrite_key -type rewrite_in -type vm_mac -type port_stats -type vsid_stats -type underlay_stats -type monitor_config -type monitor_state -type monitor_event datapath bpf/datapath.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
