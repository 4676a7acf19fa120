#!/usr/bin/env bash
# Times the whole herald binary against Postfix's smtp-sink, with Postfix's own
# smtp-source as the yardstick in the same run, and measures herald's peak memory on a
# large list. Not part of CI (it takes minutes and installs Postfix); figures go to
# BENCHMARKS.md.
#
# Usage: .ci/bench.sh [ROWS [BASELINE_REV]]
#   ROWS: list size (default 200000; 1000000 for the memory figure)
#   BASELINE_REV: a git revision to build and time in the same run, for comparison
#        .ci/bench.sh all [BASELINE_REV]
#   every case of BENCHMARKS.md's "Performance, second round", one after the other, each
#   printing herald's figure, its yardstick's and the ratio: HTML-only and html+text
#   sends against smtp-source, the dry run, SES against ab, rate accuracy, PostgreSQL
#   against SQLite and hosts against one host, start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = all ]; then
	base=${2:-}
	set -x
	.ci/bench-html.sh 100000 "$base" 2
	.ci/bench-dryrun.sh 1000000 "$base" 2
	.ci/bench-api.sh 5000 2 "$base"
	.ci/bench-rate.sh
	.ci/bench-stores.sh "$base" 2
	.ci/bench-startup.sh "$base"
	exit 0
fi
rows=${1:-200000}
baseline=${2:-}
work=$(mktemp -d)
port=2525
run() { echo "+ $*" >&2; "$@"; }

if ! command -v smtp-sink >/dev/null || [ ! -x /usr/bin/time ]; then
	run apt-get update -qq
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix time
fi
sink=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
source_bin=$(command -v smtp-source || echo /usr/sbin/smtp-source)

run go build -o "$work/herald" ./cmd/herald
if [ -n "$baseline" ]; then
	run git worktree add -q "$work/base" "$baseline"
	(cd "$work/base" && run go build -o "$work/herald-base" ./cmd/herald)
	run git worktree remove --force "$work/base"
fi

# smtp-sink on loopback; stopped on exit.
"$sink" -u nobody -c -m 512 127.0.0.1:$port 1024 >/dev/null 2>&1 &
sink_pid=$!
trap 'kill $sink_pid 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.5

echo "== yardstick: smtp-source, 20000 messages of 10 KB, 8 sessions, connection reuse" >&2
start=$(date +%s.%N)
run "$source_bin" -M localhost -f a@example.com -t b@example.com -l 10240 -m 20000 -s 8 -d 127.0.0.1:$port
end=$(date +%s.%N)
echo "smtp-source: $(python3 -c "print(round(20000/($end-$start)))") messages/s" >&2

echo "== herald: $rows personalised ~10 KB messages, 8 workers, journal on" >&2
run python3 .ci/bench-campaign.py "$work" "$rows" "{kind: smtp, host: 127.0.0.1, port: $port, tls: none}"
bins=(herald)
[ -n "$baseline" ] && bins=(herald-base herald herald-base herald)
for bin in "${bins[@]}"; do
	rm -f "$work"/herald.db*
	echo "-- $bin" >&2
	run /usr/bin/time -v "$work/$bin" send "$work/campaign.yaml" --yes --json 2>"$work/time.txt" >"$work/summary.json" || { cat "$work/time.txt" >&2; exit 1; }
	echo "$bin summary: $(cat "$work/summary.json")" >&2
	grep -E "Maximum resident|Elapsed \(wall" "$work/time.txt" >&2
done
