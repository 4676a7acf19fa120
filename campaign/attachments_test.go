package campaign

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/providers/sendgrid"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// mimeFile is a file found in a received message.
type mimeFile struct {
	name, cid, disposition, contentType string
	data                                []byte
	parents                             []string // the multipart types around it, outermost first
}

// mimeFiles parses a message and returns its base64 parts, decoded, and its text bodies
// by media type. It fails on any structural fault (a part that does not end, a boundary
// shared between levels).
func mimeFiles(t *testing.T, raw []byte) (files []mimeFile, bodies map[string]string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	bodies = map[string]string{}
	seen := map[string]bool{}
	var walk func(h map[string][]string, r io.Reader, parents []string)
	walk = func(h map[string][]string, r io.Reader, parents []string) {
		get := func(k string) string {
			if v := h[k]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		mt, params, err := mime.ParseMediaType(get("Content-Type"))
		if err != nil {
			t.Fatalf("Content-Type %q: %v", get("Content-Type"), err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			b := params["boundary"]
			if seen[b] {
				t.Fatalf("boundary %q used at two levels", b)
			}
			seen[b] = true
			mr := multipart.NewReader(r, b)
			n := 0
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", mt, err)
				}
				walk(p.Header, p, append(append([]string(nil), parents...), mt))
				n++
			}
			if n == 0 {
				t.Fatalf("%s without parts", mt)
			}
			return
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		switch get("Content-Transfer-Encoding") {
		case "base64":
			for _, l := range strings.Split(strings.TrimRight(string(body), "\r\n"), "\r\n") {
				if len(l) > 76 {
					t.Fatalf("base64 line of %d characters", len(l))
				}
			}
			data, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			disp, dp, _ := mime.ParseMediaType(get("Content-Disposition"))
			files = append(files, mimeFile{name: dp["filename"], disposition: disp, contentType: mt,
				cid: strings.Trim(get("Content-Id"), "<>"), data: data, parents: parents})
		case "quoted-printable":
			dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			bodies[mt] = string(dec)
		default:
			bodies[mt] = string(body)
		}
	}
	walk(map[string][]string(msg.Header), msg.Body, nil)
	return files, bodies
}

// attachmentFixture is a campaign with a brochure for everyone (non-ASCII name), an
// inline logo and an invoice per recipient: line 2 has its file, line 3's is missing,
// line 4's points outside the folder.
func attachmentFixture(t *testing.T, provider string) (*fixture, map[string][]byte) {
	f := newFixture(t, 0, provider, `html: template.html
attachments: ["Broschüre 2026.pdf"]
attachment_column: invoice
inline: {logo: logo.png}
`)
	files := map[string][]byte{}
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	files["Broschüre 2026.pdf"] = append([]byte("%PDF-1.4\n"), random(5000)...)
	files["logo.png"] = append([]byte("\x89PNG\r\n\x1a\n"), random(300)...)
	files["invoices/r0001.pdf"] = append([]byte("%PDF-1.4\n"), random(1234)...)
	os.MkdirAll(filepath.Join(f.dir, "invoices"), 0o755)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(f.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(filepath.Dir(f.dir), "outside.pdf"), []byte("secret"), 0o644)
	f.write("subscribers.csv", "email,first_name,invoice\nr0001@example.org,Ann,invoices/r0001.pdf\nr0002@example.org,Bob,invoices/r0002.pdf\nr0003@example.org,Eve,../outside.pdf\nr0004@example.org,Dan,\n")
	f.write("template.html", `<p>Hello {{ .first_name }} <img src="cid:logo" alt="Acme"></p><p><a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p>`)
	return f, files
}

// checkAttachments checks the files of one received message against what is on disk.
func checkAttachments(t *testing.T, raw []byte, files map[string][]byte, invoice string) {
	t.Helper()
	got, bodies := mimeFiles(t, raw)
	if !strings.Contains(bodies["text/plain"], "Hello") || !strings.Contains(bodies["text/html"], `src="cid:logo"`) {
		t.Errorf("bodies: %q", bodies)
	}
	var names []string
	for _, g := range got {
		names = append(names, g.name)
		var want []byte
		switch g.name {
		case "Broschüre 2026.pdf":
			want = files["Broschüre 2026.pdf"]
			if g.disposition != "attachment" || g.contentType != "application/pdf" || strings.Join(g.parents, ">") != "multipart/mixed" {
				t.Errorf("brochure: %s %s in %v", g.disposition, g.contentType, g.parents)
			}
		case "logo.png":
			want = files["logo.png"]
			if g.cid != "logo" || g.disposition != "inline" || g.contentType != "image/png" ||
				strings.Join(g.parents, ">") != "multipart/mixed>multipart/alternative>multipart/related" {
				t.Errorf("logo: cid %q %s %s in %v", g.cid, g.disposition, g.contentType, g.parents)
			}
		default:
			want = files[invoice]
			if g.name != filepath.Base(invoice) {
				t.Errorf("unexpected file %q", g.name)
			}
		}
		if !bytes.Equal(g.data, want) {
			t.Errorf("%s: %d bytes received differ from the %d on disk", g.name, len(g.data), len(want))
		}
	}
	sort.Strings(names)
	wantNames := []string{"Broschüre 2026.pdf", "logo.png"}
	if invoice != "" {
		wantNames = append(wantNames, filepath.Base(invoice))
		sort.Strings(wantNames)
	}
	if strings.Join(names, "|") != strings.Join(wantNames, "|") {
		t.Errorf("files %q, want %q", names, wantNames)
	}
	if !bytes.Contains(raw, []byte(`filename*=utf-8''Brosch%C3%BCre%202026.pdf`)) {
		t.Errorf("non-ASCII file name not written as an RFC 2231 parameter")
	}
}

func TestAttachmentsThroughProviders(t *testing.T) {
	var mu sync.Mutex
	received := map[string][][]byte{}
	srv := smtptest.Start(t, smtptest.Options{Data: func(m smtptest.Message) *gosmtp.SMTPError {
		mu.Lock()
		defer mu.Unlock()
		for _, to := range m.To {
			received[to] = append(received[to], m.Raw)
		}
		return nil
	}})
	for _, kind := range []string{"file", "smtp"} {
		t.Run(kind, func(t *testing.T) {
			block := "  kind: file\n  dir: outbox\n"
			if kind == "smtp" {
				block = smtpBlock(srv)
			}
			f, files := attachmentFixture(t, block)
			delivered := func() map[string][][]byte {
				if kind == "smtp" {
					mu.Lock()
					defer mu.Unlock()
					out := map[string][][]byte{}
					for k, v := range received {
						out[k] = v
					}
					return out
				}
				out := map[string][][]byte{}
				ents, _ := os.ReadDir(filepath.Join(f.dir, "outbox"))
				for _, e := range ents {
					raw, _ := os.ReadFile(filepath.Join(f.dir, "outbox", e.Name()))
					msg, err := mail.ReadMessage(bytes.NewReader(raw))
					if err != nil {
						t.Fatal(err)
					}
					to, _ := msg.Header.AddressList("To")
					out[to[0].Address] = append(out[to[0].Address], raw)
				}
				return out
			}

			// validate lists the missing and the refused files with their lines, exit 0.
			var warnings []Warning
			if _, err := Validate(t.Context(), f.load(), f.store(), func(w Warning) { warnings = append(warnings, w) }, testEnv(nil)); err != nil {
				t.Fatalf("validate: %v", err)
			}

			for _, w := range warnings {

				if w.Line == 3 && !strings.Contains(w.Reason, "invoices/r0002.pdf") || w.Line == 4 && !strings.Contains(w.Reason, "outside") {
					t.Errorf("warning for line %d: %s", w.Line, w.Reason)
				}
			}
			if len(warnings) != 2 || warnings[0].Line != 3 || warnings[1].Line != 4 {
				t.Errorf("validate warnings = %+v", warnings)
			}

			// send: the others go, those two stay pending and are named; exit 1.
			sum, err := f.send(-1, SendOptions{})
			var re *RenderErrors
			if !errors.As(err, &re) || re.N != 2 || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "invoices/r0002.pdf") ||
				!strings.Contains(err.Error(), "line 4") {
				t.Fatalf("send error = %v", err)
			}
			if sum.Sent != 2 || sum.Pending != 2 {
				t.Errorf("summary %s", sum.JSON())
			}
			got := delivered()
			if len(got["r0001@example.org"]) != 1 || len(got["r0004@example.org"]) != 1 || len(got["r0002@example.org"]) != 0 || len(got["r0003@example.org"]) != 0 {
				t.Fatalf("delivered to %d addresses", len(got))
			}
			checkAttachments(t, got["r0001@example.org"][0], files, "invoices/r0001.pdf")
			checkAttachments(t, got["r0004@example.org"][0], files, "")

			// Once the file exists the next run sends it; the refused one stays.
			files["invoices/r0002.pdf"] = []byte("%PDF-1.4\ninvoice two\n")
			os.WriteFile(filepath.Join(f.dir, "invoices/r0002.pdf"), files["invoices/r0002.pdf"], 0o644)
			sum, err = f.send(-1, SendOptions{})
			if !errors.As(err, &re) || re.N != 1 || sum.Sent != 1 {
				t.Fatalf("second run: %v %s", err, sum.JSON())
			}
			got = delivered()
			if len(got["r0002@example.org"]) != 1 || len(got["r0001@example.org"]) != 1 {
				t.Fatalf("second run delivered %d to r0002, %d to r0001", len(got["r0002@example.org"]), len(got["r0001@example.org"]))
			}
			checkAttachments(t, got["r0002@example.org"][0], files, "invoices/r0002.pdf")
		})
	}
}

