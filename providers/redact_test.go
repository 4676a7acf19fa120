package providers

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	key := NewSecret("k3y")
	b64 := base64.StdEncoding.EncodeToString
	cases := []struct {
		name string
		r    Redactor
		in   string
		want string
	}{
		{"empty", NewRedactor("", key), "", ""},
		{"nothing", NewRedactor("", key), "nothing here", "nothing here"},
		{"key", NewRedactor("", key), `{"message":"bad key k3y"}`, `{"message":"bad key [redacted]"}`},
		{"twice", NewRedactor("", key), "k3yk3y k3", "[redacted][redacted] k3"},
		{"no secret", NewRedactor("", Secret{}), "k3y", "k3y"},
		{"zero", Redactor{}, "k3y", "k3y"},
		{"plain blob", NewRedactor("user", NewSecret("pa55word")), "535 failed for " + b64([]byte("\x00user\x00pa55word")) + " (|user|pa55word)", "535 failed for [redacted] (|user|[redacted])"},
		{"plain blob no authzid", NewRedactor("user", NewSecret("pa55word")), b64([]byte("user\x00pa55word")), "[redacted]"},
		{"plain blob authzid", NewRedactor("user", NewSecret("pa55word")), b64([]byte("user\x00user\x00pa55word")), "[redacted]"},
		{"login answers", NewRedactor("user", NewSecret("pa55word")), b64([]byte("user")) + " " + b64([]byte("pa55word")), "[redacted] [redacted]"},
		{"unpadded", NewRedactor("user", NewSecret("pa55word")), base64.RawStdEncoding.EncodeToString([]byte("\x00user\x00pa55word")), "[redacted]"},
		{"the user alone stays", NewRedactor("user", NewSecret("pa55word")), "user", "user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.r.String(c.in); got != c.want {
				t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
			}
			if got := string(c.r.Bytes([]byte(c.in))); got != c.want {
				t.Errorf("Bytes(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestRedactorError(t *testing.T) {
	r := NewRedactor("u", NewSecret("hunter2"))
	if r.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	clean := &Error{Provider: "p", Kind: Fatal, Message: "no secret"}
	if got := r.Error(clean); got != error(clean) {
		t.Errorf("an error without a secret was replaced: %v", got)
	}
	if w := fmt.Errorf("dial: %w", clean); r.Error(w) != w {
		t.Errorf("a wrapped error without a secret was replaced")
	}
	inner := fmt.Errorf("server said hunter2")
	pe := &Error{Provider: "p", Kind: Fatal, Code: 535, Enhanced: "hunter2", Message: "auth: hunter2", Err: inner}
	for _, err := range []error{pe, fmt.Errorf("dial: %w", pe), errors.New("plain hunter2")} {
		got := r.Error(err)
		for _, s := range []string{got.Error(), fmt.Sprintf("%+v", got), fmt.Sprintf("%#v", AsError(got))} {
			if strings.Contains(s, "hunter2") {
				t.Errorf("redacted error still holds the password: %s", s)
			}
		}
		if e := AsError(err); e != nil {
			g := AsError(got)
			if g == nil || g.Kind != Fatal || g.Code != 535 {
				t.Errorf("Error(%v) lost its kind or code: %#v", err, g)
			}
			if u := errors.Unwrap(g); u == nil || strings.Contains(u.Error(), "hunter2") || !strings.Contains(u.Error(), "[redacted]") {
				t.Errorf("Err = %v, want the cause's text redacted", u)
			}
		}
	}
	if pe.Message != "auth: hunter2" {
		t.Error("Error modified the original")
	}
}

func TestCheckEnvName(t *testing.T) {
	for _, ok := range []string{"", "SMTP_PASSWORD", "_X", "a1", "sendgrid_key"} {
		if err := CheckEnvName("smtp", "password_env", ok); err != nil {
			t.Errorf("CheckEnvName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"hunter2!", "1PASS", "SG.abc-def", "pass word", "p@ss", "ключ"} {
		err := CheckEnvName("smtp", "password_env", bad)
		if err == nil {
			t.Errorf("CheckEnvName(%q) accepted it", bad)
			continue
		}
		if strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "provider.password_env does not look like an environment variable name") {
			t.Errorf("CheckEnvName(%q) = %q; want the message without the value", bad, err)
		}
	}
	s := Spec{Getenv: func(string) string { return "x" }}
	if _, err := SecretFromEnv(s, "smtp", "password_env", "hunter2!"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("SecretFromEnv with a pasted secret = %v", err)
	}
}

func BenchmarkRedactorError(b *testing.B) {
	r := NewRedactor("herald-user", NewSecret("Tr0ub4dor&3-horse"))
	err := &Error{Provider: "smtp", Kind: Fatal, Code: 535, Enhanced: "5.7.8", Message: "AUTH: Authentication failed for AGhlcmFsZC11c2VyAFRyMHViNGRvciYzLWhvcnNl (|herald-user|Tr0ub4dor&3-horse)"}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Error(err)
	}
}
