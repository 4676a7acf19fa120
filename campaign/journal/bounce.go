package journal

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
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

// RecordBounce marks the recipient email of campaign `failed` with b's codes, when it
// was `sent`, `deferred` or `unknown`, and adds the address to the suppression list with
// source "bounce:<campaign>". It reports whether anything changed: a second call with the
// same bounce changes nothing and returns false.
func (s *Store) RecordBounce(ctx context.Context, campaign, email string, b Bounce) (changed bool, err error) {
	key := normalize(email)
	if key == "" {
		return false, nil
	}
	reason := b.Reason
	if reason == "" {
		reason = "bounced " + b.Enhanced
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE recipients SET state = 'failed', code = ?, enhanced = ?, reason = ?,
		next_attempt = NULL, updated_at = ? WHERE campaign = ? AND key = ? AND state IN ('sent', 'deferred', 'unknown')`,
		b.Code, b.Enhanced, truncate(reason, maxReason), s.now().UnixMilli(), campaign, key)
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	updated, err := res.RowsAffected()
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	added, err := suppressTx(ctx, tx, Suppression{Email: email, Reason: reason, Source: "bounce:" + campaign}, s.now())
	if err != nil {
		return false, s.errorf("record bounce", err)
	}
	if err := tx.Commit(); err != nil {
		return false, s.errorf("record bounce: commit", err)
	}
	return updated > 0 || added > 0, nil
}

// RecordComplaint adds email to the suppression list with source
// "complaint:<campaign>" (a feedback-loop report: the recipient marked the message as
// spam). It reports whether the address was newly suppressed.
func (s *Store) RecordComplaint(ctx context.Context, campaign, email, reason string) (changed bool, err error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return false, s.errorf("record complaint", err)
	}
	defer tx.Rollback()
	added, err := suppressTx(ctx, tx, Suppression{Email: email, Reason: reason, Source: "complaint:" + campaign}, s.now())
	if err != nil {
		return false, s.errorf("record complaint", err)
	}
	if err := tx.Commit(); err != nil {
		return false, s.errorf("record complaint: commit", err)
	}
	return added > 0, nil
}

func suppressTx(ctx context.Context, tx *sql.Tx, sp Suppression, now time.Time) (int, error) {
	key := normalize(sp.Email)
	if key == "" {
		return 0, nil
	}
	res, err := tx.ExecContext(ctx, insertSuppression, key, strings.TrimSpace(sp.Email), truncate(sp.Reason, maxReason), sp.Source, now.UnixMilli())
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Mailed reports whether campaign has a recipient email that was handed to a provider
// (any state but `pending` and `sending`).
func (s *Store) Mailed(ctx context.Context, campaign, email string) (bool, error) {
	var state string
	err := s.rdb.QueryRowContext(ctx, `SELECT state FROM recipients WHERE campaign = ? AND key = ?`, campaign, normalize(email)).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.errorf("look up recipient", err)
	}
	return state != string(Pending) && state != string(Sending), nil
}

// ByProviderID returns the campaign and address of the recipient whose message the
// provider knows as id (the Message-ID, with or without angle brackets, or a queue id).
// It scans the recipients: use it when nothing else identifies the message.
func (s *Store) ByProviderID(ctx context.Context, id string) (campaign, email string, ok bool, err error) {
	id = strings.Trim(strings.TrimSpace(id), "<>")
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
