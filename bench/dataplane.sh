#!/usr/bin/env bash
# Measures VM-to-VM traffic through (a) the Linux kernel's vxlan device and a
# bridge, (b) wnvd with VXLAN, (c) wnvd with NVGRE and (d) Open vSwitch's
# userspace datapath with VXLAN, each between two hosts built in network
# namespaces, and a bare veth pair between the two VMs as the machine's limit,
# in one run, and prints each figure (the median of --rounds rounds over all
# setups) with its ratio to (a).
# Usage: sudo bench/dataplane.sh [--duration 5s] [--rounds 3] [--only kernel,vxlan,nvgre,ovs,veth]
# [--mtu 9000] (underlay MTU; default 1500) [--gso-tap=] (empty: wnvd segments
# TCP super-frames itself instead of handing them to the kernel whole)
# [--fast-path=off] (wnvd switches every frame itself)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/dataplane.sh creates network namespaces: run it as root (sudo bench/dataplane.sh)" >&2
	exit 1
fi
cd "$(dirname "$0")/.."

if ! command -v iperf3 >/dev/null; then
	echo "installing iperf3 from Debian" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q iperf3 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q iperf3 >/dev/null; }
fi

# Open vSwitch for setup (d), when it is to run and is missing: Debian's
# openvswitch-switch, whose service is neither started (policy-rc.d) nor left
# enabled; dpbench runs its own ovsdb-server and ovs-vswitchd in its
# namespaces. If it cannot be installed, dpbench says so and measures the rest.
only="" prev=""
for a in "$@"; do
	case "$prev" in --only | -only) only=$a ;; esac
	case "$a" in --only=* | -only=*) only=${a#*=} ;; esac
	prev=$a
done
if { [ -z "$only" ] || [[ ",$only," == *,ovs,* ]]; } && ! command -v ovs-vswitchd >/dev/null; then
	echo "installing openvswitch-switch from Debian (its service is not started or enabled)" >&2
	export DEBIAN_FRONTEND=noninteractive
	rcd=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		rcd=/usr/sbin/policy-rc.d
		trap 'rm -f "$rcd"' EXIT
		printf '#!/bin/sh\n# bench/dataplane.sh: no service starts while it installs Open vSwitch\nexit 101\n' >"$rcd"
		chmod 755 "$rcd"
	fi
	if apt-get install -y -q openvswitch-switch >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q openvswitch-switch >/dev/null 2>&1; }; then
		systemctl disable --quiet openvswitch-switch.service 2>/dev/null ||
			update-rc.d openvswitch-switch disable >/dev/null 2>&1 || true
	else
		echo "could not install openvswitch-switch: (d) OVS will not be measured" >&2
	fi
	if [ -n "$rcd" ]; then
		rm -f "$rcd"
		trap - EXIT
	fi
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/wnvd" ./cmd/wnvd
go build -o "$bin/dpbench" ./bench/dpbench

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
# dpbench removes its namespaces and processes itself, also on Ctrl-C.
"$bin/dpbench" --wnvd "$bin/wnvd" "$@"
