package evidence

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"backfill/internal/workspace"
)

// Key names one workspace of one tenant.
type Key struct {
	Tenant      string
	WorkspaceID string
}

const captureSelect = `SELECT id, tenant, workspace_id, db_row, method, target, started_at, ended_at, attempt,
  outcome, reason, sha256, size, provenance, source, prev_hash, hash FROM captures`

// captureSelect reads NULL for the source column a store older than version
// 6 lacks: a read-only open reads an old store as it is.
func (s *Store) captureSelect() string {
	if s.version < 6 {
		return strings.Replace(captureSelect, "provenance, source,", "provenance, NULL,", 1)
	}
	return captureSelect
}

// scanCaptureCols reads a capture's stored columns only: what its chain
// hash covers, without decoding them.
func scanCaptureCols(sc scanner) (id int64, cc captureCols, prev, hash string, err error) {
	err = sc.Scan(&id, &cc.tenant, &cc.workspaceID, &cc.dbRow, &cc.method, &cc.target, &cc.startedAt, &cc.endedAt,
		&cc.attempt, &cc.outcome, &cc.reason, &cc.sha, &cc.size, &cc.provenance, &cc.source, &prev, &hash)
	return id, cc, prev, hash, err
}

func scanCapture(sc scanner) (*Capture, captureCols, error) {
	var c Capture
	var cc captureCols
	var err error
	c.ID, cc, c.PrevHash, c.Hash, err = scanCaptureCols(sc)
	if err != nil {
		return nil, cc, err
	}
	c.Tenant, c.WorkspaceID, c.Method, c.Target = cc.tenant, cc.workspaceID, cc.method, cc.target
	c.StartedAt, c.EndedAt = parseTime(cc.startedAt), parseTime(cc.endedAt)
	c.Attempt, c.Outcome, c.Reason, c.SHA256, c.Size = cc.attempt, cc.outcome, cc.reason, cc.sha.String, cc.size
	c.Source = cc.source.String
	// Stored JSON that does not decode (only possible by hand) leaves zero
	// values; its hash still covers the stored text, so verify sees edits.
	_ = json.Unmarshal([]byte(cc.dbRow), &c.Row)
	_ = json.Unmarshal([]byte(cc.provenance), &c.Provenance)
	return &c, cc, nil
}

// Captures calls fn for every capture in recording order. Content is not
// loaded; use Content for the bytes.
func (s *Store) Captures(ctx context.Context, fn func(*Capture) error) error {
	return s.eachCapture(ctx, fn, " ORDER BY id")
}

// CaptureByID returns one capture, without its content.
func (s *Store) CaptureByID(ctx context.Context, id int64) (*Capture, error) {
	c, _, err := scanCapture(s.db.QueryRowContext(ctx, s.captureSelect()+" WHERE id = ?", id))
	if err == sql.ErrNoRows {
		return nil, fmt.Errorf("capture %d is not in the evidence store", id)
	}
	return c, err
}

// Content returns the bytes stored under a sha256.
func (s *Store) Content(ctx context.Context, sha string) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, "SELECT bytes FROM content WHERE sha256 = ?", sha).Scan(&b)
	if err == sql.ErrNoRows {
		return nil, fmt.Errorf("content %s is not in the evidence store", sha)
	}
	if b == nil && err == nil {
		b = []byte{} // an empty capture reads back as empty, not absent
	}
	return b, err
}

