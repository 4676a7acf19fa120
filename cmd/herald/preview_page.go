package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	xhtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/providers"
)

// gmailClip is the size of an HTML part above which Gmail clips the message.
const gmailClip = 102 * 1024

// pageLink is a link found in a message.
type pageLink struct{ Text, Href string }

// pageFile is an attachment or inline image, written beside the page.
type pageFile struct {
	Name, Path, Type string
	Inline           bool
	KB               string
}

// pageMessage is one message as the preview page shows it.
type pageMessage struct {
	File, From, To, Subject, ListUnsubscribe, MessageID string
	KB, HTMLKB                                          string
	Clipped                                             bool
	HTML, Text                                          string
	Files                                               []pageFile
	Links                                               []pageLink
}

func kb(n int) string { return fmt.Sprintf("%.1f", float64(n)/1024) }

// previewPage builds the page model of msgs; files (attachments, inline images) are
// written by write(name, data) and referred to by that name; cid: links in the HTML are
// pointed at them, so the frame shows the images.
func previewPage(msgs []*providers.Message, write func(name string, data []byte) error) ([]pageMessage, error) {
	var out []pageMessage
	for i, m := range msgs {
		pm := pageMessage{
			File: fmt.Sprintf("%04d.eml", i+1), From: m.From, Subject: m.Subject, MessageID: m.MessageID,
			KB: kb(len(m.Raw)), HTMLKB: kb(len(m.HTML)), Clipped: len(m.HTML) > gmailClip, Text: m.Text,
		}
		pm.To = m.To
		if m.ToName != "" {
			pm.To = fmt.Sprintf("%s <%s>", m.ToName, m.To)
		}
		for _, h := range m.Headers {
			if h.Name == "List-Unsubscribe" {
				pm.ListUnsubscribe = h.Value
			}
		}
		if err := write(pm.File, m.Raw); err != nil {
			return nil, err
		}
		html := m.HTML
		for j, a := range m.Attachments {
			name := fmt.Sprintf("files/%04d-%02d-%s", i+1, j+1, safeName(a.Name))
			if err := write(name, a.Data); err != nil {
				return nil, err
			}
			pm.Files = append(pm.Files, pageFile{Name: a.Name, Path: name, Type: a.ContentType, Inline: a.ContentID != "", KB: kb(len(a.Data))})
			if a.ContentID != "" {
				html = strings.ReplaceAll(html, `"cid:`+a.ContentID+`"`, `"`+name+`"`)
			}
		}
		pm.HTML = html
		if m.HTML != "" {
			pm.Links = htmlLinks(m.HTML)
		} else {
			for _, u := range urlRe.FindAllString(m.Text, -1) {
				pm.Links = append(pm.Links, pageLink{Href: u})
			}
		}
		out = append(out, pm)
	}
	return out, nil
}

var urlRe = regexp.MustCompile(`https?://[^\s<>()"]+`)

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

