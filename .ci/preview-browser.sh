#!/usr/bin/env bash
# The preview page in a real browser: headless Chromium (Debian's) loads the index.html
# that `herald preview --out` writes for examples/newsletter and runs its scripts. The
# check fails on a console error, or when the HTML frames were not sized to their
# content (the page's script could not read them). A screenshot is kept as
# .ci/tmp/preview.png.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$root/.ci/tmp/preview
rm -rf "$tmp"
mkdir -p "$tmp"

if ! command -v chromium >/dev/null; then
	if [ "${CI:-}" = true ]; then
		echo "+ apt-get install chromium" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
	else
		echo "chromium is not installed: apt-get install -y --no-install-recommends chromium" >&2
		exit 1
	fi
fi

go build -o "$tmp/herald" ./cmd/herald
cp -r examples/newsletter "$tmp/campaign"
rm -rf "$tmp/campaign/outbox" "$tmp/campaign/herald.db"
"$tmp/herald" preview "$tmp/campaign/campaign.yaml" --limit 3 --out "$tmp/out"

flags=(--headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars
	--window-size=1200,2400 --virtual-time-budget=5000 --user-data-dir="$tmp/profile")
url="file://$tmp/out/index.html"
echo "+ chromium --dump-dom $url" >&2
chromium "${flags[@]}" --enable-logging=stderr --v=0 --dump-dom "$url" >"$tmp/dom.html" 2>"$tmp/console.log"
echo "+ chromium --screenshot $url" >&2
chromium "${flags[@]}" --screenshot="$root/.ci/tmp/preview.png" "$url" 2>/dev/null

fail=0
if grep -E 'CONSOLE|Uncaught' "$tmp/console.log" | grep -viE 'dbus|gpu' >"$tmp/errors.log"; then
	echo "console messages of the preview page:" >&2
	cat "$tmp/errors.log" >&2
	fail=1
fi
frames=$(tr '\n' ' ' <"$tmp/dom.html" | grep -o '<iframe[^>]*>' || true)
n=$(printf '%s\n' "$frames" | grep -c '<iframe' || true)
sized=$(printf '%s\n' "$frames" | grep -E 'style="height: [0-9]+px' | grep -vc 'height: 400px' || true)
echo "frames: $n, sized to their content: $sized" >&2
if [ "$n" -ne 3 ] || [ "$sized" -ne 3 ]; then
	echo "the preview page should show 3 HTML frames sized to their content" >&2
	fail=1
fi
grep -q 'Mobile (375 px)' "$tmp/dom.html" || { echo "no width toggle on the page" >&2; fail=1; }
test -s "$root/.ci/tmp/preview.png" || { echo "no screenshot" >&2; fail=1; }
exit $fail