// CapturedKeys returns every workspace that has at least one successful
// capture: captured from a source that is evidence (Capture.IsEvidence).
func (s *Store) CapturedKeys(ctx context.Context) (map[Key]bool, error) {
	src := "source"
	if s.version < 6 {
		src = "NULL"
	}
	rows, err := s.db.QueryContext(ctx, "SELECT DISTINCT tenant, workspace_id, method, "+src+" FROM captures WHERE outcome = 'captured'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[Key]bool{}
	for rows.Next() {
		var k Key
		var c Capture
		var stored sql.NullString
		if err := rows.Scan(&k.Tenant, &k.WorkspaceID, &c.Method, &stored); err != nil {
			return nil, err
		}
		c.Outcome, c.Source = Captured, stored.String
		if c.IsEvidence() {
			out[k] = true
		}
	}
	return out, rows.Err()
}

// CaptureCounts returns how many captures the store holds of each tenant
// (at least its workspaces with evidence), from the captures' index alone.
func (s *Store) CaptureCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT tenant, count(*) FROM captures GROUP BY tenant")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

// LatestListings returns each tenant's most recent listing, or with
// listedOnly its most recent successful one: a later failure to list a
// tenant says nothing about which workspaces it has.
func (s *Store) LatestListings(ctx context.Context, listedOnly bool) (map[string]*Listing, error) {
	where := ""
	if listedOnly {
		where = "WHERE outcome = 'listed'"
	}
	rows, err := s.db.QueryContext(ctx, s.listingSelect()+`
  WHERE id IN (SELECT max(id) FROM listings `+where+` GROUP BY tenant)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*Listing{}
	for rows.Next() {
		l, _, err := scanListing(rows)
		if err != nil {
			return nil, err
		}
		out[l.Tenant] = l
	}
	return out, rows.Err()
}

// listingSelect reads a listing's columns (scanListing); NULL for the
// database column a store older than version 11, read-only, lacks.
func (s *Store) listingSelect() string {
	database := "database"
	if s.version < 11 {
		database = "NULL"
	}
	return "SELECT id, tenant, at, outcome, reason, rows, " + database + ", prev_hash, hash FROM listings"
}

// ListedDatabases returns, per tenant, every database its successful
// listings name, sorted, without reading the listings' rows: a plan checks
// the tenant's evidence came from the one database it reads, and a later
// snapshot of another database does not hide an earlier one.
func (s *Store) ListedDatabases(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	if s.version < 11 {
		return out, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT tenant, database FROM listings
  WHERE outcome = 'listed' AND database IS NOT NULL AND database <> '' ORDER BY tenant, database`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var t, d string
		if err := rows.Scan(&t, &d); err != nil {
			return nil, err
		}
		out[t] = append(out[t], d)
	}
	return out, rows.Err()
}

func scanListing(sc scanner) (*Listing, listingCols, error) {
	var l Listing
	var lc listingCols
	if err := sc.Scan(&l.ID, &lc.tenant, &lc.at, &lc.outcome, &lc.reason, &lc.rows, &lc.database, &l.PrevHash, &l.Hash); err != nil {
		return nil, lc, err
	}
	l.Tenant, l.At, l.Outcome, l.Reason, l.Database = lc.tenant, parseTime(lc.at), lc.outcome, lc.reason, lc.database.String
	_ = json.Unmarshal([]byte(lc.rows), &l.Rows)
	return &l, lc, nil
}

// Workspace summarises what the store knows of one workspace.
type Workspace struct {
	Key
	Row           workspace.Row // from the latest listing, else the latest capture
	Listed        bool          // in its tenant's latest successful listing
	Attempts      int           // recorded captures of any outcome
	LatestOutcome string        // "" when never attempted
	LatestReason  string
	LatestAt      time.Time
	Earliest      *CaptureRef // earliest successful capture (Capture.IsEvidence), nil when none
}

// CaptureRef identifies one capture without holding its record.
type CaptureRef struct {
	ID      int64
	SHA256  string
	EndedAt time.Time
}

// Workspaces returns one summary per workspace known from listings or
// captures, sorted by tenant then workspace id.
func (s *Store) Workspaces(ctx context.Context) ([]*Workspace, error) {
	byKey := map[Key]*Workspace{}
	get := func(k Key) *Workspace {
		w := byKey[k]
		if w == nil {
			w = &Workspace{Key: k}
			byKey[k] = w
		}
		return w
	}
	err := s.Captures(ctx, func(c *Capture) error {
		w := get(Key{c.Tenant, c.WorkspaceID})
		w.Row = c.Row
		w.Attempts++
		w.LatestOutcome, w.LatestReason, w.LatestAt = c.Outcome, c.Reason, c.EndedAt
		if c.IsEvidence() && w.Earliest == nil {
			w.Earliest = &CaptureRef{ID: c.ID, SHA256: c.SHA256, EndedAt: c.EndedAt}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	listings, err := s.LatestListings(ctx, true)
	if err != nil {
		return nil, err
	}
	for _, l := range listings {
		for _, r := range l.Rows {
			w := get(Key{l.Tenant, r.ID})
			w.Row, w.Listed = r, true
		}
	}
	out := make([]*Workspace, 0, len(byKey))
	for _, w := range byKey {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].WorkspaceID < out[j].WorkspaceID
	})
	return out, nil
}

// EvidenceSpan is when a workspace's evidence was captured: its first and
// latest successful capture (Capture.IsEvidence), by end time.
type EvidenceSpan struct {
	First, Last time.Time
}

// EvidenceTimes returns the evidence span of every workspace with at least
// one successful capture: what `audit` reports as the age of its evidence
// and re-captures past --max-evidence-age.
func (s *Store) EvidenceTimes(ctx context.Context) (map[Key]EvidenceSpan, error) {
	src := "source"
	if s.version < 6 {
		src = "NULL"
	}
	// Stored times have one fixed width, so min and max of the text are
	// the earliest and latest.
	rows, err := s.db.QueryContext(ctx, "SELECT tenant, workspace_id, method, "+src+`, min(ended_at), max(ended_at) FROM captures
  WHERE outcome = 'captured' GROUP BY 1, 2, 3, 4`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[Key]EvidenceSpan{}
	for rows.Next() {
		var k Key
		var c Capture
		var stored sql.NullString
		var first, last string
		if err := rows.Scan(&k.Tenant, &k.WorkspaceID, &c.Method, &stored, &first, &last); err != nil {
			return nil, err
		}
		c.Outcome, c.Source = Captured, stored.String
		if !c.IsEvidence() {
			continue
		}
		sp, seen := out[k]
		f, l := parseTime(first), parseTime(last)
		if !seen || f.Before(sp.First) {
			sp.First = f
		}
		if l.After(sp.Last) {
			sp.Last = l
		}
		out[k] = sp
	}
	return out, rows.Err()
}

// TenantCaptures calls fn for every capture of one tenant, by workspace id
// then recording order: the order of the captures_workspace index, so that
// a plan reads the store one tenant at a time, merged with the tenant's rows.
// Content is not loaded; use Contents for the bytes.
func (s *Store) TenantCaptures(ctx context.Context, tenant string, fn func(*Capture) error) error {
	return s.eachCapture(ctx, fn, " WHERE tenant = ? ORDER BY workspace_id, id", tenant)
}

// eachCapture calls fn for every capture the select's tail picks, in its
// order.
func (s *Store) eachCapture(ctx context.Context, fn func(*Capture) error, tail string, args ...any) error {
	rows, err := s.db.QueryContext(ctx, s.captureSelect()+tail, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		c, _, err := scanCapture(rows)
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CaptureID returns the id of the capture whose chain hash is hash, and
// false when no capture has it.
func (s *Store) CaptureID(ctx context.Context, hash string) (int64, bool, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, "SELECT id FROM captures WHERE hash = ? ORDER BY id LIMIT 1", hash).Scan(&id)
	if err == sql.ErrNoRows {
		return 0, false, nil
	}
	return id, err == nil, err
}

// contentBatch is how many contents one query of Contents reads: far
// below SQLite's bound on parameters, and few enough bytes to hold at once.
const contentBatch = 256

// Contents calls fn with the bytes stored under each sha256 of shas that
// the store holds, a batch at a time, in no particular order; a sha256 the
// store does not hold is left out. Reading them in bulk costs a fraction of
// one Content query each. b is only valid until fn returns.
func (s *Store) Contents(ctx context.Context, shas []string, fn func(sha string, b []byte) error) error {
	for len(shas) > 0 {
		n := min(len(shas), contentBatch)
		args := make([]any, n)
		for i, sha := range shas[:n] {
			args[i] = sha
		}
		shas = shas[n:]
		q := "SELECT sha256, bytes FROM content WHERE sha256 IN (?" + strings.Repeat(", ?", n-1) + ")"
		if err := s.eachContent(ctx, q, args, fn); err != nil {
			return err
		}
	}
	return nil
}

// AllContents calls fn with every content row's sha256 and bytes, in one
// pass in the store's order (by sha256). Reading most of a store's content
// this way costs a fraction of looking each up with Contents: the rows are
// read as they lie, not one probe each. b is only valid until fn returns.
func (s *Store) AllContents(ctx context.Context, fn func(sha string, b []byte) error) error {
	return s.eachContent(ctx, "SELECT sha256, bytes FROM content", nil, fn)
}

// Citations calls fn with the tenant and content sha256 of every capture
// with content whose id is at most upTo, in recording order, reading only
// those two columns.
func (s *Store) Citations(ctx context.Context, upTo int64, fn func(tenant, sha string) error) error {
	rows, err := s.db.QueryContext(ctx, "SELECT tenant, sha256 FROM captures WHERE id <= ? AND sha256 IS NOT NULL ORDER BY id", upTo)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var tenant, sha string
		if err := rows.Scan(&tenant, &sha); err != nil {
			return err
		}
		if err := fn(tenant, sha); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *Store) eachContent(ctx context.Context, q string, args []any, fn func(sha string, b []byte) error) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var sha string
		var b sql.RawBytes // fn is done with it before the next row
		if err := rows.Scan(&sha, &b); err != nil {
			return err
		}
		if b == nil {
			b = sql.RawBytes{} // an empty capture reads back as empty, not absent
		}
		if err := fn(sha, b); err != nil {
			return err
		}
	}
	return rows.Err()
}

// LatestListing returns one tenant's most recent successful listing, or nil
// when it has none: a later failure to list it says nothing about which
// workspaces it has.
func (s *Store) LatestListing(ctx context.Context, tenant string) (*Listing, error) {
	l, _, err := scanListing(s.db.QueryRowContext(ctx, s.listingSelect()+`
  WHERE tenant = ? AND outcome = 'listed' ORDER BY id DESC LIMIT 1`, tenant))
	if err == sql.ErrNoRows {
		return nil, nil
	}
	return l, err
}

// Tenants returns every tenant a capture or a listing names, sorted.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT tenant FROM captures UNION SELECT tenant FROM listings ORDER BY 1")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
