#!/usr/bin/env bash
# Times herald on the campaign a new user writes — one ~10 KB HTML template with a few
# per-recipient fields and no text template (the text part is derived from the HTML,
# ~19 KB a message in all) — against Postfix's smtp-sink, with Postfix's smtp-source
# sending messages of the same size over as many sessions in the same run as the
# yardstick; then the same HTML with a text template (html+text). Runs alternate
# smtp-source / herald (/ baseline herald), and each prints
# "herald X/s, yardstick Y/s, ratio Z" and the CPU time herald took per message (user +
# system, which a busy machine changes less than the rates). Not part of CI (it takes minutes and installs
# Postfix); figures go to BENCHMARKS.md.
#
# Usage: .ci/bench-html.sh [ROWS [BASELINE_REV [ROUNDS [WORKERS]]]]
#   ROWS: list size (default 100000)
#   BASELINE_REV: a git revision to build and time in the same runs ("" for none)
#   ROUNDS: rounds of each case (default 2)
#   WORKERS: herald's workers (default 8; smtp-source always uses 8 sessions)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
baseline=${2:-}
rounds=${3:-2}
workers=${4:-8}
port=${BENCH_HTML_PORT:-2531}
work=$(mktemp -d)
run() { echo "+ $*" >&2; "$@"; }

if { ! command -v smtp-sink >/dev/null && [ ! -x /usr/sbin/smtp-sink ]; } || [ ! -x /usr/bin/time ]; then
	run apt-get update -qq
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix time
fi
sink=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
source_bin=$(command -v smtp-source || echo /usr/sbin/smtp-source)

run go build -o "$work/herald" ./cmd/herald
bins=(herald)
if [ -n "$baseline" ]; then
	mkdir "$work/base"
	git archive "$baseline" | tar -x -C "$work/base"
	(cd "$work/base" && run go build -o "$work/herald-base" ./cmd/herald)
	rm -rf "$work/base"
	bins=(herald herald-base)
fi

# smtp-sink on loopback; stopped on exit.
"$sink" -u nobody -c -m 512 127.0.0.1:$port 1024 >/dev/null 2>&1 &
sink_pid=$!
trap 'kill $sink_pid 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.5

# The campaigns: html-only/ (no text template) and both/ (the same HTML and a text
# template), each also as size-*/ to the file provider for 20 rows, to measure the
# message size.
python3 - "$work" "$rows" "$port" "$workers" <<'PY'
import sys, os
work, rows, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def list_csv(path, n):
    with open(path, "w") as f:
        f.write("email,first_name,name,city\n")
        for i in range(n):
            f.write(f"user{i:07d}@example.org,Name{i},Name{i} Surname,City{i % 100}\n")
html = ['<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Our November picks</title></head><body>\n',
        "<h1>Hello {{ .first_name }},</h1>\n<p>Our picks for readers in {{ .city }} this month:</p>\n"]
i = 0
while sum(map(len, html)) < 9900:
    html.append(f"<h2>Pick {i}</h2>\n<p>A paragraph of newsletter text, the same for every reader, about pick {i}: "
                "what it is, why we chose it &amp; who it suits, long enough to wrap like a real one.</p>\n"
                f'<p><a href="https://acme.example/picks/{i}?utm_campaign={{{{ .Campaign }}}}">Read more about pick {i}</a></p>\n')
    i += 1
html.append('<p>You get this because {{ .Email }} subscribed. <a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p>\n</body></html>\n')
html = "".join(html)
text = ("Hello {{ .first_name }} in {{ .city }}.\n" + "Some newsletter text for the plain part, wrapped like a mail.\n" * 60
        + "\nUnsubscribe: {{ .UnsubscribeURL }}\n")
for case in ("html-only", "both"):
    for d, n, provider, w in ((case, rows, f"{{kind: smtp, host: 127.0.0.1, port: {port}, tls: none}}", workers),
                              ("size-" + case, 20, "{kind: file, dir: outbox}", 1)):
        os.makedirs(os.path.join(work, d))
        list_csv(os.path.join(work, d, "subscribers.csv"), n)
        open(os.path.join(work, d, "template.html"), "w").write(html)
        text_line = ""
        if case == "both":
            open(os.path.join(work, d, "template.txt"), "w").write(text)
            text_line = "text: template.txt\n"
        open(os.path.join(work, d, "campaign.yaml"), "w").write(f"""name: bench
from: "Bench <news@example.com>"
subject: "{{{{ .first_name }}}}, our picks"
html: template.html
{text_line}list: subscribers.csv
unsubscribe: {{url: "https://example.com/unsubscribe"}}
provider: {provider}
rate: "1000000/s"
workers: {w}
""")
PY

declare -A size
for case in html-only both; do
	"$work/herald" send "$work/size-$case/campaign.yaml" --yes --json >/dev/null
	size[$case]=$(python3 -c "import glob, os; f = glob.glob('$work/size-$case/outbox/*.eml'); print(round(sum(map(os.path.getsize, f)) / len(f)))")
	echo "$case: herald's messages are ${size[$case]} bytes (headers, text and HTML parts)" >&2
done

# rate N SECONDS: messages per second, rounded.
rate() { python3 -c "print(round($1 / ($2)))"; }
elapsed() { python3 -c "print($2 - $1)"; }

uptime >&2
declare -A results
for round in $(seq 1 "$rounds"); do
	for case in html-only both; do
		echo "== round $round, $case: smtp-source, $rows messages of ${size[$case]} bytes, 8 sessions" >&2
		start=$(date +%s.%N)
		"$source_bin" -M localhost -f a@example.com -t b@example.com -l "${size[$case]}" -m "$rows" -s 8 -d 127.0.0.1:$port
		end=$(date +%s.%N)
		yard=$(rate "$rows" "$(elapsed "$start" "$end")")
		echo "smtp-source: $yard/s" >&2
		for bin in "${bins[@]}"; do
			rm -f "$work/$case"/herald.db*
			echo "== round $round, $case: $bin, $rows recipients, $workers workers" >&2
			start=$(date +%s.%N)
			/usr/bin/time -f "%U %S" -o "$work/cpu.txt" "$work/$bin" send "$work/$case/campaign.yaml" --yes --json >"$work/summary.json"
			end=$(date +%s.%N)
			cpu=$(python3 -c "u, s = open('$work/cpu.txt').read().split()[-2:]; print(round((float(u) + float(s)) / $rows * 1e6))")
			sent=$(python3 -c "import json; print(json.load(open('$work/summary.json'))['sent'])")
			if [ "$sent" != "$rows" ]; then
				echo "$bin sent $sent of $rows: $(cat "$work/summary.json")" >&2
				exit 1
			fi
			got=$(rate "$rows" "$(elapsed "$start" "$end")")
			ratio=$(python3 -c "print(f'{$got / $yard:.2f}')")
			line="round $round, $case (${size[$case]} B/message), $bin: herald $got/s, yardstick $yard/s, ratio $ratio, cpu $cpu µs/message"
			echo "$line"
			results[$case,$bin]+="$ratio "
		done
	done
done
uptime >&2
for case in html-only both; do
	for bin in "${bins[@]}"; do
		echo "$case, $bin: ratios ${results[$case,$bin]}"
	done
done
