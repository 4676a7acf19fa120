#!/usr/bin/env bash
# Installs the SES v2 emulator (npm package aws-ses-v2-local 2.10.2) into DIR and starts it
# in the background on 127.0.0.1:PORT. Its pid goes to DIR/pid and its output to
# DIR/emulator.log; stop it with `kill "$(cat DIR/pid)"`.
#
# Usage: .ci/ses-emulator.sh DIR PORT
# Then:  HERALD_SES_ENDPOINT=http://127.0.0.1:PORT go test -tags e2e ./providers/ses/
set -euo pipefail

usage="usage: $0 DIR PORT"
dir=${1:?$usage}
port=${2:?$usage}
case $port in '' | *[!0-9]*) echo "$0: PORT must be a number, got '$port'" >&2; exit 2 ;; esac

run() { echo "+ $*" >&2; "$@"; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
url="http://127.0.0.1:$port"
cli="$dir/node_modules/aws-ses-v2-local/dist/cli.js"

if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
	echo "$0: the emulator started from $dir is still running (pid $(cat "$dir/pid")); stop it first or use another DIR" >&2
	exit 1
fi
if curl -s -o /dev/null --max-time 2 "$url/"; then
	echo "$0: something already answers on $url; not starting a second emulator" >&2
	exit 1
fi

if [ ! -f "$cli" ]; then
	# A package.json of its own keeps npm from installing into a parent folder's project.
	[ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
	(cd "$dir" && run npm install --no-audit --no-fund aws-ses-v2-local@2.10.2)
fi

echo "+ node $cli --host 127.0.0.1 --port $port >$dir/emulator.log 2>&1 &" >&2
node "$cli" --host 127.0.0.1 --port "$port" </dev/null >"$dir/emulator.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/pid"

for _ in $(seq 1 100); do
	if curl -fs -o /dev/null --max-time 2 "$url/store"; then
		echo "SES emulator (pid $pid) answers on $url" >&2
		exit 0
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "$0: the emulator exited; its log:" >&2
		cat "$dir/emulator.log" >&2
		exit 1
	fi
	sleep 0.2
done
echo "$0: the emulator (pid $pid) did not answer on $url/store within 20s; stopping it; its log:" >&2
kill "$pid" 2>/dev/null || true
cat "$dir/emulator.log" >&2
exit 1
