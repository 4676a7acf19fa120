package campaign

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const contentBase = `name: november-news
from: "Acme News <news@Acme.example>"
subject: "Hi"
list: subscribers.csv
unsubscribe: {url: "https://news.acme.example/unsubscribe"}
`

func TestContentKeys(t *testing.T) {
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	c, err := Parse("/srv/news/campaign.yaml", []byte(contentBase+`markdown: body.md
layout: layout.html
inline_css: false
attachments: [brochure.pdf, /abs/terms.pdf]
attachment_column: invoice
inline: {logo: img/logo.png}
feedback_id: "november:news:acme:herald"
`), now)
	if err != nil {
		t.Fatal(err)
	}
	if c.MarkdownFile != "/srv/news/body.md" || c.LayoutFile != "/srv/news/layout.html" || c.InlineCSS == nil || *c.InlineCSS ||
		strings.Join(c.Attachments, ",") != "/srv/news/brochure.pdf,/abs/terms.pdf" || c.AttachmentColumn != "invoice" ||
		c.Inline["logo"] != "/srv/news/img/logo.png" || c.FeedbackID != "november:news:acme:herald" {
		t.Errorf("content keys read as %+v", c)
	}
	if c.ListID != "<november-news.acme.example>" {
		t.Errorf("default List-Id = %q", c.ListID)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"markdown: b.md\nhtml: t.html\n", "markdown"},
		{"text: t.txt\ninline: {logo: l.png}\n", "inline"},
		{"html: t.html\ninline: {\"a b\": l.png}\n", "inline"},
		{"html: t.html\nattachments: [\"\"]\n", "attachments"},
		{"subject2: x\nhtml: t.html\n", "subject2"},
	} {
		_, err := Parse("c.yaml", []byte(contentBase+bad.yaml), now)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want one naming %s", bad.yaml, err, bad.want)
		}
	}
}

func TestDefaultListID(t *testing.T) {
	for _, c := range []struct{ name, from, want string }{
		{"november-news", "news@acme.example", "<november-news.acme.example>"},
		{"weekly-{{ .Week }}", "news@Acme.Example", "<weekly.acme.example>"},
		{"{{ .Date }}", "news@acme.example", "<acme.example>"},
		{"a..b_-", "n@x.example", "<a.b.x.example>"},
	} {
		if got := DefaultListID(c.name, c.from); got != c.want {
			t.Errorf("DefaultListID(%q, %q) = %q, want %q", c.name, c.from, got, c.want)
		}
	}
}

func TestInsideDir(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "invoices"), 0o755)
	os.WriteFile(filepath.Join(dir, "invoices", "a.pdf"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "invoices", "link.pdf"))
	if p, err := InsideDir(dir, "invoices/a.pdf"); err != nil || !strings.HasSuffix(p, "a.pdf") {
		t.Errorf("inside: %q, %v", p, err)
	}
	for _, bad := range []string{"../secret", "invoices/../../x", filepath.Join(outside, "secret"), "invoices/link.pdf", "invoices/missing.pdf"} {
		if _, err := InsideDir(dir, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
