#!/usr/bin/env bash
# Measures VM-to-VM traffic through (a) the Linux kernel's vxlan device and a
# bridge, (b) wnvd with VXLAN and (c) wnvd with NVGRE, each between two hosts
# built in network namespaces, in one run, and prints each figure with its
# ratio to (a). Usage: sudo bench/dataplane.sh [--duration 5s] [--only kernel,vxlan,nvgre]
# [--mtu 9000] (underlay MTU; default 1500) [--gso-tap=] (empty: wnvd segments
# TCP super-frames itself instead of handing them to the kernel whole)
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

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/wnvd" ./cmd/wnvd
go build -o "$bin/dpbench" ./bench/dpbench

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
# dpbench removes its namespaces and processes itself, also on Ctrl-C.
"$bin/dpbench" --wnvd "$bin/wnvd" "$@"
