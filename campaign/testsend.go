package campaign

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/heraldmail/herald/providers"
)

// TestSendOptions choose what `herald send --test` sends.
type TestSendOptions struct {
	// To are the test addresses.
	To []string
	// Row is the data row rendered for every test address (1: the first after the header).
	Row int
	// NoPrefix leaves the subject without "[TEST] ".
	NoPrefix bool
	// Store is the campaign's store, opened read-only for its unsubscribe secret when it
	// exists (nothing is written to it).
	Store string
}

// TestResult is the outcome of one test message.
type TestResult struct {
	To string
	// MessageID is the provider's id for the message; Err why it was not accepted.
	MessageID string
	Err       error
}

// ParseTestAddresses splits a --test value (comma-separated) into bare addresses.
func ParseTestAddresses(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		a, err := mail.ParseAddress(part)
		if err != nil || a.Name != "" || !strings.Contains(a.Address, "@") {
			return nil, configErr("--test: %q is not an address", part)
		}
		out = append(out, a.Address)
	}
	if len(out) == 0 {
		return nil, configErr("--test: give one or more addresses, comma-separated")
	}
	return out, nil
}

// TestSend renders data row o.Row for each test address and sends it through the
// campaign's provider, one message each. The journal is not touched: no claim, no
// outcome, no suppression (a hard bounce of a test address is reported, not recorded),
// so the real send later goes to everyone. Each message carries the test address's own
// unsubscribe token (a click cannot unsubscribe the subscriber of the row) while the
// template sees the row's data, {{ .Email }} included.
func TestSend(ctx context.Context, c *Campaign, o TestSendOptions, env Env) ([]TestResult, error) {
	if len(o.To) == 0 {
		return nil, configErr("--test: no address")
	}
	if o.Row <= 0 {
		o.Row = 1
	}
	reg, err := checkProvider(c, env, true)
	if err != nil {
		return nil, err
	}
	src, rd, err := journalFreeRenderer(ctx, c, o.Store, env)
	if err != nil {
		return nil, err
	}
	rc, err := src.Row(o.Row)
	if err != nil {
		return nil, err
	}
	prefix := "[TEST] "
	if o.NoPrefix {
		prefix = ""
	}
	msgs := make([]*providers.Message, len(o.To))
	for i, to := range o.To {
		if msgs[i], err = rd.messageFor(ctx, rc, to, to, prefix); err != nil {
			return nil, &ConfigError{Err: err}
		}
	}
	prov, err := reg.Open(ctx, ProviderSpec(c, env))
	if err != nil {
		var pe *providers.Error
		if errors.As(err, &pe) {
			return nil, &StopError{Reason: StopFatal, Err: err}
		}
		return nil, &ConfigError{Err: err}
	}
	defer prov.Close()
	results := make([]TestResult, len(msgs))
	failed := 0
	for i, m := range msgs {
		results[i].To = m.To
		receipt, err := prov.Send(ctx, m)
		if err != nil {
			results[i].Err = err
			failed++
			if providers.KindOf(err) == providers.Fatal {
				return results, &StopError{Reason: StopFatal, Err: err}
			}
			continue
		}
		results[i].MessageID = receipt.MessageID
	}
	if failed > 0 {
		return results, &StopError{Reason: StopFatal, Err: fmt.Errorf("%d of %d test message(s) not accepted", failed, len(msgs))}
	}
	return results, nil
}
