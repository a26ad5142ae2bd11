package evidence

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"backfill/internal/source"
	"backfill/internal/workspace"
)

// Capture outcomes (docs/design.md, "The evidence store").
const (
	// Captured holds the workspace's config, from an evidence source.
	Captured = "captured"
	// NotLive holds bytes that did not come from the workspace (a template
	// folder, or a source that changed under the read): kept for the
	// record, never evidence. Schema version 6 on.
	NotLive = "not-live"
	// NotRunning means the workspace's container is stopped (paused,
	// hibernated): its config may still exist elsewhere. Version 6 on.
	NotRunning = "not-running"
	Gone       = "gone"
	Failed     = "failed"
)

// Capture is one recorded attempt to read a workspace's live config.yaml.
type Capture struct {
	ID          int64
	Tenant      string
	WorkspaceID string
	Row         workspace.Row // the workspace's DB row as seen when it was listed
	Method      string
	Target      string // redacted description of what was read
	StartedAt   time.Time
	EndedAt     time.Time
	Attempt     int
	Outcome     string
	Reason      string
	SHA256      string // of Content; "" when nothing was captured
	Size        int64
	Provenance  map[string]string
	// Source is where the bytes came from (package source: container,
	// host-mirror, exec, unverified, ...); "" for captures recorded before
	// schema version 6, whose class source.Of derives from Method.
	Source   string
	Content  []byte // set when appending (captured and not-live); loaded only on request
	PrevHash string
	Hash     string
}

// SourceClass is the capture's source, or for a capture recorded before
// sources were, its collector's (source.Of).
func (c *Capture) SourceClass() string { return source.Of(c.Method, c.Source) }

// IsEvidence reports whether the capture is evidence of what the workspace
// held: captured, from a source that is evidence (a not-live answer never
// is, whatever its bytes).
func (c *Capture) IsEvidence() bool {
	return c.Outcome == Captured && source.Evidence(c.SourceClass())
}

// Listing records one enumeration of a tenant's live workspaces, or the
// reason it could not be done.
type Listing struct {
	ID      int64
	Tenant  string
	At      time.Time
	Outcome string // "listed" or "unreachable"
	Reason  string
	Rows    []workspace.Row
	// Database names the database a successful listing read
	// (tenantdb.Database.Ident); "" when not recorded (before schema
	// version 11, or a listing that failed).
	Database string
	PrevHash string
	Hash     string
}

// Listing outcomes.
const (
	Listed      = "listed"
	Unreachable = "unreachable"
)

// Record is anything the store appends to a hash-chained table.
type Record interface {
	table() string
	// insert writes the record with the given id and previous chain hash
	// and returns its own chain hash.
	insert(ctx context.Context, tx *txn, id int64, prev string) (string, error)
}

// txn is a write transaction that prepares each statement once, since a
// batch inserts hundreds of rows with the same few statements. The Writer
// keeps its statements and its set of stored content across transactions.
type txn struct {
	q     querier
	stmts map[string]*sql.Stmt
	// known holds the sha256 of content committed to the store, when the
	// caller keeps such a set across transactions (the Writer): content
	// already in it is neither inserted again nor read back. nil: none.
	known map[contentKey]struct{}
	// stored is the content this transaction inserted or found stored;
	// the caller adds it to known once the transaction has committed.
	stored []contentKey
}

// contentKey is a content sha256 in binary: half the memory of its hex for
// the Writer's set, which can hold every content of a 100,000-workspace run.
type contentKey [sha256.Size]byte

func keyOf(sha string) (k contentKey, ok bool) {
	n, err := hex.Decode(k[:], []byte(sha))
	return k, err == nil && n == len(k)
}

// querier is what a txn runs its statements on: a *sql.Tx, or the
// Writer's own connection inside a transaction it began.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

func (t *txn) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	st, ok := t.stmts[query]
	if !ok {
		var err error
		if st, err = t.q.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		t.stmts[query] = st
	}
	return st, nil
}

