package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/providers"
)

func TestPreviewPage(t *testing.T) {
	big := "<p>" + strings.Repeat("x", gmailClip) + "</p>"
	msgs := []*providers.Message{{
		From: "News <news@acme.example>", To: "ann@example.org", ToName: "Ann", Subject: "Hi Ann",
		HTML:    `<p><img src="cid:logo"> <a href="https://acme.example/a">Our <b>blog</b></a> <a href="https://news.acme.example/u/tok">Unsubscribe</a></p>`,
		Text:    "Hi Ann\n",
		Raw:     []byte("raw"),
		Headers: []providers.Header{{Name: "List-Unsubscribe", Value: "<https://news.acme.example/u/tok>"}},
		Attachments: []providers.Attachment{
			{Name: "logo.png", ContentType: "image/png", ContentID: "logo", Data: []byte("png")},
			{Name: "a/b.pdf", ContentType: "application/pdf", Data: make([]byte, 2048)},
		},
	}, {From: "x@acme.example", To: "bob@example.org", Subject: "big", HTML: big, Raw: []byte(big)}}
	written := map[string][]byte{}
	page, err := previewPage(msgs, func(n string, d []byte) error { written[n] = d; return nil })
	if err != nil {
		t.Fatal(err)
	}
	p := page[0]
	if !strings.Contains(p.HTML, `src="files/0001-01-logo.png"`) || string(written["files/0001-01-logo.png"]) != "png" {
		t.Errorf("inline image not pointed at its file: %s %v", p.HTML, written)
	}
	if len(p.Files) != 2 || p.Files[1].Path != "files/0001-02-a_b.pdf" || p.Files[1].KB != "2.0" || !p.Files[0].Inline {
		t.Errorf("files %+v", p.Files)
	}
	if len(p.Links) != 2 || p.Links[0] != (pageLink{"Our blog", "https://acme.example/a"}) {
		t.Errorf("links %+v", p.Links)
	}
	if p.To != "Ann <ann@example.org>" || p.ListUnsubscribe == "" || p.Clipped || !page[1].Clipped {
		t.Errorf("page %+v", p)
	}
	b, err := renderIndex("news", page, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Mobile (375 px)", "<iframe", "Gmail will clip", "Our blog", "b.pdf", "List-Unsubscribe"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestPreviewServeReloads(t *testing.T) {
	path := cliCampaign(t, 2, "  kind: file\n  dir: outbox", "")
	var stderr cliBuffer
	sig := make(chan os.Signal, 1)
	sys := &IO{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &stderr,
		Getenv: func(string) string { return "" }, Now: time.Now, Signals: sig, Exit: func(int) {}}
	done := make(chan int, 1)
	go func() { done <- Main([]string{"preview", path, "--serve", "--addr", "127.0.0.1:0"}, sys) }()
	var base string
	for deadline := time.Now().Add(20 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+/)`).FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		t.Fatalf("no address printed: %s", stderr.String())
	}
	get := func(p string) string {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if page := get(""); !strings.Contains(page, "Hello Reader 1") || !strings.Contains(page, "0001.eml") {
		t.Fatalf("page: %s", page)
	}
	if eml := get("0001.eml"); !strings.Contains(eml, "Subject: Hello Reader 1") {
		t.Errorf("0001.eml: %.200s", eml)
	}
	v1 := get("version")
	os.WriteFile(filepath.Join(filepath.Dir(path), "t.txt"), []byte("Bonjour {{ .name }}!\nUnsubscribe: {{ .UnsubscribeURL }}\n"), 0o644)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(filepath.Join(filepath.Dir(path), "t.txt"), future, future)
	if v2 := get("version"); v2 == v1 {
		t.Errorf("version unchanged after an edit: %s", v2)
	}
	if page := get(""); !strings.Contains(page, "Bonjour Reader 1!") {
		t.Errorf("page not rendered afresh: %.300s", page)
	}
	sig <- syscall.SIGINT
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("preview --serve did not stop on SIGINT")
	}
}
