package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret("hunter2-very-secret")
	type holder struct {
		name   string
		secret Secret // unexported: fmt cannot call its methods
		Public Secret
	}
	h := holder{name: "x", secret: s, Public: s}
	j, _ := json.Marshal(h)
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s),
		fmt.Sprintf("%v", h), fmt.Sprintf("%+v", h), fmt.Sprintf("%#v", h), fmt.Sprintf("%+v", &h),
		string(j),
	} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "hunter2-very-secret" || s.Empty() {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
	var zero Secret
	if !zero.Empty() || zero.Reveal() != "" {
		t.Fatalf("zero Secret is not empty")
	}
}

func TestKindOf(t *testing.T) {
	perm := &Error{Provider: "smtp", Kind: Permanent, Code: 550, Enhanced: "5.1.1", Message: "no such user"}
	for _, c := range []struct {
		err  error
		want Kind
	}{
		{perm, Permanent},
		{fmt.Errorf("wrapped: %w", perm), Permanent},
		{&Error{Kind: Fatal}, Fatal},
		{&Error{Kind: Unknown}, Unknown},
		{errors.New("plain"), Temporary},
		{context.Canceled, Temporary},
	} {
		if got := KindOf(c.err); got != c.want {
			t.Errorf("KindOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	if got := perm.Error(); got != "smtp: permanent 550 5.1.1: no such user" {
		t.Errorf("Error() = %q", got)
	}
}

func TestSecretFromEnv(t *testing.T) {
	spec := Spec{Getenv: func(k string) string { return map[string]string{"KEY": "abc"}[k] }}
	if s, err := SecretFromEnv(spec, "sendgrid", "api_key_env", "KEY"); err != nil || s.Reveal() != "abc" {
		t.Fatalf("SecretFromEnv = %v, %v", s, err)
	}
	_, err := SecretFromEnv(spec, "sendgrid", "api_key_env", "MISSING")
	if err == nil || !strings.Contains(err.Error(), "MISSING") || !strings.Contains(err.Error(), "api_key_env") {
		t.Fatalf("missing variable: %v", err)
	}
	if _, err := SecretFromEnv(spec, "sendgrid", "api_key_env", ""); err == nil {
		t.Fatalf("no variable name accepted")
	}
}

func TestRegistryLookup(t *testing.T) {
	r := Registry{"smtp": {Kind: "smtp"}, "file": {Kind: "file"}}
	if _, err := r.Lookup("smtp"); err != nil {
		t.Fatal(err)
	}
	_, err := r.Lookup("postal")
	if err == nil || !strings.Contains(err.Error(), "file, smtp") {
		t.Fatalf("Lookup of an unknown kind: %v", err)
	}
}
