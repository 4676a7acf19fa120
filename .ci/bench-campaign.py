#!/usr/bin/env python3
"""Writes the benchmark campaign of .ci/bench.sh into a folder: ROWS personalised ~10 KB
messages (HTML of ~10 KB with a few fields, a text part of ~4 KB, the unsubscribe link),
8 workers, no rate ceiling, and the provider given as a YAML flow mapping.

Usage: bench-campaign.py DIR ROWS PROVIDER
  e.g. bench-campaign.py /tmp/w 200000 '{kind: smtp, host: 127.0.0.1, port: 2525, tls: none}'
"""
import os
import sys

work, rows, provider = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(os.path.join(work, "subscribers.csv"), "w") as f:
    f.write("email,first_name,name,city\n")
    for i in range(rows):
        f.write(f"user{i:07d}@example.org,Name{i},Name{i} Surname,City{i % 100}\n")
para = "<p>A paragraph of newsletter text, the same for every reader, that fills the message to a realistic size.</p>\n"
html = "<html><body><h1>Hello {{ .first_name }},</h1>\n<p>Our picks for readers in {{ .city }}:</p>\n" + para * 90 + '<p><a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p></body></html>\n'
open(os.path.join(work, "template.html"), "w").write(html)
open(os.path.join(work, "template.txt"), "w").write("Hello {{ .first_name }} in {{ .city }}.\n" + "Some newsletter text for the plain part, wrapped like a mail.\n" * 60 + "\nUnsubscribe: {{ .UnsubscribeURL }}\n")
open(os.path.join(work, "campaign.yaml"), "w").write(f"""name: bench
from: "Bench <news@example.com>"
subject: "{{{{ .first_name }}}}, our picks"
html: template.html
text: template.txt
list: subscribers.csv
unsubscribe: {{url: "https://example.com/unsubscribe"}}
provider: {provider}
rate: "1000000/s"
workers: 8
""")
