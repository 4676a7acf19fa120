#!/usr/bin/env bash
# Start-up: wall time of `herald send` of a 10-row campaign (the quickstart's, from
# `herald init`) to the file provider on a fresh store, and of `herald version`, 20 runs
# each; prints the minimum and the median (ms). Target: under 100 ms.
#
# Usage: .ci/bench-startup.sh [BASELINE_REV]
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { echo "+ $*" >&2; "$@"; }
run go build -trimpath -o "$work/herald" ./cmd/herald
bins=(herald)
if [ -n "$baseline" ]; then
	run git worktree add -q "$work/base" "$baseline"
	(cd "$work/base" && run go build -trimpath -o "$work/herald-base" ./cmd/herald)
	run git worktree remove --force "$work/base"
	bins=(herald-base herald herald-base herald)
fi
"$work/herald" init "$work/c" >/dev/null 2>&1
ms() { python3 -c 'import sys,statistics; v=sorted(float(x) for x in sys.stdin.read().split()); print(f"min {v[0]:.0f} ms, median {statistics.median(v):.0f} ms")'; }
for bin in "${bins[@]}"; do
	for i in $(seq 20); do
		rm -rf "$work/c/herald.db"* "$work/c/outbox"
		s=$(date +%s%N)
		"$work/$bin" send "$work/c/campaign.yaml" --yes --json --rate 100000/s >/dev/null 2>&1
		e=$(date +%s%N)
		echo $(((e - s) / 1000))
	done | awk '{print $1/1000}' | ms | sed "s/^/$bin send, 10 rows, fresh store: /"
	for i in $(seq 20); do
		s=$(date +%s%N)
		"$work/$bin" version >/dev/null
		e=$(date +%s%N)
		echo $(((e - s) / 1000))
	done | awk '{print $1/1000}' | ms | sed "s/^/$bin version: /"
done
echo "load: $(uptime)"
