package evidence

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
)

// migrations are applied in order; PRAGMA user_version records how many have
// run. Never edit a released migration: append a new one.
var migrations = []string{
	// 1: captures, their content, and the tenant listings they came from.
	`
CREATE TABLE content (
  sha256 TEXT PRIMARY KEY,
  size   INTEGER NOT NULL,
  bytes  BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE listings (
  id         INTEGER PRIMARY KEY,
  tenant     TEXT NOT NULL,
  at         TEXT NOT NULL,
  outcome    TEXT NOT NULL CHECK (outcome IN ('listed', 'unreachable')),
  reason     TEXT NOT NULL,
  rows       TEXT NOT NULL,
  prev_hash  TEXT NOT NULL,
  hash       TEXT NOT NULL
);
CREATE INDEX listings_tenant ON listings (tenant, id);

CREATE TABLE captures (
  id           INTEGER PRIMARY KEY,
  tenant       TEXT NOT NULL,
  workspace_id TEXT NOT NULL,
  db_row       TEXT NOT NULL,
  method       TEXT NOT NULL,
  target       TEXT NOT NULL,
  started_at   TEXT NOT NULL,
  ended_at     TEXT NOT NULL,
  attempt      INTEGER NOT NULL,
  outcome      TEXT NOT NULL CHECK (outcome IN ('captured', 'gone', 'failed')),
  reason       TEXT NOT NULL,
  sha256       TEXT REFERENCES content (sha256),
  size         INTEGER NOT NULL,
  provenance   TEXT NOT NULL,
  prev_hash    TEXT NOT NULL,
  hash         TEXT NOT NULL
);
CREATE INDEX captures_workspace ON captures (tenant, workspace_id, id);
` + appendOnly("content", "listings", "captures"),

	// 2: approvals of plan fingerprints.
	`
CREATE TABLE approvals (
  id          INTEGER PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  approved_by TEXT NOT NULL,
  plan_author TEXT NOT NULL,
  at          TEXT NOT NULL,
  prev_hash   TEXT NOT NULL,
  hash        TEXT NOT NULL
);
CREATE INDEX approvals_fingerprint ON approvals (fingerprint);
` + appendOnly("approvals"),

	// 3: the apply and rollback journal.
	`
CREATE TABLE journal (
  id           INTEGER PRIMARY KEY,
  fingerprint  TEXT NOT NULL,
  operation    TEXT NOT NULL CHECK (operation IN ('apply', 'rollback')),
  operator     TEXT NOT NULL,
  tenant       TEXT NOT NULL,
  workspace_id TEXT NOT NULL,
  before       TEXT NOT NULL,
  after        TEXT NOT NULL,
  outcome      TEXT NOT NULL,
  reason       TEXT NOT NULL,
  at           TEXT NOT NULL,
  prev_hash    TEXT NOT NULL,
  hash         TEXT NOT NULL
);
CREATE INDEX journal_plan ON journal (fingerprint, tenant, workspace_id, id);
` + appendOnly("journal"),

	// 4: the stores a merged store was made from.
	`
CREATE TABLE merged_from (
  id         INTEGER PRIMARY KEY,
  path       TEXT NOT NULL,
  chain_head TEXT NOT NULL,
  captures   INTEGER NOT NULL,
  listings   INTEGER NOT NULL,
  at         TEXT NOT NULL
);
` + appendOnly("merged_from"),

	// 5: typed tenant transactions in the journal; what an approval saw of
	// its plan; every plan written.
	//
	// The columns added to journal and approvals enter a row's chain hash
	// only when they are not NULL, each as its name then its value, after
	// the columns the row already had (see addedCols). Rows written before
	// this migration hold NULL there and hash exactly as they always did,
	// so old stores still verify, while new rows' values are covered.
	`
ALTER TABLE journal ADD COLUMN tx_id INTEGER;
ALTER TABLE journal ADD COLUMN system_id TEXT;
ALTER TABLE journal ADD COLUMN timeline INTEGER;
ALTER TABLE approvals ADD COLUMN writes INTEGER;
ALTER TABLE approvals ADD COLUMN rollup_sha256 TEXT;
ALTER TABLE approvals ADD COLUMN signature TEXT;

CREATE TABLE plans (
  id          INTEGER PRIMARY KEY,
  fingerprint TEXT NOT NULL UNIQUE,
  author      TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  bytes       BLOB NOT NULL,
  signature   TEXT NOT NULL,
  prev_hash   TEXT NOT NULL,
  hash        TEXT NOT NULL
);
` + appendOnly("plans"),

	// 6: captures may be not-live (an answer from somewhere other than the
	// workspace, kept for the record) or not-running (the workspace's
	// container is stopped), and say which source answered.
	//
	// SQLite cannot change a CHECK constraint in place, so the table is
	// rebuilt: the old one is renamed aside, a new one made, every row
	// copied with its id, prev_hash and hash unchanged, and the old one
	// dropped with its index and triggers (a DROP fires no DELETE
	// trigger), then the index and the append-only triggers are made
	// again. Migrations run in one transaction each, so a crash leaves
	// version 5 or version 6, never half. source enters a row's chain hash
	// only when it is not NULL (see addedCols): old rows hash as before.
	`
ALTER TABLE captures RENAME TO captures_v5;
CREATE TABLE captures (
  id           INTEGER PRIMARY KEY,
  tenant       TEXT NOT NULL,
  workspace_id TEXT NOT NULL,
  db_row       TEXT NOT NULL,
  method       TEXT NOT NULL,
  target       TEXT NOT NULL,
  started_at   TEXT NOT NULL,
  ended_at     TEXT NOT NULL,
  attempt      INTEGER NOT NULL,
  outcome      TEXT NOT NULL CHECK (outcome IN ('captured', 'not-live', 'not-running', 'gone', 'failed')),
  reason       TEXT NOT NULL,
  sha256       TEXT REFERENCES content (sha256),
  size         INTEGER NOT NULL,
  provenance   TEXT NOT NULL,
  source       TEXT,
  prev_hash    TEXT NOT NULL,
  hash         TEXT NOT NULL
);
INSERT INTO captures (id, tenant, workspace_id, db_row, method, target, started_at, ended_at, attempt, outcome, reason,
  sha256, size, provenance, source, prev_hash, hash)
SELECT id, tenant, workspace_id, db_row, method, target, started_at, ended_at, attempt, outcome, reason,
  sha256, size, provenance, NULL, prev_hash, hash FROM captures_v5 ORDER BY id;
DROP TABLE captures_v5;
CREATE INDEX captures_workspace ON captures (tenant, workspace_id, id);
` + appendOnly("captures"),

	// 7: the standing audit's record. Each audit is a chained row: when it
	// ran, how it ended, its totals (columns, so status reads them without
	// decoding anything) and its per-tenant counts (detail, JSON). The ids
	// of the template = '' workspaces it saw are kept once per distinct set
	// in audit_sets, content-addressed like content: an hourly audit of an
	// unchanged tenant cites the set the previous one stored and adds no
	// bytes. A set is covered by the chain through the sha256 its audit's
	// detail cites, and verify re-hashes every set and reports one no audit
	// cites, as it does for content.
	`
CREATE TABLE audit_sets (
  sha256 TEXT PRIMARY KEY,
  count  INTEGER NOT NULL,
  ids    BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE audits (
  id               INTEGER PRIMARY KEY,
  at               TEXT NOT NULL,
  ended_at         TEXT NOT NULL,
  reason           TEXT NOT NULL,
  max_evidence_age INTEGER NOT NULL,
  tenants          INTEGER NOT NULL,
  tenants_failed   INTEGER NOT NULL,
  template_empty   INTEGER NOT NULL,
  with_evidence    INTEGER NOT NULL,
  without_evidence INTEGER NOT NULL,
  appeared         INTEGER NOT NULL,
  captured         INTEGER NOT NULL,
  detail           TEXT NOT NULL,
  prev_hash        TEXT NOT NULL,
  hash             TEXT NOT NULL
);
` + appendOnly("audit_sets", "audits"),

	// 8: content moves to a rowid table. A config of 2 KiB and more
	// overflows a WITHOUT ROWID b-tree's cells, so every insert and lookup
	// by sha256 read overflow pages at random places; in a rowid table the
	// bytes are appended and only the small sha256 index is random (the
	// snapshot writer commits about twice as many captures a second, and
	// plan reads them faster). Nothing hashed changes: the chain covers a
	// capture's sha256, never where its bytes are kept. legacy_alter_table
	// keeps captures' REFERENCES content as written while the old table is
	// renamed away, so the foreign key names the new table. Rows are copied
	// in the order of the capture that first cites them; content no capture
	// cites (which verify reports) is copied too, last.
	`
PRAGMA legacy_alter_table = ON;
ALTER TABLE content RENAME TO content_v7;
CREATE TABLE content (
  id     INTEGER PRIMARY KEY,
  sha256 TEXT NOT NULL UNIQUE,
  size   INTEGER NOT NULL,
  bytes  BLOB NOT NULL
);
INSERT INTO content (sha256, size, bytes)
SELECT v.sha256, v.size, v.bytes FROM content_v7 v
LEFT JOIN (SELECT sha256, min(id) AS first FROM captures WHERE sha256 IS NOT NULL GROUP BY sha256) f ON f.sha256 = v.sha256
ORDER BY f.first IS NULL, f.first, v.sha256;
DROP TABLE content_v7;
PRAGMA legacy_alter_table = OFF;
` + appendOnly("content"),

	// 9: plans are kept deflated. A plan of 100,000 items is about 100 MB
	// of JSON and a tenth of that deflated; kept as it was, plan held it
	// whole in memory, twice, to insert it. The chain covers a plan's
	// sha256, never how its bytes are kept, so nothing hashed changes.
	// encoding is '' (as written) or 'deflate'; size is the plan file's
	// length (NULL before: the length of bytes).
	`
ALTER TABLE plans ADD COLUMN encoding TEXT NOT NULL DEFAULT '';
ALTER TABLE plans ADD COLUMN size INTEGER;
`,

	// 10: an approval records the digests of the catalog and the CP records
	// its approver derived the plan again with. apply counts only an
	// approval whose digests are the plan's: one recorded before approve
	// had to be given the CP records (NULL here) never checked the plan's
	// claims against them. Both enter the chain hash when not NULL (see
	// addedCols): old rows hash as before.
	`
ALTER TABLE approvals ADD COLUMN checked_catalog_sha256 TEXT;
ALTER TABLE approvals ADD COLUMN checked_cp_sha256 TEXT;
`,

	// 11: a listing names the database it read (tenantdb.Database.Ident:
	// system identifier, database name and OID, public.workspaces' OID),
	// so that a plan made from a database other than the one its evidence
	// was listed from is noticed. It enters the chain hash when not NULL
	// (see addedCols): old rows hash as before.
	`
ALTER TABLE listings ADD COLUMN database TEXT;
`,
}

