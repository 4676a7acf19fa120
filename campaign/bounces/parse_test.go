package bounces

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseFixtures: each real bounce shape is recognised with its recipient, kind and
// status; mail that is not a report is Other.
func TestParseFixtures(t *testing.T) {
	cases := []struct {
		file, format, addr string
		kind               Kind
		status             string
		code               int
		messageID          string
	}{
		{"new/1796161977.0001.postfix", "dsn", "jane@bounce.test", Hard, "5.1.1", 550, "<test1@herald.test>"},
		{"new/1796161978.0002.exim", "dsn", "bob@exim.example", Hard, "5.1.1", 550, "<m2@herald.test>"},
		{"new/1796161979.0003.gmail", "dsn", "carol@gmail-like.example", Hard, "5.1.1", 550, "<m3@herald.test>"},
		{"new/1796161980.0004.arf", "arf", "dave@fbl.example", Complaint, "", 0, "<m4@herald.test>"},
		{"new/1796161981.0005.qmail", "text", "erin@qmail.example", Hard, "5.1.1", 550, "<m5@herald.test>"},
		{"new/1796161982.0006.delayed", "dsn", "frank@slow.example", Soft, "4.4.1", 0, "<m6@herald.test>"},
		{"new/1796161983.0007.autoreply", "", "", Other, "", 0, ""},
		{"cur/1796161985.0009.exim-text", "text", "gina@old.example", Hard, "", 550, "<m9@herald.test>"},
		{"cur/1796161986.0010.policy", "dsn", "harry@strict.example", Rejected, "5.7.1", 554, "<m2@herald.test>"},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "maildir", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			r := Parse(raw)
			if r.Format != tc.format || r.Kind() != tc.kind {
				t.Fatalf("format %q kind %v, want %q %v (%+v)", r.Format, r.Kind(), tc.format, tc.kind, r)
			}
			if tc.kind == Other {
				return
			}
			if len(r.Recipients) != 1 {
				t.Fatalf("%d recipients, want 1: %+v", len(r.Recipients), r.Recipients)
			}
			rc := r.Recipients[0]
			if rc.Address != tc.addr || rc.Status != tc.status || rc.Code != tc.code {
				t.Errorf("recipient %+v, want %s %s %d", rc, tc.addr, tc.status, tc.code)
			}
			if r.MessageID != tc.messageID {
				t.Errorf("original Message-ID %q, want %q", r.MessageID, tc.messageID)
			}
		})
	}
}

// TestParseNeverFails: truncated or garbled input is Other or a report, never a panic.
func TestParseNeverFails(t *testing.T) {
	raw, _ := os.ReadFile(filepath.Join("testdata", "maildir", "new", "1796161977.0001.postfix"))
	for i := 0; i < len(raw); i += 97 {
		_ = Parse(raw[:i])
	}
	_ = Parse(nil)
	_ = Parse([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n"))
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"new/1796161977.0001.postfix", "new/1796161980.0004.arf", "new/1796161981.0005.qmail"} {
		raw, _ := os.ReadFile(filepath.Join("testdata", "maildir", name))
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := Parse(raw)
		for _, rc := range r.Recipients {
			if rc.Kind == Other {
				t.Fatalf("a recipient of kind Other: %+v", rc)
			}
		}
	})
}

// TestMbox: the mbox reader splits at From lines and undoes >From quoting.
func TestMbox(t *testing.T) {
	var got [][]byte
	if err := Mbox(filepath.Join("testdata", "bounces.mbox")).Each(context.Background(), func(raw []byte) (bool, error) {
		got = append(got, raw)
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d messages, want 3", len(got))
	}
	kinds := []Kind{Hard, Complaint, Hard}
	for i, raw := range got {
		if k := Parse(raw).Kind(); k != kinds[i] {
			t.Errorf("message %d: %v, want %v", i, k, kinds[i])
		}
	}
	if want := "\nFrom our shop: news."; !contains(got[2], want) {
		t.Errorf("the >From line was not unquoted:\n%s", got[2])
	}
	if err := Mbox(filepath.Join("testdata", "maildir", "new", "1796161983.0007.autoreply")).Each(context.Background(), func([]byte) (bool, error) { return false, nil }); err == nil {
		t.Error("a file that is not an mbox was read without error")
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
