#!/usr/bin/env bash
# Live migration benchmark: builds wnvd and wnvctl, brings up the namespace lab
# (policy server with embedded etcd, three hosts running the agent, blue3 a
# real QEMU guest), migrates the stand-in VM blue2 10 times between host2 and
# host3 and the QEMU guest 5 times between host3 and host2 (QEMU's own live
# migration), each under a 1 kHz UDP probe stream from blue1, prints each
# migration's blackout and loss, then the median and p99 of each series, and
# tears the lab down. The 50 ms median target is for the stand-in VM; the QEMU
# guest's figures are reported (without QEMU or the guest image, run make
# deps, that series is skipped). Usage:
#   sudo bench/migration.sh [-n 10] [--qemu-n 5] [--qemu blue3|""] [--keep]
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/migration.sh creates network namespaces: run it as root (sudo bench/migration.sh)" >&2
	exit 1
fi
cd "$(dirname "$0")/.."
# sudo resets PATH; fall back to the standard Go install location.
GO=$(command -v go || echo /usr/local/go/bin/go)
command -v ip >/dev/null || { echo "the lab needs iproute2: run 'make deps'" >&2; exit 1; }

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
"$GO" build -o "$bin/" ./cmd/wnvd ./cmd/wnvctl ./bench/migration

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
# The bench removes its lab itself, also on Ctrl-C.
"$bin/migration" --wnvd "$bin/wnvd" --wnvctl "$bin/wnvctl" "$@"
