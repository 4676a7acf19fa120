package lists

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestReadAddresses(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // "key@line"
	}{
		{
			name:  "plain with comments and blanks",
			input: "# bounced in October\n\nA@X.com\n  b@x.com  \r\n# c@x.com\nd@x.com",
			want:  []string{"a@x.com@3", "b@x.com@4", "d@x.com@6"},
		},
		{
			name:  "plain with BOM",
			input: "\xEF\xBB\xBFa@x.com\n",
			want:  []string{"a@x.com@1"},
		},
		{
			name:  "plain empty",
			input: "",
		},
		{
			name:  "plain only comments",
			input: "# nothing yet\n\n",
		},
		{
			name:  "csv email column",
			input: "email,reason\nA@x.com,bounce\n,\n b@x.com ,complaint\n",
			want:  []string{"a@x.com@2", "b@x.com@4"},
		},
		{
			name:  "csv Mailchimp export, semicolons",
			input: "\xEF\xBB\xBFFirst Name;Email Address;MEMBER_RATING\r\nAnn;ANN@x.com;2\r\n",
			want:  []string{"ann@x.com@2"},
		},
		{
			name:  "csv header only",
			input: "Email\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := ReadAddresses(strings.NewReader(tt.input), "bounced.csv", func(key string, line int) error {
				got = append(got, fmt.Sprintf("%s@%d", key, line))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadAddressesErrors(t *testing.T) {
	tests := []struct {
		name   string
		input  string
		line   int
		col    int
		reason string
	}{
		{"csv without address column", "name,reason\nAnn,x\n", 1, 0, `no "email" or "email address" column (columns: name, reason)`},
		{"csv bad quote", "email\n\"a@x.com\n", 2, 1, "unterminated quoted field"},
		{"plain invalid UTF-8", "a@x.com\nb\xE9@x.com\n", 2, 2, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ReadAddresses(strings.NewReader(tt.input), "bounced.csv", func(string, int) error { return nil })
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not *Error", err)
			}
			if e.File != "bounced.csv" || e.Line != tt.line || e.Column != tt.col || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("got %v, want bounced.csv:%d:%d: …%s…", e, tt.line, tt.col, tt.reason)
			}
		})
	}
}

func TestReadAddressesCallbackErrorStops(t *testing.T) {
	stop := errors.New("stop")
	for _, input := range []string{"a@x.com\nb@x.com\n", "email\na@x.com\nb@x.com\n"} {
		calls := 0
		err := ReadAddresses(strings.NewReader(input), "s", func(string, int) error {
			calls++
			return stop
		})
		if err != stop || calls != 1 {
			t.Errorf("%q: err = %v after %d calls, want stop after 1", input, err, calls)
		}
	}
}
