#!/usr/bin/env bash
# Rate accuracy: `herald send --rate 2000/s` with 8 workers for 20 s to an in-process SMTP
# server that notes each message's arrival; prints the achieved rate and the fullest
# closed one-second window (the ceiling: 2000). The exact figure of the pacer alone, in a
# synctest bubble, is campaign's TestRateAccuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
run() { echo "+ $*" >&2; "$@"; }
run go test -count=1 -run 'TestRateAccuracy$' -v ./campaign/ | grep -E 'achieved|^(ok|FAIL|---)'
for round in 1 2; do
	echo "== round $round" >&2
	HERALD_BENCH_RATE=1 run go test -count=1 -run 'TestBenchRate$' -v ./cmd/herald/ | grep -E 'achieved|each second|^(ok|FAIL|---)'
done
