package evidence

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// PlanRecord is one plan kept in the store, without its bytes.
type PlanRecord struct {
	ID          int64
	Fingerprint string
	Author      string
	CreatedAt   time.Time
	Size        int64 // of the plan file's bytes
	// Signature is the author's armored SSHSIG over the fingerprint
	// (namespace backfill-plan), "" when the plan was not signed.
	Signature string
}

// plan is a plan as appended to the plans chain.
type plan struct {
	fingerprint, author string
	createdAt           time.Time
	bytes               []byte
	signature           string
}

type planCols struct{ fingerprint, author, createdAt, sha, signature string }

// hash covers the bytes through their sha256, so that verify and the chain
// need not hold whole plans at once.
func (p planCols) hash(id int64, prev string) string {
	return chainHash("plans", prev, id, p.fingerprint, p.author, p.createdAt, p.sha, p.signature)
}

func (p *plan) table() string { return "plans" }

func (p *plan) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	pc := planCols{p.fingerprint, p.author, formatTime(p.createdAt), SHA256Hex(p.bytes), p.signature}
	h := pc.hash(id, prev)
	b := p.bytes
	if b == nil {
		b = []byte{} // nil would bind as NULL
	}
	err := tx.insert(ctx, "plans", `INSERT INTO plans (id, fingerprint, author, created_at, bytes, signature, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)`,
		id, pc.fingerprint, pc.author, pc.createdAt, b, pc.signature, prev, h)
	if err != nil {
		return "", err
	}
	return h, nil
}

// PutPlan keeps a plan's file bytes in the store under its fingerprint,
// with its author's signature ("" for none). Putting the same plan again
// (same fingerprint, same bytes) does nothing and keeps the first
// signature, except that signing a plan kept unsigned is an error (the row
// cannot change); other bytes under a fingerprint already kept are an
// error.
func (s *Store) PutPlan(ctx context.Context, fingerprint, author string, createdAt time.Time, b []byte, signature string) error {
	if fingerprint == "" {
		return fmt.Errorf("put plan: no fingerprint")
	}
	if s.readOnly {
		return s.errReadOnly()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Inside the write transaction, so two processes putting the same plan
	// do not both append it.
	var have []byte
	var signed string
	err = tx.QueryRowContext(ctx, "SELECT bytes, signature FROM plans WHERE fingerprint = ?", fingerprint).Scan(&have, &signed)
	switch {
	case err == nil && bytes.Equal(have, b) && signed == "" && signature != "":
		// The kept row is append-only: a signature cannot be added to it.
		return fmt.Errorf("plan %s is already kept in %s without its author's signature (a plan of the same inputs made in the same second); make the plan again to sign it", fingerprint, s.path)
	case err == nil && bytes.Equal(have, b):
		return nil
	case err == nil:
		return fmt.Errorf("plan %s is already kept in %s with other bytes (%d bytes, sha256 %s; now %d bytes, sha256 %s)",
			fingerprint, s.path, len(have), SHA256Hex(have), len(b), SHA256Hex(b))
	case err != sql.ErrNoRows:
		return err
	}
	if err := appendTx(ctx, tx, &plan{fingerprint, author, createdAt, b, signature}); err != nil {
		return err
	}
	return tx.Commit()
}

// Plans lists the plans kept in the store, oldest first, without their bytes.
func (s *Store) Plans(ctx context.Context) ([]PlanRecord, error) {
	if !s.hasTable("plans") {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, "SELECT id, fingerprint, author, created_at, length(bytes), signature FROM plans ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PlanRecord
	for rows.Next() {
		var p PlanRecord
		var at string
		if err := rows.Scan(&p.ID, &p.Fingerprint, &p.Author, &at, &p.Size, &p.Signature); err != nil {
			return nil, err
		}
		p.CreatedAt = parseTime(at)
		out = append(out, p)
	}
	return out, rows.Err()
}

// minPrefix is the fewest hex digits PlanBytes accepts for a fingerprint.
const minPrefix = 8

// PlanBytes returns the one kept plan whose fingerprint is, or starts with,
// fingerprintOrPrefix: the full fingerprint, or at least 8 of its hex
// digits, with or without "sha256:". None, or more than one, is an error
// that lists the candidates. The bytes are checked against the plan's chain
// hash, so an edited plan is never returned.
func (s *Store) PlanBytes(ctx context.Context, fingerprintOrPrefix string) (string, []byte, error) {
	want := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(fingerprintOrPrefix), "sha256:"))
	if len(want) < minPrefix || strings.Trim(want, "0123456789abcdef") != "" {
		return "", nil, fmt.Errorf("plan %q: give its fingerprint, or at least %d of its hex digits", fingerprintOrPrefix, minPrefix)
	}
	plans, err := s.Plans(ctx)
	if err != nil {
		return "", nil, err
	}
	var match []PlanRecord
	for _, p := range plans {
		if strings.HasPrefix(strings.ToLower(strings.TrimPrefix(p.Fingerprint, "sha256:")), want) {
			match = append(match, p)
		}
	}
	switch len(match) {
	case 0:
		return "", nil, fmt.Errorf("no plan kept in %s has a fingerprint starting %q (%d plans kept)", s.path, fingerprintOrPrefix, len(plans))
	case 1:
	default:
		var b strings.Builder
		for _, p := range match {
			fmt.Fprintf(&b, "\n  %s by %s at %s", p.Fingerprint, p.Author, p.CreatedAt.Format(time.RFC3339))
		}
		return "", nil, fmt.Errorf("%q matches %d plans kept in %s; give more of the fingerprint:%s", fingerprintOrPrefix, len(match), s.path, b.String())
	}
	var pc planCols
	var b []byte
	var prev, hash string
	err = s.db.QueryRowContext(ctx, "SELECT fingerprint, author, created_at, bytes, signature, prev_hash, hash FROM plans WHERE id = ?", match[0].ID).
		Scan(&pc.fingerprint, &pc.author, &pc.createdAt, &b, &pc.signature, &prev, &hash)
	if err != nil {
		return "", nil, err
	}
	pc.sha = SHA256Hex(b)
	if pc.hash(match[0].ID, prev) != hash {
		return "", nil, fmt.Errorf("plan %s in %s was altered: its bytes do not match its hash; run `backfill verify`", pc.fingerprint, s.path)
	}
	if b == nil {
		b = []byte{}
	}
	return pc.fingerprint, b, nil
}

func (s *Store) verifyPlans(ctx context.Context, r *VerifyReport) error {
	if !s.hasTable("plans") {
		return nil
	}
	return s.verifyChain(ctx, r, "SELECT id, fingerprint, author, created_at, bytes, signature, prev_hash, hash FROM plans ORDER BY id",
		func(sc scanner) (chainRow, error) {
			var id int64
			var pc planCols
			var b []byte
			var prev, hash string
			if err := sc.Scan(&id, &pc.fingerprint, &pc.author, &pc.createdAt, &b, &pc.signature, &prev, &hash); err != nil {
				return chainRow{}, err
			}
			pc.sha = SHA256Hex(b)
			r.Plans++
			return chainRow{id, prev, hash, pc.hash(id, prev), named("plan %d (%s)", id, pc.fingerprint)}, nil
		})
}