// appendOnly returns triggers that make the database itself refuse UPDATE
// and DELETE on the named tables, whoever connects to it.
func appendOnly(tables ...string) string {
	var b strings.Builder
	for _, t := range tables {
		for _, op := range []string{"UPDATE", "DELETE"} {
			b.WriteString(triggerSQL(t, op) + ";\n")
		}
	}
	return b.String()
}

// triggerSQL is one append-only trigger exactly as SQLite stores it, so
// verify can tell a trigger replaced by a no-op from the real one.
func triggerSQL(table, op string) string {
	return fmt.Sprintf("CREATE TRIGGER %[1]s_no_%[2]s BEFORE %[3]s ON %[1]s BEGIN SELECT RAISE(ABORT, '%[1]s is append-only'); END",
		table, strings.ToLower(op), op)
}

// appendOnlyTables lists the tables whose triggers verify checks.
var appendOnlyTables = []string{"content", "listings", "captures", "approvals", "journal", "merged_from", "plans", "audit_sets", "audits"}

// tableSince is the schema version that created each table created after
// the first: a store at an older version is read as if it were empty.
var tableSince = map[string]int{"approvals": 2, "journal": 3, "merged_from": 4, "plans": 5, "audit_sets": 7, "audits": 7}

// hasTable reports whether the store's schema version has table.
func (s *Store) hasTable(table string) bool { return s.version >= tableSince[table] }

