package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestJSONLinesCarryTheDocumentedFields(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, Options{Format: "json", Level: slog.LevelInfo})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("run started", "campaign", "news", "to_send", 3)
	log.Warn("recipient failed", "campaign", "news", "to", Address("Jane.Doe@Example.org"), "line", 7,
		"error", TextWithAddress{Text: "550 5.1.1 <JANE.DOE@example.org>: no such user jane.doe@example.org", Address: "Jane.Doe@Example.org"})
	log.Debug("not written at info level", "to", Address("jane.doe@example.org"))
	sc := bufio.NewScanner(&buf)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %q has no %q", sc.Text(), k)
			}
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	if lines[0]["campaign"] != "news" || lines[0]["to_send"] != 3.0 || lines[0]["level"] != "INFO" {
		t.Errorf("first line %v", lines[0])
	}
	if got, want := lines[1]["to"], Hash("jane.doe@example.org"); got != want || !strings.HasPrefix(want, "sha256:") || len(want) != 19 {
		t.Errorf("address logged as %v, want %v", got, want)
	}
	if want := "550 5.1.1 <" + Hash("jane.doe@example.org") + ">: no such user " + Hash("jane.doe@example.org"); lines[1]["error"] != want {
		t.Errorf("error logged as %v, want %v", lines[1]["error"], want)
	}
	if strings.Contains(strings.ToLower(buf.String()), "jane.doe") {
		t.Errorf("an address appears in full at info level:\n%s", buf.String())
	}
}

func TestTextWithAddresses(t *testing.T) {
	var buf bytes.Buffer
	log, _ := New(&buf, Options{Format: "json", Level: slog.LevelInfo})
	log.Warn("skipped row", "reason", TextWithAddresses(`duplicate of line 3 (Jane@Example.org); invalid address "x@"`))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want := "duplicate of line 3 (" + Hash("jane@example.org") + `); invalid address "` + Hash("x@") + `"`
	if m["reason"] != want {
		t.Errorf("reason %q, want %q", m["reason"], want)
	}
}

func TestAddressesInFull(t *testing.T) {
	for _, o := range []Options{
		{Format: "text", Level: slog.LevelDebug},
		{Format: "json", Level: slog.LevelInfo, Addresses: "full"},
	} {
		var buf bytes.Buffer
		log, err := New(&buf, o)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("sent", "to", Address("jane@example.org"))
		if !strings.Contains(buf.String(), "jane@example.org") {
			t.Errorf("%+v: address not in full: %s", o, buf.String())
		}
	}
	var buf bytes.Buffer
	log, _ := New(&buf, Options{Format: "text", Level: slog.LevelDebug, Addresses: "hash"})
	log.Debug("sent", "to", Address("jane@example.org"))
	if strings.Contains(buf.String(), "jane@") || !strings.Contains(buf.String(), "to=sha256:") {
		t.Errorf("hash asked for at debug level: %s", buf.String())
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, Options{Format: "xml"}); err == nil || !strings.Contains(err.Error(), "text or json") {
		t.Errorf("format xml: %v", err)
	}
	if _, err := New(&bytes.Buffer{}, Options{Format: "json", Addresses: "some"}); err == nil {
		t.Errorf("addresses some: no error")
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Errorf("level loud: no error")
	}
	if l, err := ParseLevel("debug"); err != nil || l != slog.LevelDebug {
		t.Errorf("level debug: %v %v", l, err)
	}
}
