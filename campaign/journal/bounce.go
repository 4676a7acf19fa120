package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Bounce is a delivery failure reported by mail after a relay had accepted the message
// (a DSN in the bounce mailbox).
type Bounce struct {
	// Code is the SMTP reply code of the remote server (550), 0 when the report has none.
	Code int
	// Enhanced is the DSN status code (5.1.1).
	Enhanced string
	// Reason is the remote server's diagnostic text.
	Reason string
}

// Bouncer is what `herald bounces` needs of a store; it is part of Store, which both
// engines implement.
type Bouncer interface {
	// RecordBounce marks the recipient email of campaign `failed` with b's codes when it
	// was `sent`, `deferred` or `unknown` (tBounce), and adds the address to the
	// suppression list with source "bounce:<campaign>", in one transaction. It reports
	// whether anything changed: the same bounce again changes nothing.
	RecordBounce(ctx context.Context, campaign, email string, b Bounce) (changed bool, err error)
	// RecordComplaint adds email to the suppression list with source
	// "complaint:<campaign>"; it reports whether the address was newly suppressed.
	RecordComplaint(ctx context.Context, campaign, email, reason string) (changed bool, err error)
	// Mailed reports whether campaign handed a message for email to a provider (the
	// recipient is in any state but pending, claimed, sending and expired).
	Mailed(ctx context.Context, campaign, email string) (bool, error)
	// ByProviderID returns the campaign and address of the recipient whose message the
	// provider knows as id (a Message-ID, with or without angle brackets, or a queue
	// id). It scans the recipients: for when nothing else identifies the message.
	ByProviderID(ctx context.Context, id string) (campaign, email string, ok bool, err error)
}

// tBounce: a bounce that arrives by mail, after the provider accepted the message.
// (Not owned by a run: it comes after the run.)
var tBounce = Transition{Name: "bounce", From: []State{Sent, Deferred, Unknown}, To: Failed}

var (
	_ Bouncer = (*sqliteStore)(nil)
	_ Bouncer = (*pgStore)(nil)
)

func bounceReason(b Bounce) string {
	if b.Reason != "" {
		return b.Reason
	}
	return "bounced " + b.Enhanced
}

// notMailed are the states of a recipient not (yet) handed to a provider.
const notMailed = "('pending', 'claimed', 'sending', 'expired')"

func trimID(id string) string { return strings.Trim(strings.TrimSpace(id), "<>") }

// --- SQLite

func (s *sqliteStore) RecordBounce(ctx context.Context, campaign, email string, b Bounce) (bool, error) {
	key := normalize(email)
	if key == "" {
		return false, nil
	}
	reason := bounceReason(b)
	now := s.now()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE recipients SET state = `+tBounce.to()+`, code = ?, enhanced = ?,
		reason = ?, next_attempt = NULL, updated_at = ? WHERE campaign = ? AND key = ? AND state IN `+tBounce.fromSQL(),
		b.Code, b.Enhanced, truncate(reason, maxReason), now.UnixMilli(), campaign, key)
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	updated, err := res.RowsAffected()
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	added, err := sqliteSuppress(ctx, tx, Suppression{Email: email, Reason: reason, Source: "bounce:" + campaign}, now)
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	if err := tx.Commit(); err != nil {
		return false, s.errorf("record bounce: commit", err)
	}
	return updated > 0 || added > 0, nil
}

func (s *sqliteStore) RecordComplaint(ctx context.Context, campaign, email, reason string) (bool, error) {
	n, err := sqliteSuppress(ctx, s.wdb, Suppression{Email: email, Reason: reason, Source: "complaint:" + campaign}, s.now())
	if err != nil {
		return false, s.errorf("record complaint", err)
	}
	return n > 0, nil
}

func (s *sqliteStore) Mailed(ctx context.Context, campaign, email string) (bool, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM recipients WHERE campaign = ? AND key = ? AND state NOT IN `+notMailed,
		campaign, normalize(email)).Scan(&n)
	if err != nil {
		return false, s.errorf("look up recipient", err)
	}
	return n > 0, nil
}

func (s *sqliteStore) ByProviderID(ctx context.Context, id string) (campaign, email string, ok bool, err error) {
	id = trimID(id)
	if id == "" {
		return "", "", false, nil
	}
	err = s.rdb.QueryRowContext(ctx, `SELECT campaign, email FROM recipients WHERE provider_id IN (?, ?) LIMIT 1`, id, "<"+id+">").Scan(&campaign, &email)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, s.errorf("look up message", err)
	}
	return campaign, email, true, nil
}

// --- PostgreSQL

func (s *pgStore) RecordBounce(ctx context.Context, campaign, email string, b Bounce) (bool, error) {
	key := normalize(email)
	if key == "" {
		return false, nil
	}
	reason := bounceReason(b)
	now := s.now()
	changed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE herald_recipients SET state = `+tBounce.to()+`, code = $1, enhanced = $2,
			reason = $3, next_attempt = NULL, updated_at = $4 WHERE campaign = $5 AND key = $6 AND state IN `+tBounce.fromSQL(),
			b.Code, b.Enhanced, truncate(reason, maxReason), now.UnixMilli(), campaign, key)
		if err != nil {
			return err
		}
		added, err := pgSuppress(ctx, tx, Suppression{Email: email, Reason: reason, Source: "bounce:" + campaign}, now)
		if err != nil {
			return err
		}
		changed = tag.RowsAffected() > 0 || added > 0
		return nil
	})
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	return changed, nil
}

func (s *pgStore) RecordComplaint(ctx context.Context, campaign, email, reason string) (bool, error) {
	n, err := pgSuppress(ctx, s.pool, Suppression{Email: email, Reason: reason, Source: "complaint:" + campaign}, s.now())
	if err != nil {
		return false, s.errorf("record complaint", err)
	}
	return n > 0, nil
}

func (s *pgStore) Mailed(ctx context.Context, campaign, email string) (bool, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM herald_recipients WHERE campaign = $1 AND key = $2 AND state NOT IN `+notMailed,
		campaign, normalize(email)).Scan(&n)
	if err != nil {
		return false, s.errorf("look up recipient", err)
	}
	return n > 0, nil
}

func (s *pgStore) ByProviderID(ctx context.Context, id string) (campaign, email string, ok bool, err error) {
	id = trimID(id)
	if id == "" {
		return "", "", false, nil
	}
	err = s.pool.QueryRow(ctx, `SELECT campaign, email FROM herald_recipients WHERE provider_id IN ($1, $2) LIMIT 1`, id, "<"+id+">").Scan(&campaign, &email)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, s.errorf(fmt.Sprintf("look up message %s", id), err)
	}
	return campaign, email, true, nil
}
