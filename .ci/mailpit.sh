#!/usr/bin/env bash
# Installs Mailpit v1.33.1 into BINDIR (unless BINDIR/mailpit exists) and starts it in the
# background with its SMTP server on 127.0.0.1:SMTP_PORT and its HTTP API on
# 127.0.0.1:HTTP_PORT, keeping every message. Its pid goes to BINDIR/mailpit.pid and its
# output to BINDIR/mailpit.log; stop it with `kill -TERM "$(cat BINDIR/mailpit.pid)"`
# (SIGTERM, so that it removes its temporary database).
#
# Usage: .ci/mailpit.sh BINDIR SMTP_PORT HTTP_PORT
set -euo pipefail

usage="usage: $0 BINDIR SMTP_PORT HTTP_PORT"
bindir=${1:?$usage}
smtp_port=${2:?$usage}
http_port=${3:?$usage}
for p in "$smtp_port" "$http_port"; do
	case $p in '' | *[!0-9]*) echo "$0: ports must be numbers, got '$p'" >&2; exit 2 ;; esac
done

run() { echo "+ $*" >&2; "$@"; }

mkdir -p "$bindir"
bindir=$(cd "$bindir" && pwd)
api="http://127.0.0.1:$http_port"

if [ -f "$bindir/mailpit.pid" ] && kill -0 "$(cat "$bindir/mailpit.pid")" 2>/dev/null; then
	echo "$0: the Mailpit started from $bindir is still running (pid $(cat "$bindir/mailpit.pid")); stop it first or use another BINDIR" >&2
	exit 1
fi
if curl -s -o /dev/null --max-time 2 "$api/"; then
	echo "$0: something already answers on $api; not starting a second Mailpit" >&2
	exit 1
fi

if [ ! -x "$bindir/mailpit" ]; then
	run env GOBIN="$bindir" go install github.com/axllent/mailpit@v1.33.1
fi

args=(--smtp "127.0.0.1:$smtp_port" --listen "127.0.0.1:$http_port"
	--disable-version-check --smtp-disable-rdns
	--smtp-auth-accept-any --smtp-auth-allow-insecure --max 0)
echo "+ $bindir/mailpit ${args[*]} >$bindir/mailpit.log 2>&1 &" >&2
"$bindir/mailpit" "${args[@]}" </dev/null >"$bindir/mailpit.log" 2>&1 &
pid=$!
echo "$pid" >"$bindir/mailpit.pid"

for _ in $(seq 1 100); do
	if curl -fs -o /dev/null --max-time 2 "$api/api/v1/messages?limit=1"; then
		echo "Mailpit (pid $pid) answers: SMTP 127.0.0.1:$smtp_port, API $api" >&2
		exit 0
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "$0: mailpit exited; its log:" >&2
		cat "$bindir/mailpit.log" >&2
		exit 1
	fi
	sleep 0.2
done
echo "$0: mailpit (pid $pid) did not answer on $api within 20s; stopping it; its log:" >&2
kill -TERM "$pid" 2>/dev/null || true
cat "$bindir/mailpit.log" >&2
exit 1