func (t *txn) exec(ctx context.Context, query string, args ...any) (int64, error) {
	st, err := t.stmt(ctx, query)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queryRow is QueryRowContext with the statement prepared once.
func (t *txn) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := t.stmt(ctx, query)
	if err != nil {
		// Let Scan report the error: QueryRowContext on the querier fails the same way.
		return t.q.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// insert runs an INSERT of one row into table and checks that the row was
// inserted: a BEFORE INSERT trigger that says RAISE(IGNORE) makes SQLite
// skip the row and report success, and evidence that silently vanishes is
// worse than a run that stops.
func (t *txn) insert(ctx context.Context, table, query string, args ...any) error {
	n, err := t.exec(ctx, query, args...)
	if err != nil {
		return err
	}
	return checkInserted(table, n)
}

func checkInserted(table string, n int64) error {
	if n != 1 {
		return fmt.Errorf("insert into %s was dropped (%d rows inserted, want 1): something in the database, such as a trigger, is discarding evidence; run `backfill verify`", table, n)
	}
	return nil
}

// timeFormat is fixed so that stored times hash identically when re-read.
const timeFormat = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(timeFormat, s)
	return t
}

// chainHash links a record to its predecessor. cols holds the record's stored
// column values in a fixed order, so verification needs nothing but the row.
// Each value is length-prefixed, so no two different rows hash alike.
func chainHash(table, prev string, cols ...any) string {
	// The whole stream in one buffer, hashed once: verify hashes every
	// record, and a Write per field cost more than the hashing.
	buf := make([]byte, 0, 1024)
	var num [20]byte
	put := func(s []byte) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	putString := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	putString(table)
	putString(prev)
	for _, c := range cols {
		switch v := c.(type) {
		case string:
			putString(v)
		case int64:
			put(strconv.AppendInt(num[:0], v, 10))
		case int:
			put(strconv.AppendInt(num[:0], int64(v), 10))
		default:
			panic(fmt.Sprintf("chainHash: unsupported column type %T", c))
		}
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

// addedCol is a column added to a chained table after its creation.
type addedCol struct {
	name  string
	value any // string or int64
	set   bool
}

// addedCols appends to cols the added columns that are set, each as its name
// then its value. A row from before the columns existed has them all NULL
// and so hashes exactly as it did; names keep one set of values from
// hashing like another.
func addedCols(cols []any, added ...addedCol) []any {
	for _, c := range added {
		if c.set {
			cols = append(cols, c.name, c.value)
		}
	}
	return cols
}

// SHA256Hex is the content hash used throughout the store.
func SHA256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called on types that always marshal
	}
	return string(b)
}

// captureCols returns the stored column values that the chain covers.
type captureCols struct {
	tenant, workspaceID, dbRow, method, target, startedAt, endedAt string
	attempt                                                        int
	outcome, reason                                                string
	sha                                                            sql.NullString
	size                                                           int64
	provenance                                                     string
	source                                                         sql.NullString // added by migration 6
}

func (c captureCols) hash(id int64, prev string) string {
	cols := []any{id, c.tenant, c.workspaceID, c.dbRow, c.method, c.target,
		c.startedAt, c.endedAt, c.attempt, c.outcome, c.reason, c.sha.String, c.size, c.provenance}
	cols = addedCols(cols, addedCol{"source", c.source.String, c.source.Valid})
	return chainHash("captures", prev, cols...)
}

func (c *Capture) cols() captureCols {
	prov := c.Provenance
	if prov == nil {
		prov = map[string]string{}
	}
	return captureCols{
		tenant: c.Tenant, workspaceID: c.WorkspaceID, dbRow: mustJSON(c.Row), method: c.Method,
		target: c.Target, startedAt: formatTime(c.StartedAt), endedAt: formatTime(c.EndedAt),
		attempt: c.Attempt, outcome: c.Outcome, reason: c.Reason,
		sha: sql.NullString{String: c.SHA256, Valid: c.SHA256 != ""}, size: c.Size,
		provenance: mustJSON(prov),
		source:     sql.NullString{String: c.Source, Valid: c.Source != ""},
	}
}

func (c *Capture) table() string { return "captures" }

func (c *Capture) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	// A not-live answer keeps its bytes for the record when there were
	// any; a captured one always has content, if only an empty file.
	if c.Outcome == Captured || (c.Outcome == NotLive && c.Content != nil) {
		if c.Content == nil {
			// An empty file is evidence too; nil would bind as NULL.
			c.Content = []byte{}
		}
		c.SHA256 = SHA256Hex(c.Content)
		c.Size = int64(len(c.Content))
		if err := tx.storeContent(ctx, c.SHA256, c.Size, c.Content); err != nil {
			return "", err
		}
	}
	cc := c.cols()
	h := cc.hash(id, prev)
	err := tx.insert(ctx, "captures", `INSERT INTO captures (id, tenant, workspace_id, db_row, method, target, started_at, ended_at,
  attempt, outcome, reason, sha256, size, provenance, source, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		id, cc.tenant, cc.workspaceID, cc.dbRow, cc.method, cc.target, cc.startedAt, cc.endedAt,
		cc.attempt, cc.outcome, cc.reason, cc.sha, cc.size, cc.provenance, cc.source, prev, h)
	if err != nil {
		return "", err
	}
	c.ID, c.PrevHash, c.Hash = id, prev, h
	return h, nil
}

// storeContent stores content once per sha256; a second capture of the same
// bytes only references it. Content the caller knows to be committed
// (append-only, so still there) costs no statement at all; otherwise an
// insert that adds no row is right only when the bytes are already stored,
// which one read tells from an insert a trigger discarded.
func (t *txn) storeContent(ctx context.Context, sha string, size int64, b []byte) error {
	k, keyed := keyOf(sha)
	if _, ok := t.known[k]; ok && keyed {
		return nil
	}
	n, err := t.exec(ctx, `INSERT INTO content (sha256, size, bytes) VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING`, sha, size, b)
	if err != nil {
		return err
	}
	if n == 0 {
		if err := t.queryRow(ctx, "SELECT count(*) FROM content WHERE sha256 = ?", sha).Scan(&n); err != nil {
			return err
		}
	}
	if err := checkInserted("content", n); err != nil {
		return err
	}
	if t.known != nil && keyed {
		t.stored = append(t.stored, k)
	}
	return nil
}

type listingCols struct {
	tenant, at, outcome, reason, rows string
	database                          sql.NullString // added by migration 11
}

func (l listingCols) hash(id int64, prev string) string {
	cols := addedCols([]any{id, l.tenant, l.at, l.outcome, l.reason, l.rows}, addedCol{"database", l.database.String, l.database.Valid})
	return chainHash("listings", prev, cols...)
}

func (l *Listing) table() string { return "listings" }

func (l *Listing) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	rows := l.Rows
	if rows == nil {
		rows = []workspace.Row{}
	}
	lc := listingCols{tenant: l.Tenant, at: formatTime(l.At), outcome: l.Outcome, reason: l.Reason, rows: mustJSON(rows),
		database: sql.NullString{String: l.Database, Valid: l.Database != ""}}
	h := lc.hash(id, prev)
	err := tx.insert(ctx, "listings", `INSERT INTO listings (id, tenant, at, outcome, reason, rows, database, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)`,
		id, lc.tenant, lc.at, lc.outcome, lc.reason, lc.rows, lc.database, prev, h)
	if err != nil {
		return "", err
	}
	l.ID, l.PrevHash, l.Hash = id, prev, h
	return h, nil
}

// Append writes records in one transaction, each linked to the head of its
// table's chain, and returns once they are committed. The chain head is read
// inside the write transaction, so appends from several processes still form
// one valid chain.
//
// Appends made at once in this process share a transaction (group commit):
// apply journals from a hundred tenant transactions at a time, and one
// fsync each would queue them behind each other on SQLite's busy wait,
// which polls rather than queues and so can leave a writer waiting past its
// timeout while newer ones win. Each call's records still commit together
// or not at all: when a shared transaction fails, every call in it is tried
// again alone.
func (s *Store) Append(ctx context.Context, recs ...Record) error {
	if s.readOnly {
		return s.errReadOnly()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.group.do(recs, s.appendNow)
}

// appendNow commits recs in one transaction of its own.
func (s *Store) appendNow(recs []Record) error {
	// Not the caller's context: by now other callers' records may share
	// the transaction, and a record handed over is committed.
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := appendTx(ctx, tx, recs...); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// groupCommit coalesces concurrent appends: the first caller to find no
// commit running commits everything queued, again and again until the
// queue is empty, while later callers wait for their own batch's outcome.
type groupCommit struct {
	mu      sync.Mutex
	queue   []groupReq
	running bool
}

type groupReq struct {
	recs []Record
	done chan error
}

func (g *groupCommit) do(recs []Record, commit func([]Record) error) error {
	req := groupReq{recs: recs, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, req)
	if g.running {
		g.mu.Unlock()
		return <-req.done
	}
	g.running = true
	for len(g.queue) > 0 {
		batch := g.queue
		g.queue = nil
		g.mu.Unlock()
		g.commit(batch, commit)
		g.mu.Lock()
	}
	g.running = false
	g.mu.Unlock()
	return <-req.done
}

// commit commits a batch in one transaction, or, when that fails and the
// batch holds more than one call, each call alone, so that one call's bad
// record does not fail the others.
func (g *groupCommit) commit(batch []groupReq, commit func([]Record) error) {
	var all []Record
	for _, r := range batch {
		all = append(all, r.recs...)
	}
	err := commit(all)
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	for _, r := range batch {
		r.done <- commit(r.recs)
	}
}

// appendTx is Append within tx, which the caller commits or rolls back.
func appendTx(ctx context.Context, tx *sql.Tx, recs ...Record) error {
	return appendRecs(ctx, &txn{q: tx, stmts: map[string]*sql.Stmt{}}, recs...)
}

// appendRecs inserts recs through t, each linked to the head of its
// table's chain, read once per table inside the transaction.
func appendRecs(ctx context.Context, t *txn, recs ...Record) error {
	type head struct {
		id   int64
		hash string
	}
	heads := map[string]*head{}
	for _, r := range recs {
		tb := r.table()
		hd, ok := heads[tb]
		if !ok {
			hd = &head{}
			err := t.queryRow(ctx, "SELECT id, hash FROM "+tb+" ORDER BY id DESC LIMIT 1").Scan(&hd.id, &hd.hash)
			if err != nil && err != sql.ErrNoRows {
				return err
			}
			heads[tb] = hd
		}
		h, err := r.insert(ctx, t, hd.id+1, hd.hash)
		if err != nil {
			return fmt.Errorf("append to %s: %w", tb, err)
		}
		hd.id, hd.hash = hd.id+1, h
	}
	return nil
}

// Head returns the id and hash of the last record of a chained table ("" when empty).
func (s *Store) Head(ctx context.Context, table string) (int64, string, error) {
	var id int64
	var h string
	err := s.db.QueryRowContext(ctx, "SELECT id, hash FROM "+table+" ORDER BY id DESC LIMIT 1").Scan(&id, &h)
	if err == sql.ErrNoRows {
		return 0, "", nil
	}
	return id, h, err
}
