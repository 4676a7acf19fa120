package lists

import (
	"net/mail"
	"strings"
	"testing"
)

func TestValidateAddress(t *testing.T) {
	local64 := strings.Repeat("a", 64)
	// 64 + 1 + 189 = 254 bytes: labels of 63 + '.' + 63 + '.' + 57 + ".com".
	domain189 := strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 57) + ".com"
	tests := []struct {
		in   string
		want string // "" for valid; else a substring of the reason
	}{
		// Valid.
		{"j@x.com", ""},
		{"Jane.Doe+news@mail.example.co.uk", ""},
		{"o'brien@x.com", ""},
		{"j@xn--bcher-kva.example", ""},
		{"j@bücher.example", ""},
		{"j@例え.テスト", ""},
		{"josé@x.com", ""},
		{"j@a-b.c-d.com", ""},
		{"j@x.c0m", ""},
		{"j@1.2.3.com", ""},
		{local64 + "@x.com", ""},
		{local64 + "@" + domain189, ""},

		// Invalid.
		{"", "empty address"},
		{"Jane <j@x.com>", "display name not allowed"},
		{`"Jane" <j@x.com>`, "display name not allowed"},
		{"<j@x.com>", "not a plain address"},
		{"j@x.com (Jane)", "display name not allowed"}, // net/mail takes the comment as a name
		{`"j"@x.com`, "not a plain address"},
		{"jx.com", "missing @"},
		{"Jane", "missing @"},
		{"@x.com", "missing local part"},
		{"j@", "no domain"},
		{"j@x", "domain has no dot"},
		{"j@localhost", "domain has no dot"},
		{"j@-x.com", "starts or ends with '-'"},
		{"j@x-.com", "starts or ends with '-'"},
		{"j@x..com", "empty label in domain"},
		{"j@.x.com", "empty label in domain"},
		{"j@x.com.", "domain ends with a dot"},
		{"j@x_y.com", "invalid character '_' in domain"},
		{"j@[192.168.0.1]", "domain"},
		{"j@1.2.3.4", "top-level domain is all digits"},
		{"j@x.123", "top-level domain is all digits"},
		{"j@x.com>", "not a plain address"},
		{"j k@x.com", "invalid address"},
		{"j@@x.com", "invalid"},
		{"j..k@x.com", "invalid address"},
		{"j@x.😀.com", "invalid character"},
		{"j@" + strings.Repeat("a", 64) + ".com", "domain label longer than 63"},
		{local64 + "a@x.com", "local part longer than 64"},
		{local64 + "@" + domain189 + "x", "longer than 254"},
		{"j@x\xff.com", "not valid UTF-8"},
	}
	for _, tt := range tests {
		got := ValidateAddress(tt.in)
		switch {
		case tt.want == "" && got != "":
			t.Errorf("ValidateAddress(%q) = %q, want valid", tt.in, got)
		case tt.want != "" && !strings.Contains(got, tt.want):
			t.Errorf("ValidateAddress(%q) = %q, want a reason containing %q", tt.in, got, tt.want)
		}
	}
	if n := len(local64 + "@" + domain189); n != 254 {
		t.Fatalf("test setup: address is %d bytes, want 254", n)
	}
}

// FuzzValidateAddress checks that the fast path never accepts what the
// net/mail path rejects, and that a valid address parses back unchanged.
func FuzzValidateAddress(f *testing.F) {
	for _, s := range []string{"j@x.com", "a.b+c@d-e.fg", "Jane <j@x.com>", "j..k@x.com", ".j@x.com", "j.@x.com", "j@x.com.", "{}|~@x.io", "j@bücher.de", `"j"@x.com`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := ValidateAddress(s)
		if plainAddress(s) {
			if slow := validateSlow(s); slow != "" {
				t.Fatalf("fast path accepts %q, net/mail path says %q", s, slow)
			}
		}
		if got == "" {
			a, err := mail.ParseAddress(s)
			if err != nil || a.Name != "" || a.Address != s {
				t.Fatalf("%q valid but ParseAddress = %v, %v", s, a, err)
			}
		}
	})
}
