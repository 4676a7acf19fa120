package templates

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

const unsubLinkHTML = `<p><a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p>`

func TestParseErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		name string
		src  Sources
		want string
	}{
		{"html", Sources{Subject: "s", HTML: "<p>\nline two\n{{ .x </p>", HTMLFile: "template.html"}, "template.html:3:"},
		{"text", Sources{Subject: "s", Text: "a\n{{ if .x }}never closed", TextFile: "template.txt"}, "template.txt:2:"},
		{"subject", Sources{Subject: "{{ .first_name }", Text: "t"}, "subject:1:"},
		{"to_name", Sources{Subject: "s", Text: "t", ToName: "{{ end }}"}, "to_name:1:"},
		{"unknown function", Sources{Subject: "s", Text: "\n\n\n{{ shout .x }}", TextFile: "t.txt"}, "t.txt:4:"},
		{"no body", Sources{Subject: "s"}, "no body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.src)
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !strings.HasPrefix(err.Error(), tt.want) && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
			if strings.HasPrefix(err.Error(), "template: ") {
				t.Errorf("error %q keeps the package prefix", err)
			}
		})
	}
}

func TestCheckMissingColumn(t *testing.T) {
	cols := []string{"email", "first_name", "First Name"}
	tests := []struct {
		name string
		src  Sources
		want string // "" for no error
	}{
		{"ok", Sources{Subject: "{{ .first_name }}", HTML: "{{ .Email }}{{ .Campaign }}" + unsubLinkHTML, HTMLFile: "template.html"}, ""},
		{"html typo", Sources{Subject: "s", HTML: "<p>Hi</p>\n\n<p>{{ .frist_name }}</p>" + unsubLinkHTML, HTMLFile: "template.html"},
			`template.html:3: no column "frist_name" in the list (columns: First Name, email, first_name)`},
		{"text typo", Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}\n{{ .last_name }}", TextFile: "template.txt"},
			`template.txt:2: no column "last_name"`},
		{"subject", Sources{Subject: "{{ .nope }}", Text: "{{ .UnsubscribeURL }}"}, `subject:1: no column "nope"`},
		{"to_name index", Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}", ToName: `{{ index . "Last Name" }}`}, `to_name:1: no column "Last Name"`},
		{"index ok", Sources{Subject: `{{ index . "First Name" }}`, Text: "{{ .UnsubscribeURL }}"}, ""},
		{"dollar", Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}{{ range .first_name }}{{ $.zip }}{{ end }}", TextFile: "t.txt"}, `t.txt:1: no column "zip"`},
		{"inside with, dot is not the map", Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}{{ with .first_name }}{{ . }}{{ end }}"}, ""},
		{"if condition", Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}\n{{ if .vip }}x{{ end }}", TextFile: "t.txt"}, `t.txt:2: no column "vip"`},
		{"defined template", Sources{Subject: "s", HTML: `{{ define "f" }}{{ .footer }}{{ end }}` + unsubLinkHTML + `{{ template "f" . }}`, HTMLFile: "h.html"}, `h.html:1: no column "footer"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Check(cols)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Check = %v, want %q", err, tt.want)
			}
			var te *Error
			if !errors.As(err, &te) || te.Column == "" {
				t.Fatalf("Check error %v is not an *Error with Column", err)
			}
		})
	}
}

func TestCheckUnsubscribeLink(t *testing.T) {
	tests := []struct {
		name string
		src  Sources
		want string // "" for no error
	}{
		{"html without link", Sources{Subject: "s", HTML: "<p>hi</p>", HTMLFile: "template.html", Text: "{{ .UnsubscribeURL }}", TextFile: "template.txt"},
			"template.html never shows {{ .UnsubscribeURL }}: bulk mail must carry a visible unsubscribe link"},
		{"text without link", Sources{Subject: "s", HTML: unsubLinkHTML, HTMLFile: "template.html", Text: "hi", TextFile: "template.txt"},
			"template.txt never shows {{ .UnsubscribeURL }}: bulk mail must carry a visible unsubscribe link"},
		{"text only without link", Sources{Subject: "s", Text: "hi {{ .Email }}", TextFile: "template.txt"}, "template.txt never shows"},
		{"html only, derived text keeps href", Sources{Subject: "s", HTML: "<p>hi</p>" + unsubLinkHTML, HTMLFile: "template.html"}, ""},
		{"html only, link text", Sources{Subject: "s", HTML: "<p>hi {{ .UnsubscribeURL }}</p>", HTMLFile: "template.html"}, ""},
		{"html only, link lost in derived text", Sources{Subject: "s", HTML: `<head><link rel="x" href="{{ .UnsubscribeURL }}"></head><p>hi</p>`, HTMLFile: "template.html"},
			"template.html: the text part derived from it loses"},
		{"both with link", Sources{Subject: "s", HTML: unsubLinkHTML, Text: "stop: {{ .UnsubscribeURL }}"}, ""},
		{"link only in a branch the check does not take", Sources{Subject: "s", Text: `{{ if eq .email "x" }}{{ .UnsubscribeURL }}{{ end }}`, TextFile: "t.txt"}, "t.txt never shows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Check([]string{"email"})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Check = %v, want %q", err, tt.want)
			}
			if !errors.Is(err, ErrNoUnsubscribeLink) {
				t.Errorf("error %v does not wrap ErrNoUnsubscribeLink", err)
			}
		})
	}
}

func recipient(extra map[string]string) map[string]string {
	d := map[string]string{
		"email":           "ann@example.com",
		"first_name":      "Ann",
		KeyEmail:          "ann@example.com",
		KeyUnsubscribeURL: "https://news.acme.example/unsubscribe/tok123?c=nov&x=1",
		KeyCampaign:       "november-news",
	}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

func TestRenderEscapesHTML(t *testing.T) {
	s, err := Parse(Sources{
		Subject: "Hi {{ .first_name }}",
		HTML:    `<p>Hello {{ .first_name }}</p><a title="{{ .first_name }}" href="https://acme.example/?n={{ .first_name }}">x</a>` + unsubLinkHTML,
		Text:    "Hello {{ .first_name }} {{ .UnsubscribeURL }}",
	})
	if err != nil {
		t.Fatal(err)
	}
	evil := `<script>alert("x")</script>&'`
	r, err := s.Render(recipient(map[string]string{"first_name": evil}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.HTML, "<script>") || strings.Contains(r.HTML, `"x"`) {
		t.Errorf("list data not escaped in HTML: %s", r.HTML)
	}
	if !strings.Contains(r.HTML, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&#39;") {
		t.Errorf("HTML text escaping unexpected: %s", r.HTML)
	}
	if !strings.Contains(r.HTML, "?n=%3cscript%3e") {
		t.Errorf("URL query not escaped: %s", r.HTML)
	}
	if !strings.Contains(r.Text, evil) {
		t.Errorf("text part must not be HTML-escaped: %q", r.Text)
	}
	if r.Subject != "Hi "+evil {
		t.Errorf("subject = %q", r.Subject)
	}
}

func TestRenderHeaderInjection(t *testing.T) {
	s, err := Parse(Sources{Subject: "Hi {{ .first_name }}!", Text: "{{ .UnsubscribeURL }}"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, subject, name string }{
		{"Ann", "Hi Ann!", ""},
		{"Ann\r\nBcc: evil@example.com", "Hi Ann Bcc: evil@example.com!", ""},
		{"\t\r\n\nAnn\x00\x01", "Hi Ann !", ""},
		{"A\xffnn", "Hi A\uFFFDnn!", ""},
	}
	for _, tt := range tests {
		r, err := s.Render(recipient(map[string]string{"first_name": tt.in, "name": " " + tt.in + "\n"}))
		if err != nil {
			t.Fatal(err)
		}
		if r.Subject != tt.subject {
			t.Errorf("subject(%q) = %q, want %q", tt.in, r.Subject, tt.subject)
		}
		if strings.ContainsAny(r.ToName, "\r\n\t\x00") || r.ToName != strings.TrimSpace(r.ToName) {
			t.Errorf("to name(%q) = %q", tt.in, r.ToName)
		}
	}
}

func TestRenderToName(t *testing.T) {
	tests := []struct {
		name   string
		toName string
		data   map[string]string
		want   string
	}{
		{"name column", "", map[string]string{"name": "  Ann Lee "}, "Ann Lee"},
		{"Name column", "", map[string]string{"Name": "Ann"}, "Ann"},
		{"no name column", "", nil, ""},
		{"template", `{{ index . "First Name" }} {{ index . "Last Name" }}`, map[string]string{"First Name": "Ann", "Last Name": ""}, "Ann"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}", ToName: tt.toName})
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.Render(recipient(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if r.ToName != tt.want {
				t.Errorf("ToName = %q, want %q", r.ToName, tt.want)
			}
		})
	}
}

func TestRenderMissingKeyIsError(t *testing.T) {
	s, err := Parse(Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}\n{{ .zip }}", TextFile: "template.txt"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Render(recipient(nil))
	if err == nil || !strings.HasPrefix(err.Error(), "template.txt:2:") || !strings.Contains(err.Error(), "zip") {
		t.Fatalf("Render = %v, want a located error about zip", err)
	}
}

func TestDeriveTextKeepsLinks(t *testing.T) {
	html := `<html><head><style>p{}</style></head><body><h1>News</h1><p>Hi &amp; welcome</p>
<ul><li>one</li><li>two</li></ul>
<p><a href="https://news.acme.example/u/tok?c=a&amp;b=1">Unsubscribe</a></p></body></html>`
	got := DeriveText(html)
	for _, want := range []string{"News", "Hi & welcome", "one", "two", "Unsubscribe <https://news.acme.example/u/tok?c=a&b=1>"} {
		if !strings.Contains(got, want) {
			t.Errorf("derived text lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "p{}") || strings.Contains(got, "\r") {
		t.Errorf("derived text has style or CR:\n%q", got)
	}
}

func TestRenderConcurrent(t *testing.T) {
	s, err := Parse(Sources{Subject: "Hi {{ .first_name }}", HTML: "<p>{{ .first_name }}</p>" + unsubLinkHTML})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				name := strings.Repeat("x", i*10+j%7)
				r, err := s.Render(recipient(map[string]string{"first_name": name}))
				if err != nil {
					t.Error(err)
					return
				}
				if r.Subject != strings.TrimSpace("Hi "+name) || !strings.Contains(r.HTML, "<p>"+name+"</p>") {
					t.Errorf("mixed up render: %q", r.Subject)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestRenderFuncLikeRenderContext: RenderFunc gives fn what RenderContext returns for
// every kind of campaign (html+text, text only, a layout, Markdown, a To name template,
// CSS inlined per message), its parts views that no later part overwrote; fn's error
// is returned; a render error never reaches fn.
func TestRenderFuncLikeRenderContext(t *testing.T) {
	on := true
	for name, src := range map[string]Sources{
		"html and text": {Subject: "Hi {{ .first_name }}", HTML: `<p>Hello {{ .first_name }}</p><a href="{{ .UnsubscribeURL }}">u</a>`, Text: "Hello {{ .first_name }} {{ .UnsubscribeURL }}"},
		"text only":     {Subject: "s", Text: "Hello {{ .first_name }} {{ .UnsubscribeURL }}", ToName: "{{ .first_name }} Q"},
		"layout":        {Subject: "s", HTML: `<p>{{ .first_name }}</p><a href="{{ .UnsubscribeURL }}">u</a>`, Layout: `<html><body><h1>{{ .Subject }}</h1>{{ .Body }}<i>{{ .first_name }}</i></body></html>`},
		"markdown":      {Subject: "s", Markdown: "# Hi {{ .first_name }}\n\n* one\n* [unsubscribe]({{ .UnsubscribeURL }})\n"},
		"css per message": {Subject: "s", HTML: `<style>p{color:red}</style><p class="{{ .first_name }}">{{ .first_name }}</p><a href="{{ .UnsubscribeURL }}">u</a>`,
			InlineCSS: &on},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Parse(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Check([]string{"email", "first_name"}); err != nil {
				t.Fatal(err)
			}
			for _, v := range []string{"Ann", "", "<b>&amp;</b>", "Zoë \"Q\""} {
				data := map[string]string{"email": "a@example.org", "first_name": v, KeyEmail: "a@example.org",
					KeyUnsubscribeURL: "https://example.com/u/tok", KeyCampaign: "c"}
				want, werr := s.Render(data)
				checkRenderFunc(t, s, data, want, werr)
			}
		})
	}
	s, err := Parse(Sources{Subject: "s", Text: "{{ .UnsubscribeURL }} {{ index .missing 3 }}"})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	data := map[string]string{KeyUnsubscribeURL: "https://example.com/u"}
	if err := s.RenderFunc(context.Background(), data, func(Rendered) error { t.Fatal("fn called after a render error"); return nil }); err == nil {
		t.Fatal("no render error")
	}
	s, _ = Parse(Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}"})
	if err := s.RenderFunc(context.Background(), data, func(Rendered) error { return boom }); err != boom {
		t.Fatalf("RenderFunc returned %v, want fn's error", err)
	}
}