// readVersion reads and checks the store's schema version.
func (s *Store) readVersion(ctx context.Context) (int, error) {
	// One statement, so that both are read from one snapshot: another
	// backfill creating the store commits its first tables and version 1
	// together.
	var version, objects int
	if err := s.db.QueryRowContext(ctx, "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)").Scan(&version, &objects); err != nil {
		return 0, fmt.Errorf("not a readable SQLite database: %w", err)
	}
	if version > len(migrations) {
		return 0, fmt.Errorf("schema version %d is newer than this backfill understands (%d): upgrade backfill", version, len(migrations))
	}
	if version == 0 && objects > 0 {
		// A file that has tables but no version is not ours: refuse it rather
		// than mix evidence into someone else's database.
		return 0, fmt.Errorf("not a backfill evidence store (it has tables but no schema version)")
	}
	return version, nil
}

func (s *Store) migrate(ctx context.Context) error {
	version, err := s.readVersion(ctx)
	if err != nil {
		return err
	}
	s.version = len(migrations)
	if version == len(migrations) {
		return nil
	}
	// Migrations run on one connection with foreign keys off, as SQLite's
	// procedure for rebuilding a table asks (migration 8 rebuilds content,
	// which captures reference): with them on, renaming a parent table
	// rewrites every REFERENCES to the new name. They are on again before
	// the connection goes back to the pool.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return err
	}
	defer func() {
		if _, err := conn.ExecContext(context.Background(), "PRAGMA foreign_keys = ON"); err != nil {
			// Not fit for the pool: the next user would write unchecked.
			discard(conn)
		}
	}()
	// Every step left is made in one transaction: a new store is made
	// whole or not at all, with one commit (one fsync) instead of one a
	// step.
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Another backfill opening the store at the same time may have made
	// some steps since the version was read: read it again now that this
	// transaction holds the write lock, and go on from there.
	var now int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&now); err != nil {
		return fmt.Errorf("migration %d: %w", version+1, err)
	}
	if now < version || now > len(migrations) {
		return fmt.Errorf("migration %d: the schema version changed from %d to %d while migrating", version+1, version, now)
	}
	for v := now; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration to version %d: %w", len(migrations), err)
	}
	return nil
}

