#!/usr/bin/env bash
# Times `herald send --dry-run --json` over a large list of .ci/bench.sh's campaign
# (~10 KB personalised HTML + ~3.7 KB text, every message rendered), with a build of a
# baseline revision in the same run, alternating baseline and new (A B A B). A dry run has
# no yardstick: the target is an absolute 100,000 rows/s, with a peak RSS of at most
# 64 MiB at 1,000,000 rows. Not part of CI; figures go to BENCHMARKS.md.
#
# Usage: .ci/bench-dryrun.sh [ROWS [BASELINE_REV [ROUNDS]]]
#   ROWS: list size (default 1000000)
#   BASELINE_REV: the revision to compare with (default main; "" for none)
#   ROUNDS: A B pairs (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
baseline=${2-main}
rounds=${3:-2}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" 2>/dev/null || true; rm -rf "$work"' EXIT
run() { echo "+ $*" >&2; "$@"; }

if [ ! -x /usr/bin/time ]; then
	run apt-get update -qq
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time
fi

run go build -o "$work/herald" ./cmd/herald
if [ -n "$baseline" ]; then
	run git worktree add -q --detach "$work/base" "$baseline"
	(cd "$work/base" && run go build -o "$work/herald-base" ./cmd/herald)
	run git worktree remove --force "$work/base"
fi

# .ci/bench.sh's campaign, with the file provider (a dry run connects to nothing).
run python3 .ci/bench-campaign.py "$work" "$rows" '{kind: file, dir: outbox}'

# one BIN: runs a dry run and prints "rows/s peak-RSS-KiB cpu-seconds".
one() {
	local bin=$1
	/usr/bin/time -v "$work/$bin" send "$work/campaign.yaml" --dry-run --json >"$work/summary.json" 2>"$work/time.txt" ||
		{ cat "$work/time.txt" >&2; exit 1; }
	grep -q "\"pending\":$rows," "$work/summary.json" || { echo "$bin: unexpected summary $(cat "$work/summary.json")" >&2; exit 1; }
	python3 - "$work/time.txt" "$rows" <<'PY'
import sys, re
t, rows = open(sys.argv[1]).read(), int(sys.argv[2])
def field(name):
    return re.search(re.escape(name) + r": (.*)", t).group(1).strip()
wall = 0.0
for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
    wall = wall * 60 + float(part)
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
print(round(rows / wall), field("Maximum resident set size (kbytes)"), round(cpu, 1))
PY
}

echo "== $rows rows, GOMAXPROCS $(nproc), load: $(uptime | sed 's/.*load average/load average/')" >&2
bins=()
for _ in $(seq "$rounds"); do
	[ -n "$baseline" ] && bins+=(herald-base)
	bins+=(herald)
done
declare -A sum_rate=() max_rss=() count=()
for bin in "${bins[@]}"; do
	read -r rate rss cpu < <(one "$bin")
	echo "$bin: $rate rows/s, peak RSS $((rss / 1024)) MiB, CPU ${cpu} s ($(python3 -c "print(round($cpu*1e6/$rows, 1))") µs/row)" >&2
	sum_rate[$bin]=$(( ${sum_rate[$bin]:-0} + rate ))
	count[$bin]=$(( ${count[$bin]:-0} + 1 ))
	(( rss > ${max_rss[$bin]:-0} )) && max_rss[$bin]=$rss
done
echo "== load after: $(uptime | sed 's/.*load average/load average/')" >&2
new=$(( sum_rate[herald] / count[herald] ))
rss=$(( max_rss[herald] / 1024 ))
if [ -n "$baseline" ]; then
	base=$(( sum_rate[herald-base] / count[herald-base] ))
	echo "herald $new rows/s, baseline ($baseline) $base rows/s, ratio $(python3 -c "print(round($new/$base, 2))"); target 100000 rows/s: $(python3 -c "print(round($new/100000, 2))")x; peak RSS $rss MiB (baseline $(( max_rss[herald-base] / 1024 )) MiB, target 64)"
else
	echo "herald $new rows/s; target 100000 rows/s: $(python3 -c "print(round($new/100000, 2))")x; peak RSS $rss MiB (target 64)"
fi