// SendGrid builds the message itself: the files go in its attachments array.
func TestAttachmentsForSendGrid(t *testing.T) {
	f, files := attachmentFixture(t, "  kind: file\n  dir: outbox\n")
	c := f.load()
	src := &Source{Campaign: c}
	cols, err := src.Columns()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := NewRenderer(t.Context(), c, cols, make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := src.Row(1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rd.Message(t.Context(), rc)
	if err != nil {
		t.Fatal(err)
	}
	body, err := sendgrid.Body(m)
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		Attachments []struct{ Content, Type, Filename, Disposition, Content_ID string }
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range req.Attachments {
		data, _ := base64.StdEncoding.DecodeString(a.Content)
		got[a.Filename] = a.Disposition + " " + a.Type + " " + a.Content_ID
		key := a.Filename
		if key == "r0001.pdf" {
			key = "invoices/r0001.pdf"
		}
		if !bytes.Equal(data, files[key]) {
			t.Errorf("%s: content differs", a.Filename)
		}
	}
	if got["Broschüre 2026.pdf"] != "attachment application/pdf " || got["logo.png"] != "inline image/png logo" || got["r0001.pdf"] != "attachment application/pdf " {
		t.Errorf("SendGrid attachments: %q", got)
	}
}

func TestAttachmentSizeWarningAndMissingCampaignFile(t *testing.T) {
	f := newFixture(t, 2, "  kind: file\n  dir: outbox\n", "attachments: [big.bin]\n")
	if err := os.WriteFile(filepath.Join(f.dir, "big.bin"), make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var warnings []Warning
	if _, err := Validate(t.Context(), f.load(), f.store(), func(w Warning) { warnings = append(warnings, w) }, testEnv(nil)); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || warnings[0].Line != 0 || !strings.Contains(warnings[0].Reason, "over 10 MB") {
		t.Errorf("warnings %+v", warnings)
	}
	// A campaign-wide file that is missing stops everything before anything is sent.
	os.Remove(filepath.Join(f.dir, "big.bin"))
	_, err := f.send(-1, SendOptions{})
	if !isConfigErr(err) || !strings.Contains(err.Error(), "big.bin") {
		t.Errorf("send without the campaign's attachment: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "outbox")); err == nil {
		if ents, _ := os.ReadDir(filepath.Join(f.dir, "outbox")); len(ents) > 0 {
			t.Errorf("%d message(s) sent", len(ents))
		}
	}
}

// A recipient left pending for a missing file is not claimed again by the same run: with
// more rows than one claim batch, the run reports it once, the counts add up, and the
// next run (the file there) sends it once.
func TestMissingFileHeldForTheRestOfTheRun(t *testing.T) {
	f := newFixture(t, 0, "  kind: file\n  dir: outbox\n", "attachment_column: invoice\n")
	var list strings.Builder
	list.WriteString("email,first_name,invoice\n")
	os.MkdirAll(filepath.Join(f.dir, "invoices"), 0o755)
	const n = 3*claimBatch + 5
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("invoices/%04d.pdf", i)
		if i != 2 {
			os.WriteFile(filepath.Join(f.dir, name), []byte("%PDF-1.4\n"), 0o644)
		}
		fmt.Fprintf(&list, "r%04d@example.org,N%d,%s\n", i, i, name)
	}
	f.write("subscribers.csv", list.String())
	sum, err := f.send(-1, SendOptions{Workers: 2})
	var re *RenderErrors
	if !errors.As(err, &re) || re.N != 1 {
		t.Fatalf("send: %v, want one render error", err)
	}
	if sum.Sent != n-1 || sum.Pending != 1 || sum.rest() != sum.Pending {
		t.Fatalf("summary %s: want %d sent and 1 pending, adding up", sum.JSON(), n-1)
	}
	os.WriteFile(filepath.Join(f.dir, "invoices/0002.pdf"), []byte("%PDF-1.4\n"), 0o644)
	sum, err = f.send(-1, SendOptions{})
	if err != nil || sum.Sent != 1 {
		t.Fatalf("second run: %s %v, want 1 sent", sum.JSON(), err)
	}
}
