#!/usr/bin/env bash
# Store benchmark: herald on a PostgreSQL store (fsync on) against herald on an SQLite
# store in the same run (one host, 8 workers, to Postfix's smtp-sink), and one to three
# hosts on one PostgreSQL store against a relay that answers DATA after 20 ms. The
# yardsticks are SQLite (for the one-host case) and one host (for the hosts case): the
# targets are PostgreSQL >= 0.75x SQLite and close to 2x / 3x with two / three hosts.
# Runs cmd/herald's TestBenchStores, A B A B against a build of BASELINE_REV when given.
# Not part of CI (minutes, installs Postfix and PostgreSQL); figures go to BENCHMARKS.md.
#
# Usage: .ci/bench-stores.sh [BASELINE_REV [ROUNDS]]
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=${1:-}
rounds=${2:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { echo "+ $*" >&2; "$@"; }

if ! command -v smtp-sink >/dev/null && [ ! -x /usr/sbin/smtp-sink ]; then
	run apt-get update -qq
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix
fi
PATH=$PATH:/usr/sbin:$(.ci/postgres.sh)
export PATH

base_env=()
if [ -n "$baseline" ]; then
	run git worktree add -q --detach "$work/base" "$baseline"
	(cd "$work/base" && run go build -o "$work/herald-base" ./cmd/herald)
	run git worktree remove --force "$work/base"
	base_env=(HERALD_BENCH_BASE="$work/herald-base")
fi

echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# The servers (smtp-sink, PostgreSQL, the 20 ms relay) are started by the test on
# 127.0.0.1 and stopped when it ends.
env HERALD_BENCH_STORE=1 HERALD_BENCH_ROUNDS="$rounds" HERALD_BENCH_WORKERS="${HERALD_BENCH_WORKERS:-8}" \
	HERALD_BENCH_STATEMENTS=1 "${base_env[@]}" \
	go test -run TestBenchStores -count 1 -timeout 30m -v ./cmd/herald/ >"$work/out" 2>&1 || {
	cat "$work/out" >&2
	exit 1
}
grep -v '^=== ' "$work/out" | grep 'benchstore_test' | sed 's/^ *benchstore_test.go:[0-9]*: //' >&2
# The figures, as "herald X/s, yardstick Y/s, ratio Z".
python3 - "$work/out" <<'PY'
import re, sys, statistics
one, hosts, phases = {}, {}, {}
for line in open(sys.argv[1]):
    m = re.search(r"one host, (\d+) workers, (\w+), (sqlite|postgres)\s*: \d+ sent,\s+(\d+) msg/s", line)
    if m:
        one.setdefault((m[2], m[1], m[3]), []).append(float(m[4]))
    m = re.search(r"(\w+): (\d) host\(s\) x 4 workers.* = (\d+) msg/s, (\d+) msg/s in the send phases", line)
    if m:
        hosts.setdefault((m[1], m[2]), []).append(float(m[3]))
        phases.setdefault((m[1], m[2]), []).append(float(m[4]))
for (v, w, kind) in sorted(one):
    if kind != "postgres":
        continue
    pg, sq = one[(v, w, "postgres")], one[(v, w, "sqlite")]
    print(f"{v}, one host, {w} workers: herald on PostgreSQL {statistics.median(pg):.0f}/s, "
          f"yardstick herald on SQLite {statistics.median(sq):.0f}/s, ratio {statistics.median([p / s for p, s in zip(pg, sq)]):.2f}")
for (v, n) in sorted(hosts):
    if n == "1":
        continue
    h, one_h = hosts[(v, n)], hosts[(v, "1")]
    print(f"{v}, {n} hosts x 4 workers, 20 ms relay: herald {statistics.median(h):.0f}/s, "
          f"yardstick one host {statistics.median(one_h):.0f}/s, ratio {statistics.median([a / b for a, b in zip(h, one_h)]):.2f} (linear: {n}); "
          f"send phases only: ratio {statistics.median([a / b for a, b in zip(phases[(v, n)], phases[(v, '1')])]):.2f}")
PY