// htmlLinks lists the <a href> of an HTML document with their text.
func htmlLinks(doc string) []pageLink {
	var out []pageLink
	z := xhtml.NewTokenizer(strings.NewReader(doc))
	var cur *pageLink
	for {
		switch z.Next() {
		case xhtml.ErrorToken:
			return out
		case xhtml.StartTagToken:
			name, hasAttr := z.TagName()
			if atom.Lookup(name) != atom.A {
				continue
			}
			href := ""
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if string(k) == "href" {
					href = string(v)
				}
			}
			if href != "" {
				out = append(out, pageLink{Href: href})
				cur = &out[len(out)-1]
			}
		case xhtml.TextToken:
			if cur != nil {
				cur.Text += string(z.Text())
			}
		case xhtml.EndTagToken:
			if name, _ := z.TagName(); atom.Lookup(name) == atom.A && cur != nil {
				cur.Text = strings.Join(strings.Fields(cur.Text), " ")
				cur = nil
			}
		}
	}
}

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ .Campaign }}: preview</title>
<style>
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em;color:#1f2328;background:#f6f8fa}
article{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:1.5em 0;padding:1em 1.5em}
h2{font-size:1.1em;margin:.2em 0 .8em}
dl{display:grid;grid-template-columns:max-content auto;gap:.25em 1em;margin:0 0 1em}dt{font-weight:600}dd{margin:0;word-break:break-all}
.warn{color:#9a3412;font-weight:600}
.toggle button{margin-right:.5em;padding:.3em .8em;border:1px solid #d0d7de;border-radius:4px;background:#f6f8fa;cursor:pointer}
.toggle button[aria-pressed=true]{background:#0b3d91;color:#fff}
.frame{border:1px solid #d0d7de;margin:.5em 0 1em;overflow:hidden}
iframe{display:block;width:100%;height:400px;border:0;margin:0 auto;background:#fff}
pre{white-space:pre-wrap;background:#f6f8fa;padding:1em;border-radius:4px;max-height:40em;overflow:auto}
table{border-collapse:collapse}td,th{text-align:left;padding:.2em .8em .2em 0;vertical-align:top}
</style></head>
<body><h1>{{ .Campaign }}: {{ len .Messages }} message(s)</h1>
{{ if .Live }}<p>Live preview: the page reloads when the campaign, a template or the list changes.</p>{{ end }}
{{ range $i, $m := .Messages }}<article id="m{{ $i }}">
<h2><a href="{{ .File }}">{{ .File }}</a> · {{ .Subject }}</h2>
<dl>
<dt>From</dt><dd>{{ .From }}</dd>
<dt>To</dt><dd>{{ .To }}</dd>
<dt>Subject</dt><dd>{{ .Subject }}</dd>
<dt>List-Unsubscribe</dt><dd>{{ .ListUnsubscribe }}</dd>
<dt>Size</dt><dd>{{ .KB }} KB (HTML {{ .HTMLKB }} KB){{ if .Clipped }} <span class="warn">over Gmail's 102 KB: Gmail will clip this message</span>{{ end }}</dd>
</dl>
{{ if .HTML }}<div class="toggle"><button type="button" data-width="100%" aria-pressed="true">Desktop</button><button type="button" data-width="375px" aria-pressed="false">Mobile (375 px)</button></div>
<div class="frame"><iframe title="HTML part of {{ .File }}" sandbox="allow-same-origin" srcdoc="{{ .HTML }}"></iframe></div>{{ end }}
{{ if .Text }}<h3>Text part</h3><pre>{{ .Text }}</pre>{{ end }}
{{ if .Files }}<h3>Files</h3><table>{{ range .Files }}<tr><td><a href="{{ .Path }}">{{ .Name }}</a></td><td>{{ .Type }}</td><td>{{ .KB }} KB</td><td>{{ if .Inline }}inline{{ else }}attachment{{ end }}</td></tr>{{ end }}</table>{{ end }}
{{ if .Links }}<h3>Links</h3><table>{{ range .Links }}<tr><td>{{ .Text }}</td><td><a href="{{ .Href }}" rel="noopener noreferrer" target="_blank">{{ .Href }}</a></td></tr>{{ end }}</table>{{ end }}
</article>
{{ end }}
<script>
function fit(f){try{var d=f.contentDocument;if(d&&d.documentElement){f.style.height=Math.max(d.documentElement.scrollHeight,d.body?d.body.scrollHeight:0)+"px";}}catch(e){}}
document.querySelectorAll("iframe").forEach(function(f){f.addEventListener("load",function(){fit(f)});fit(f);});
document.querySelectorAll(".toggle").forEach(function(t){
  t.querySelectorAll("button").forEach(function(b){b.addEventListener("click",function(){
    var f=t.nextElementSibling.querySelector("iframe");f.style.width=b.dataset.width;
    t.querySelectorAll("button").forEach(function(o){o.setAttribute("aria-pressed",o===b?"true":"false")});
    f.style.height="400px";fit(f);});});});
{{ if .Live }}(function(){var v=null;function poll(){fetch("version").then(function(r){return r.text()}).then(function(t){if(v!==null&&t!==v){location.reload();return}v=t;setTimeout(poll,1000)}).catch(function(){setTimeout(poll,2000)})}poll();})();{{ end }}
</script>
</body></html>
`))

// renderIndex renders the page.
func renderIndex(name string, msgs []pageMessage, live bool) ([]byte, error) {
	var b bytes.Buffer
	err := indexTmpl.Execute(&b, struct {
		Campaign string
		Messages []pageMessage
		Live     bool
	}{name, msgs, live})
	return b.Bytes(), err
}

func (a *app) writePreview(dir string, c *campaign.Campaign, msgs []*providers.Message) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	page, err := previewPage(msgs, func(name string, data []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o644)
	})
	if err != nil {
		return err
	}
	b, err := renderIndex(c.Name, page, false)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), b, 0o644); err != nil {
		return err
	}
	a.infof("wrote %d message(s) and %s", len(msgs), filepath.Join(dir, "index.html"))
	return nil
}

// servePreview serves the preview page on addr, rendered afresh for each request of
// the page, until ctx ends. The page polls /version, a digest of the campaign's files'
// sizes and modification times, and reloads itself when it changes.
func (a *app) servePreview(ctx context.Context, addr, path string, render func() (*campaign.Campaign, []*providers.Message, error)) error {
	files := map[string][]byte{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if name != "" && name != "index.html" {
			data, ok := files[name]
			if !ok {
				http.NotFound(w, r)
				return
			}
			if strings.HasSuffix(name, ".eml") {
				w.Header().Set("Content-Type", "message/rfc822")
			}
			w.Write(data)
			return
		}
		c, msgs, err := render()
		var body []byte
		if err == nil {
			next := map[string][]byte{}
			var page []pageMessage
			if page, err = previewPage(msgs, func(n string, d []byte) error { next[n] = d; return nil }); err == nil {
				files = next
				body, err = renderIndex(c.Name, page, true)
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err != nil {
			w.WriteHeader(http.StatusOK) // the page still polls, and recovers when the error is fixed
			body, _ = renderError(err)
		}
		w.Write(body)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, campaignVersion(path))
	})
	srv := &http.Server{Handler: serialised(mux), ReadHeaderTimeout: 10 * time.Second}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return &usageError{err: fmt.Errorf("--addr %s: %w", addr, err)}
	}
	a.infof("preview of %s on http://%s/ (Ctrl-C to stop)", path, l.Addr())
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serialised handles one request at a time (the page and its files share state).
func serialised(h http.Handler) http.Handler {
	sem := make(chan struct{}, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sem <- struct{}{}
		defer func() { <-sem }()
		h.ServeHTTP(w, r)
	})
}

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>preview: error</title></head>
<body style="font-family:sans-serif;margin:2em"><h1>The campaign does not render</h1><pre style="white-space:pre-wrap">{{ . }}</pre>
<script>(function(){var v=null;function poll(){fetch("version").then(function(r){return r.text()}).then(function(t){if(v!==null&&t!==v){location.reload();return}v=t;setTimeout(poll,1000)}).catch(function(){setTimeout(poll,2000)})}poll();})();</script>
</body></html>`))

func renderError(err error) ([]byte, error) {
	var b bytes.Buffer
	e := errorTmpl.Execute(&b, err.Error())
	return b.Bytes(), e
}

// campaignVersion digests the sizes and modification times of the files in the
// campaign's folder (not outboxes, stores or hidden files), so that an edit to the
// campaign file, a template, a layout, the list or an attachment changes it.
func campaignVersion(path string) string {
	h := sha256.New()
	dir := filepath.Dir(path)
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if d.IsDir() && p != dir && (strings.HasPrefix(name, ".") || name == "outbox") {
			return filepath.SkipDir
		}
		if d.IsDir() || strings.HasPrefix(name, ".") || strings.Contains(name, ".db") || strings.HasSuffix(name, ".lock") {
			return nil
		}
		if info, err := d.Info(); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)[:8])
}
