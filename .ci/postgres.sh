#!/usr/bin/env bash
# Makes sure PostgreSQL's initdb and pg_ctl can be found, for the journal's PostgreSQL
# tests (they start throwaway clusters themselves, see campaign/journal/pgtest), and
# prints the folder that holds them. Installs Debian's postgresql package when they
# are nowhere (the cluster it would start is not used: the service is not started).
set -euo pipefail
find_bin() {
	if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
		dirname "$(command -v initdb)"
		return 0
	fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		echo "$d"
		return 0
	fi
	return 1
}
if find_bin; then
	exit 0
fi
echo "+ apt-get install postgresql (initdb not found)" >&2
policy=$(mktemp)
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod +x "$policy"
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_=sudo
$sudo_ install -m 755 "$policy" /usr/sbin/policy-rc.d
$sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
$sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
find_bin
