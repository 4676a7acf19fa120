#!/usr/bin/env bash
# Times `herald send` through the ses provider into the aws-ses-v2-local emulator, with
# ApacheBench (`ab -k -c 8`) posting an equally sized SendEmail request to the same
# emulator as the yardstick, alternating A B A B in the same run. Also reports the CPU
# each run cost the emulator's node process and herald, to tell which one limits.
# Not part of CI (it takes minutes and installs apache2-utils and an npm package);
# figures go to BENCHMARKS.md ("API providers: connection pools sized to the workers").
#
# Usage: .ci/bench-api.sh [MESSAGES [ROUNDS [BASELINE_REV]]]
#   MESSAGES: messages per run (default 5000)
#   ROUNDS: A B rounds (default 2)
#   BASELINE_REV: a git revision to build and time in each round too (e.g. main)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
rounds=${2:-2}
baseline=${3:-}
port=${HERALD_BENCH_SES_PORT:-18015}
work=$(mktemp -d)
emu=${HERALD_BENCH_SES_DIR:-$work/emulator}
run() { echo "+ $*" >&2; "$@"; }

if ! command -v ab >/dev/null; then
	run apt-get update -qq
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends apache2-utils
fi

run go build -o "$work/herald" ./cmd/herald
bins=(herald)
if [ -n "$baseline" ]; then
	run git worktree add -q --detach "$work/base" "$baseline"
	(cd "$work/base" && run go build -o "$work/herald-base" ./cmd/herald)
	run git worktree remove --force "$work/base"
	bins=(herald-base herald)
fi

# The emulator on 127.0.0.1 (installed into $emu by ses-emulator.sh); stopped on exit.
emu_pid=
cleanup() {
	if [ -n "$emu_pid" ]; then kill "$emu_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
run .ci/ses-emulator.sh "$emu" "$port"
emu_pid=$(cat "$emu/pid")
url="http://127.0.0.1:$port"

# A text-only campaign of ~6.4 KB messages, 8 workers, no rate ceiling; and one message
# of it rendered by the file provider, wrapped in the JSON the AWS SDK sends for
# SendEmail with raw content (base64 blob), for ab.
python3 - "$work" "$n" "$url" <<'PY'
import sys, os
work, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(os.path.join(work, "subscribers.csv"), "w") as f:
    f.write("email,first_name,city\n")
    for i in range(n):
        f.write(f"user{i:07d}@example.org,Name{i},City{i % 100}\n")
open(os.path.join(work, "template.txt"), "w").write(
    "Hello {{ .first_name }} in {{ .city }}.\n"
    + "Some newsletter text for the plain part, wrapped like a mail.\n" * 90
    + "\nUnsubscribe: {{ .UnsubscribeURL }}\n")
common = """name: bench
from: "Bench <news@example.com>"
subject: "{{ .first_name }}, our picks"
text: template.txt
list: %s
unsubscribe: {url: "https://example.com/unsubscribe"}
rate: "1000000/s"
workers: 8
"""
open(os.path.join(work, "campaign.yaml"), "w").write(
    common % "subscribers.csv" + f"provider: {{kind: ses, region: us-east-1, endpoint: \"{url}\"}}\n")
open(os.path.join(work, "one.csv"), "w").write("email,first_name,city\nuser0000000@example.org,Name0,City0\n")
open(os.path.join(work, "one.yaml"), "w").write(common % "one.csv" + "provider: {kind: file, dir: outbox}\n")
PY
run "$work/herald" send "$work/one.yaml" --yes --store "$work/one.db" >/dev/null
python3 - "$work" <<'PY'
import sys, os, glob, base64, json
work = sys.argv[1]
raw = open(glob.glob(os.path.join(work, "outbox", "*.eml"))[0], "rb").read()
body = {"Content": {"Raw": {"Data": base64.b64encode(raw).decode()}},
        "Destination": {"ToAddresses": ["user0000000@example.org"]},
        "EmailTags": [{"Name": "campaign", "Value": "bench"}],
        "FromEmailAddress": "news@example.com"}
open(os.path.join(work, "body.json"), "w").write(json.dumps(body, separators=(",", ":")))
print(f"message {len(raw)} bytes, SendEmail body {os.path.getsize(os.path.join(work, 'body.json'))} bytes", file=sys.stderr)
PY

# CPU seconds (user+system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

declare -A total count
echo "== $rounds round(s) of: ab -k -c 8, then herald (8 workers)${baseline:+ and herald at $baseline}; $n messages each; $(uptime)" >&2
for r in $(seq 1 "$rounds"); do
	curl -fs -X POST "$url/clear-store" >/dev/null
	c0=$(cpu "$emu_pid")
	out=$(ab -q -k -c 8 -n "$n" -p "$work/body.json" -T application/json \
		-H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/ses/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-date, Signature=$(printf '0%.0s' $(seq 64))" \
		-H "X-Amz-Date: 20260101T000000Z" "$url/v2/email/outbound-emails" 2>/dev/null)
	c1=$(cpu "$emu_pid")
	rate=$(echo "$out" | awk '/^Requests per second/ {print $4}')
	failed=$(echo "$out" | awk '/^(Failed requests|Non-2xx responses)/ {s += $NF} END {print s + 0}')
	[ "$failed" = 0 ] || { echo "$out" >&2; echo "ab: $failed failed requests" >&2; exit 1; }
	echo "round $r ab: $rate req/s; emulator CPU $(python3 -c "print(round(($c1-$c0)/$n*1e6))") us/request" >&2
	total[ab]=$(python3 -c "print(${total[ab]:-0}+$rate)"); count[ab]=$((${count[ab]:-0} + 1))
	for bin in "${bins[@]}"; do
		curl -fs -X POST "$url/clear-store" >/dev/null
		rm -f "$work"/herald.db*
		c0=$(cpu "$emu_pid")
		TIMEFORMAT='%U %S'
		{ time "$work/$bin" send "$work/campaign.yaml" --yes --json --store "$work/herald.db" >"$work/summary.json" 2>"$work/err.txt"; } 2>"$work/time.txt" ||
			{ cat "$work/err.txt" >&2; exit 1; }
		hcpu=$(awk '{print $1 + $2}' "$work/time.txt")
		c1=$(cpu "$emu_pid")
		rate=$(python3 -c "import json; s=json.load(open('$work/summary.json')); assert s['sent'] == $n, s; print(s['rate_per_s'])")
		echo "round $r $bin: $rate msg/s; emulator CPU $(python3 -c "print(round(($c1-$c0)/$n*1e6))") us/message, herald CPU $(python3 -c "print(round($hcpu/$n*1e6))") us/message" >&2
		total[$bin]=$(python3 -c "print(${total[$bin]:-0}+$rate)"); count[$bin]=$((${count[$bin]:-0} + 1))
	done
done
ab=$(python3 -c "print(round(${total[ab]}/${count[ab]}))")
for bin in "${bins[@]}"; do
	h=$(python3 -c "print(round(${total[$bin]}/${count[$bin]}))")
	echo "$bin $h/s, yardstick (ab -k -c 8) $ab/s, ratio $(python3 -c "print(round($h/$ab, 2))")"
done
