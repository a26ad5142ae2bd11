package evidence

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Approval records that a person approved one plan fingerprint, and what
// they were shown of it.
type Approval struct {
	ID          int64
	Fingerprint string
	By          string
	PlanAuthor  string
	// Writes is the number of writes in the approved plan.
	Writes int
	// RollupSHA256 is the digest of the plan's tenant×template write
	// rollup, as the approver saw it.
	RollupSHA256 string
	// Signature is an armored OpenSSH SSHSIG over the fingerprint; "" when
	// the approval is unsigned.
	Signature string
	// CheckedCatalogSHA256 and CheckedCPSHA256 are the digests of the
	// catalog and the CP records the approver derived the plan again with;
	// "" in an approval recorded before they were (schema version 10).
	CheckedCatalogSHA256 string
	CheckedCPSHA256      string
	// Legacy: approved before the store recorded Writes, RollupSHA256 and
	// Signature (schema version 5); they are zero. Ignored when appending.
	Legacy   bool
	At       time.Time
	PrevHash string
	Hash     string
}

type approvalCols struct {
	fingerprint, by, author, at string
	writes                      sql.NullInt64
	rollup, signature           sql.NullString
	checkedCatalog, checkedCP   sql.NullString
}

func (a approvalCols) hash(id int64, prev string) string {
	cols := addedCols([]any{id, a.fingerprint, a.by, a.author, a.at},
		addedCol{"writes", a.writes.Int64, a.writes.Valid},
		addedCol{"rollup_sha256", a.rollup.String, a.rollup.Valid},
		addedCol{"signature", a.signature.String, a.signature.Valid},
		addedCol{"checked_catalog_sha256", a.checkedCatalog.String, a.checkedCatalog.Valid},
		addedCol{"checked_cp_sha256", a.checkedCP.String, a.checkedCP.Valid})
	return chainHash("approvals", prev, cols...)
}

func (a *Approval) table() string { return "approvals" }

func (a *Approval) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	// A new approval always records all three, so that "unsigned" ('') is
	// told apart from "approved before signatures existed" (NULL).
	ac := approvalCols{a.Fingerprint, a.By, a.PlanAuthor, formatTime(a.At),
		sql.NullInt64{Int64: int64(a.Writes), Valid: true},
		sql.NullString{String: a.RollupSHA256, Valid: true},
		sql.NullString{String: a.Signature, Valid: true},
		sql.NullString{String: a.CheckedCatalogSHA256, Valid: true},
		sql.NullString{String: a.CheckedCPSHA256, Valid: true}}
	h := ac.hash(id, prev)
	err := tx.insert(ctx, "approvals", `INSERT INTO approvals (id, fingerprint, approved_by, plan_author, at, writes, rollup_sha256, signature,
  checked_catalog_sha256, checked_cp_sha256, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		id, ac.fingerprint, ac.by, ac.author, ac.at, ac.writes, ac.rollup, ac.signature, ac.checkedCatalog, ac.checkedCP, prev, h)
	if err != nil {
		return "", err
	}
	a.ID, a.PrevHash, a.Hash, a.Legacy = id, prev, h, false
	return h, nil
}

const approvalSelect = "SELECT id, fingerprint, approved_by, plan_author, at, writes, rollup_sha256, signature, checked_catalog_sha256, checked_cp_sha256, prev_hash, hash FROM approvals"

// approvalSelect reads NULL for the columns a store older than version 5
// or 10 lacks.
func (s *Store) approvalSelect() string {
	q := approvalSelect
	if s.version < 10 {
		q = strings.Replace(q, "checked_catalog_sha256, checked_cp_sha256", "NULL, NULL", 1)
	}
	if s.version < 5 {
		q = strings.Replace(q, "writes, rollup_sha256, signature", "NULL, NULL, NULL", 1)
	}
	return q
}

func scanApproval(sc scanner) (*Approval, approvalCols, error) {
	var a Approval
	var ac approvalCols
	if err := sc.Scan(&a.ID, &ac.fingerprint, &ac.by, &ac.author, &ac.at, &ac.writes, &ac.rollup, &ac.signature, &ac.checkedCatalog, &ac.checkedCP, &a.PrevHash, &a.Hash); err != nil {
		return nil, ac, err
	}
	a.Fingerprint, a.By, a.PlanAuthor, a.At = ac.fingerprint, ac.by, ac.author, parseTime(ac.at)
	a.Writes, a.RollupSHA256, a.Signature = int(ac.writes.Int64), ac.rollup.String, ac.signature.String
	a.CheckedCatalogSHA256, a.CheckedCPSHA256 = ac.checkedCatalog.String, ac.checkedCP.String
	a.Legacy = !ac.writes.Valid
	return &a, ac, nil
}

// Approvals returns the approvals of a fingerprint, oldest first.
func (s *Store) Approvals(ctx context.Context, fingerprint string) ([]Approval, error) {
	if !s.hasTable("approvals") {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, s.approvalSelect()+" WHERE fingerprint = ? ORDER BY id", fingerprint)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Approval
	for rows.Next() {
		a, _, err := scanApproval(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, rows.Err()
}

// HasCaptureHash reports whether a capture with this chain hash exists: a
// plan's evidence chain head must be in the store it is approved or applied
// against.
func (s *Store) HasCaptureHash(ctx context.Context, hash string) (bool, error) {
	return s.hasHash(ctx, "captures", hash)
}

// hasHash reports whether a record of a chained table has this hash.
func (s *Store) hasHash(ctx context.Context, table, hash string) (bool, error) {
	if !slices.Contains(chainedTables, table) {
		return false, fmt.Errorf("%s is not a chained table", table)
	}
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE hash = ?", hash).Scan(&n)
	return n > 0, err
}

func (s *Store) verifyApprovals(ctx context.Context, r *VerifyReport) error {
	if !s.hasTable("approvals") {
		return nil
	}
	return s.verifyChain(ctx, r, "approvals", s.approvalSelect()+" ORDER BY id", func(sc scanner) (chainRow, error) {
		a, ac, err := scanApproval(sc)
		if err != nil {
			return chainRow{}, err
		}
		r.Approvals++
		return chainRow{a.ID, a.PrevHash, a.Hash, ac.hash(a.ID, a.PrevHash), named("approval %d (by %s)", a.ID, a.By)}, nil
	})
}