// schemaObject is one row of sqlite_master, less its rootpage.
type schemaObject struct {
	Type, Name, TblName string
	SQL                 sql.NullString // NULL for automatic indexes
}

func (o schemaObject) String() string { return o.Type + " " + o.Name }

var (
	schemaMu    sync.Mutex
	schemaCache = map[int]map[string]schemaObject{}
)

// expectedSchema is sqlite_master as the first version migrations leave it,
// made by running them on an empty in-memory database: the schema text is
// exactly what SQLite stores, with nothing to keep in step by hand.
func expectedSchema(ctx context.Context, version int) (map[string]schemaObject, error) {
	schemaMu.Lock()
	defer schemaMu.Unlock()
	if m, ok := schemaCache[version]; ok {
		return m, nil
	}
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // each connection would be its own empty database
	for v := 0; v < version; v++ {
		if _, err := db.ExecContext(ctx, migrations[v]); err != nil {
			return nil, fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	m, err := readSchema(ctx, db)
	if err != nil {
		return nil, err
	}
	schemaCache[version] = m
	return m, nil
}

// readSchema returns every object of a database's sqlite_master by type and
// name.
func readSchema(ctx context.Context, db *sql.DB) (map[string]schemaObject, error) {
	rows, err := db.QueryContext(ctx, "SELECT type, name, tbl_name, sql FROM sqlite_master")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[string]schemaObject{}
	for rows.Next() {
		var o schemaObject
		if err := rows.Scan(&o.Type, &o.Name, &o.TblName, &o.SQL); err != nil {
			return nil, err
		}
		m[o.String()] = o
	}
	return m, rows.Err()
}
