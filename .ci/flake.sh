#!/usr/bin/env bash
# Runs the tests that used to depend on timing windows many times in a row (not part of
# CI): the kill -9 crash test (kill after N deliveries), SIGINT while counting, the
# @every 1s schedule test (synctest) and the metrics scrape during a send.
# Usage: .ci/flake.sh [COUNT]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20}
tests='^(TestCrashKill9|TestCrashSIGINTWhileCounting|TestScheduleFiresOnceAndStopsCleanly|TestMetricsDuringSendMatchSummary)$'
echo "+ go test -count=$count -run '$tests' ./cmd/herald" >&2
start=$(date +%s)
go test -count="$count" -run "$tests" ./cmd/herald
echo "$count runs of each in $(( $(date +%s) - start )) s" >&2
