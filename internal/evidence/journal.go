package evidence

import (
	"context"
	"database/sql"
	"strings"
	"time"
)

// Journal operations.
const (
	OpApply    = "apply"
	OpRollback = "rollback"
)

// Entry is one journaled outcome of apply or rollback for one workspace.
type Entry struct {
	ID          int64
	Fingerprint string // of the plan
	Operation   string // OpApply or OpRollback
	Operator    string
	Tenant      string
	WorkspaceID string
	Before      string // template before the statement, as far as known
	After       string // template after it (the current value when skipped)
	Outcome     string
	Reason      string
	// Tx is the tenant transaction a committing entry's write is in, so
	// that a later run can ask the server whether it committed; nil when
	// none. Entries from before schema version 5 name it only in Reason.
	Tx       *TenantTx
	At       time.Time
	PrevHash string
	Hash     string
}

// TenantTx names a transaction on a tenant's PostgreSQL server. The id means
// nothing without the server's system identifier and timeline: a promoted
// replica or a restore keeps the one and starts a new other, and may issue
// the same ids again.
type TenantTx struct {
	ID       int64  // epoch-extended transaction id (txid_current)
	SystemID string // system identifier (pg_control_system), in decimal
	Timeline int64
}

type entryCols struct {
	fingerprint, operation, operator, tenant, workspaceID, before, after, outcome, reason, at string
	txID, timeline                                                                            sql.NullInt64
	systemID                                                                                  sql.NullString
}

func (e entryCols) hash(id int64, prev string) string {
	cols := addedCols([]any{id, e.fingerprint, e.operation, e.operator, e.tenant, e.workspaceID,
		e.before, e.after, e.outcome, e.reason, e.at},
		addedCol{"tx_id", e.txID.Int64, e.txID.Valid},
		addedCol{"system_id", e.systemID.String, e.systemID.Valid},
		addedCol{"timeline", e.timeline.Int64, e.timeline.Valid})
	return chainHash("journal", prev, cols...)
}

func (e *Entry) table() string { return "journal" }

func (e *Entry) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	ec := entryCols{fingerprint: e.Fingerprint, operation: e.Operation, operator: e.Operator, tenant: e.Tenant,
		workspaceID: e.WorkspaceID, before: e.Before, after: e.After, outcome: e.Outcome, reason: e.Reason, at: formatTime(e.At)}
	if e.Tx != nil {
		ec.txID = sql.NullInt64{Int64: e.Tx.ID, Valid: true}
		ec.systemID = sql.NullString{String: e.Tx.SystemID, Valid: true}
		ec.timeline = sql.NullInt64{Int64: e.Tx.Timeline, Valid: true}
	}
	h := ec.hash(id, prev)
	err := tx.insert(ctx, "journal", `INSERT INTO journal (id, fingerprint, operation, operator, tenant, workspace_id, before, after, outcome, reason, at,
  tx_id, system_id, timeline, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		id, ec.fingerprint, ec.operation, ec.operator, ec.tenant, ec.workspaceID, ec.before, ec.after, ec.outcome, ec.reason, ec.at,
		ec.txID, ec.systemID, ec.timeline, prev, h)
	if err != nil {
		return "", err
	}
	e.ID, e.PrevHash, e.Hash = id, prev, h
	return h, nil
}

const entrySelect = `SELECT id, fingerprint, operation, operator, tenant, workspace_id, before, after, outcome, reason, at,
  tx_id, system_id, timeline, prev_hash, hash FROM journal`

// entrySelect reads NULL for the columns a store older than version 5 lacks:
// a read-only open reads an old store as it is.
func (s *Store) entrySelect() string {
	if s.version < 5 {
		return strings.Replace(entrySelect, "tx_id, system_id, timeline", "NULL, NULL, NULL", 1)
	}
	return entrySelect
}

func scanEntry(sc scanner) (*Entry, entryCols, error) {
	var e Entry
	var ec entryCols
	err := sc.Scan(&e.ID, &ec.fingerprint, &ec.operation, &ec.operator, &ec.tenant, &ec.workspaceID, &ec.before, &ec.after,
		&ec.outcome, &ec.reason, &ec.at, &ec.txID, &ec.systemID, &ec.timeline, &e.PrevHash, &e.Hash)
	if err != nil {
		return nil, ec, err
	}
	e.Fingerprint, e.Operation, e.Operator, e.Tenant, e.WorkspaceID = ec.fingerprint, ec.operation, ec.operator, ec.tenant, ec.workspaceID
	e.Before, e.After, e.Outcome, e.Reason, e.At = ec.before, ec.after, ec.outcome, ec.reason, parseTime(ec.at)
	if ec.txID.Valid || ec.systemID.Valid || ec.timeline.Valid {
		e.Tx = &TenantTx{ID: ec.txID.Int64, SystemID: ec.systemID.String, Timeline: ec.timeline.Int64}
	}
	return &e, ec, nil
}

// Journal returns journal entries in order: those of one plan when
// fingerprint is set, else all.
func (s *Store) Journal(ctx context.Context, fingerprint string) ([]Entry, error) {
	if !s.hasTable("journal") {
		return nil, nil
	}
	q, args := s.entrySelect()+" ORDER BY id", []any{}
	if fingerprint != "" {
		q, args = s.entrySelect()+" WHERE fingerprint = ? ORDER BY id", []any{fingerprint}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e, _, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	return out, rows.Err()
}

func (s *Store) verifyJournal(ctx context.Context, r *VerifyReport) error {
	if !s.hasTable("journal") {
		return nil
	}
	return s.verifyChain(ctx, r, "journal", s.entrySelect()+" ORDER BY id", func(sc scanner) (chainRow, error) {
		e, ec, err := scanEntry(sc)
		if err != nil {
			return chainRow{}, err
		}
		r.Journal++
		return chainRow{e.ID, e.PrevHash, e.Hash, ec.hash(e.ID, e.PrevHash),
			named("journal entry %d (tenant %s, workspace %s)", e.ID, e.Tenant, e.WorkspaceID)}, nil
	})
}

// CaptureHashes returns every capture's content sha256 by id ("" for
// captures without content), for checking the captures a plan cites.
func (s *Store) CaptureHashes(ctx context.Context) (map[int64]Key, map[int64]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, tenant, workspace_id, coalesce(sha256, '') FROM captures")
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	keys, shas := map[int64]Key{}, map[int64]string{}
	for rows.Next() {
		var id int64
		var k Key
		var sha string
		if err := rows.Scan(&id, &k.Tenant, &k.WorkspaceID, &sha); err != nil {
			return nil, nil, err
		}
		keys[id], shas[id] = k, sha
	}
	return keys, shas, rows.Err()
}
