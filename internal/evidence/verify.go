package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// VerifyReport is the result of recomputing every chain and content hash.
type VerifyReport struct {
	Captures  int
	Listings  int
	Contents  int
	Approvals int
	Journal   int
	Plans     int
	Audits    int
	ChainHead string // hash of the last capture
	// Heads is each chained table's last hash ("" when it has none).
	Heads    map[string]string
	Problems []string // empty when the store verifies
}

// chainedTables are the tables whose records are hash-chained, in the
// order StoreHead covers them.
var chainedTables = []string{"captures", "listings", "approvals", "journal", "plans", "audits"}

// StoreHead is one digest over every chain's head and count: written down
// after a step, it changes when any record is appended or when a chain's
// tail is deleted (which no chain can show by itself, its head being
// nowhere else).
func (r *VerifyReport) StoreHead() string {
	counts := map[string]int{"captures": r.Captures, "listings": r.Listings, "approvals": r.Approvals,
		"journal": r.Journal, "plans": r.Plans, "audits": r.Audits}
	var b strings.Builder
	for _, t := range chainedTables {
		fmt.Fprintf(&b, "%s %d %s\n", t, counts[t], r.Heads[t])
	}
	return SHA256Hex([]byte(b.String()))
}

// OK reports whether nothing was found wrong.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

func (r *VerifyReport) problem(format string, args ...any) {
	// Bound the report: one tampered byte early in a chain can make every
	// later record look wrong, and the first few name the culprit.
	if len(r.Problems) < 1000 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Verify recomputes every content hash and every hash chain, checks that
// the append-only triggers are still in place, and that the schema is
// exactly the one this backfill's migrations make: nothing added (a trigger
// that discards or rewrites inserts, a view), nothing removed or changed.
func (s *Store) Verify(ctx context.Context) (*VerifyReport, error) {
	r := &VerifyReport{}
	// SQLite's own check, on another connection meanwhile: it is the only
	// one that sees an index whose entries no longer match its table (one
	// dropped and made again leaving rows out, its text put back in
	// sqlite_master), which every read through the index would trust.
	type checked struct {
		problems []string
		err      error
	}
	integrity := make(chan checked, 1)
	go func() {
		p, err := s.integrityCheck(ctx)
		integrity <- checked{p, err}
	}()
	rep, err := s.verifyRecords(ctx, r)
	ic := <-integrity
	if err != nil {
		return nil, err
	}
	if ic.err != nil {
		return nil, fmt.Errorf("integrity_check: %w", ic.err)
	}
	// First: what SQLite itself finds wrong explains what the walks found.
	rep.Problems = append(ic.problems, rep.Problems...)
	return rep, nil
}

// integrityCheck runs PRAGMA integrity_check and returns what it reports
// wrong, each prefixed so that it reads as SQLite's finding.
func (s *Store) integrityCheck(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		if line != "ok" {
			out = append(out, "SQLite integrity_check: "+line)
		}
	}
	return out, rows.Err()
}

// verifyRecords is Verify but for SQLite's own check.
func (s *Store) verifyRecords(ctx context.Context, r *VerifyReport) (*VerifyReport, error) {
	if err := s.verifyTriggers(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifySchema(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifyContentAndCaptures(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifyListings(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifyApprovals(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifyJournal(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifyPlans(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifyAudits(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifyMergedFrom(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// verifyMergedFrom checks a merged store still holds at least what merge
// copied into it from its inputs: the chains cannot show their own tails
// removed, but merge recorded how many records it wrote.
func (s *Store) verifyMergedFrom(ctx context.Context, r *VerifyReport) error {
	if !s.hasTable("merged_from") {
		return nil
	}
	var captures, listings int
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(sum(captures), 0), coalesce(sum(listings), 0) FROM merged_from").Scan(&captures, &listings); err != nil {
		return err
	}
	if r.Captures < captures {
		r.problem("merged_from: the merge copied %d captures from its inputs, the store holds %d: captures were removed", captures, r.Captures)
	}
	if r.Listings < listings {
		r.problem("merged_from: the merge copied %d listings from its inputs, the store holds %d: listings were removed", listings, r.Listings)
	}
	return nil
}

func (s *Store) verifyTriggers(ctx context.Context, r *VerifyReport) error {
	have := map[string]string{}
	rows, err := s.db.QueryContext(ctx, "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var n, q string
		if err := rows.Scan(&n, &q); err != nil {
			return err
		}
		have[n] = q
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range appendOnlyTables {
		if !s.hasTable(t) {
			continue
		}
		for _, op := range []string{"update", "delete"} {
			name := t + "_no_" + op
			q, ok := have[name]
			switch {
			case !ok:
				r.problem("append-only trigger %s is missing: the store may have been altered", name)
			case q != triggerSQL(t, strings.ToUpper(op)):
				r.problem("append-only trigger %s was replaced: the store may have been altered", name)
			}
		}
	}
	return nil
}

// verifySchema compares sqlite_master, object by object, with the schema
// the store's migrations make. Append-only triggers are left to
// verifyTriggers, which names them as such.
func (s *Store) verifySchema(ctx context.Context, r *VerifyReport) error {
	want, err := expectedSchema(ctx, s.version)
	if err != nil {
		return err
	}
	have, err := readSchema(ctx, s.db)
	if err != nil {
		return err
	}
	appendOnlyTrigger := map[string]bool{}
	for _, t := range appendOnlyTables {
		appendOnlyTrigger["trigger "+t+"_no_update"] = true
		appendOnlyTrigger["trigger "+t+"_no_delete"] = true
	}
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		w, inWant := want[k]
		h, inHave := have[k]
		switch {
		case appendOnlyTrigger[k] && inWant:
			// verifyTriggers reports it.
		case !inWant:
			// %q: the text is whatever someone put there.
			r.problem("schema: unexpected %s %q on %q, which backfill never creates: the store may have been altered: %q",
				h.Type, h.Name, h.TblName, h.SQL.String)
		case !inHave:
			r.problem("schema: %s %s is missing: the store may have been altered", w.Type, w.Name)
		case h != w:
			r.problem("schema: %s %s differs from backfill's definition: the store may have been altered: now %q", w.Type, w.Name, h.SQL.String)
		}
	}
	return nil
}

// orphans reports, in sorted order, each key of stored that cited lacks,
// with format (one %s, the key): a row only ever inserted with the record
// that cites it, left without one, means that record was deleted, even
// from the end of its chain where no id jump shows it.
func (r *VerifyReport) orphans(stored, cited map[string]bool, format string) {
	var keys []string
	for k := range stored {
		if !cited[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.problem(format, k)
	}
}

// contentWalk is what verifyContent read: how many content rows, why each
// bad one is bad, and every sha256 stored.
type contentWalk struct {
	n      int
	bad    map[string]string
	stored map[string]bool
}

// verifyContentAndCaptures rehashes the content and walks the captures'
// chain at once, each on its own connection: together they are most of a
// store, and neither needs the other until both are read. Each walk reads
// its own snapshot of the store, so a capture appended between them (a
// snapshot still running) can look like cited content that is missing, or
// content nobody cites; settleContent looks at those again in one read
// transaction, and names the captures that cite bad content.
func (s *Store) verifyContentAndCaptures(ctx context.Context, r *VerifyReport) error {
	cw := &contentWalk{bad: map[string]string{}, stored: map[string]bool{}}
	// A walk that fails stops the other: its error is the answer.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	walked := make(chan error, 1)
	go func() {
		err := s.verifyContent(ctx, cw)
		if err != nil {
			cancel()
		}
		walked <- err
	}()
	cited, err := s.verifyCaptures(ctx, r)
	if err != nil {
		cancel()
	}
	if werr := <-walked; werr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = werr
	}
	if err != nil {
		return err
	}
	r.Contents = cw.n
	return s.settleContent(ctx, r, cw, cited)
}

// verifyContent rehashes every content row.
func (s *Store) verifyContent(ctx context.Context, cw *contentWalk) error {
	rows, err := s.db.QueryContext(ctx, "SELECT sha256, size, bytes FROM content")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var sha string
		var size int64
		var b sql.RawBytes // hashed before the next row: no copy of every config
		if err := rows.Scan(&sha, &size, &b); err != nil {
			return err
		}
		cw.n++
		cw.stored[sha] = true
		if why := contentProblem(sha, size, b); why != "" {
			cw.bad[sha] = why
		}
	}
	return rows.Err()
}

// contentProblem says what is wrong with a content row, or "".
func contentProblem(sha string, size int64, b []byte) string {
	if got := SHA256Hex(b); got != sha {
		return fmt.Sprintf("content stored under sha256 %s now hashes to %s", sha, got)
	}
	if int64(len(b)) != size {
		return fmt.Sprintf("content %s is %d bytes, recorded as %d", sha, len(b), size)
	}
	return ""
}

// verifyCaptures walks the captures' chain and returns the content sha256
// they cite.
func (s *Store) verifyCaptures(ctx context.Context, r *VerifyReport) (cited map[string]bool, err error) {
	cited = map[string]bool{}
	err = s.verifyChain(ctx, r, "captures", s.captureSelect()+" ORDER BY id", func(sc scanner) (chainRow, error) {
		// The columns as stored are what the hash covers: nothing here
		// needs them decoded.
		id, cc, prev, hash, err := scanCaptureCols(sc)
		if err != nil {
			return chainRow{}, err
		}
		r.Captures++
		if cc.sha.Valid {
			cited[cc.sha.String] = true
		}
		r.ChainHead = hash
		return chainRow{id, prev, hash, cc.hash(id, prev), func() string {
			return fmt.Sprintf("capture %d (tenant %s, workspace %s)", id, cc.tenant, cc.workspaceID)
		}}, nil
	})
	return cited, err
}

// settleContent reports what the two walks disagree on, as one snapshot of
// the store sees it: content a capture cites that the content walk did not
// read (missing, unless appended since: then it is checked now), content no
// capture cites (its capture was deleted, even from the end of the chain
// where no id jump shows it, unless appended since), and each capture that
// cites bad content. In a store that verifies there is nothing to settle,
// and nothing more is read.
func (s *Store) settleContent(ctx context.Context, r *VerifyReport, cw *contentWalk, cited map[string]bool) error {
	unread, uncited := map[string]bool{}, map[string]bool{}
	for sha := range cited {
		if !cw.stored[sha] {
			unread[sha] = true
		}
	}
	for sha := range cw.stored {
		if !cited[sha] {
			uncited[sha] = true
		}
	}
	if len(cw.bad) == 0 && len(unread) == 0 && len(uncited) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	missing := map[string]bool{}
	for sha := range unread {
		var size int64
		var b []byte
		switch err := tx.QueryRowContext(ctx, "SELECT size, bytes FROM content WHERE sha256 = ?", sha).Scan(&size, &b); {
		case err == sql.ErrNoRows:
			missing[sha] = true
		case err != nil:
			return err
		default:
			if why := contentProblem(sha, size, b); why != "" {
				cw.bad[sha] = why
			}
		}
	}
	rows, err := tx.QueryContext(ctx, "SELECT id, tenant, workspace_id, sha256 FROM captures WHERE sha256 IS NOT NULL ORDER BY id")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var tenant, ws, sha string
		if err := rows.Scan(&id, &tenant, &ws, &sha); err != nil {
			return err
		}
		delete(uncited, sha)
		if why, ok := cw.bad[sha]; ok {
			r.problem("capture %d (tenant %s, workspace %s): %s", id, tenant, ws, why)
		}
		if missing[sha] {
			r.problem("capture %d (tenant %s, workspace %s): content %s is missing", id, tenant, ws, sha)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// Content is only ever inserted with a capture that cites it.
	r.orphans(uncited, nil, "content %s is cited by no capture: the capture that recorded it was deleted")
	return nil
}

func (s *Store) verifyListings(ctx context.Context, r *VerifyReport) error {
	return s.verifyChain(ctx, r, "listings", s.listingSelect()+" ORDER BY id",
		func(sc scanner) (chainRow, error) {
			// The columns as stored are what the hash covers: the rows
			// (JSON, a tenant's whole listing) need no decoding here.
			var id int64
			var lc listingCols
			var prev, hash string
			if err := sc.Scan(&id, &lc.tenant, &lc.at, &lc.outcome, &lc.reason, &lc.rows, &lc.database, &prev, &hash); err != nil {
				return chainRow{}, err
			}
			r.Listings++
			return chainRow{id, prev, hash, lc.hash(id, prev), func() string { return fmt.Sprintf("listing %d (tenant %s)", id, lc.tenant) }}, nil
		})
}

type scanner interface{ Scan(...any) error }

// chainRow is what verifyChain needs of one record.
type chainRow struct {
	id               int64
	prev, hash, want string        // stored links and the hash recomputed from the columns
	name             func() string // names the record in a problem; built only then
}

// named is a chainRow name that is already a string.
func named(format string, args ...any) func() string {
	s := fmt.Sprintf(format, args...)
	return func() string { return s }
}

// verifyChain walks one hash-chained table in id order.
func (s *Store) verifyChain(ctx context.Context, r *VerifyReport, table, query string, scan func(scanner) (chainRow, error)) error {
	rows, err := s.db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	prev, lastID := "", int64(0)
	for rows.Next() {
		c, err := scan(rows)
		if err != nil {
			return err
		}
		if c.id != lastID+1 {
			r.problem("%s: ids jump from %d: records were removed", c.name(), lastID)
		}
		if c.prev != prev {
			r.problem("%s: chain broken: prev_hash does not match the previous record", c.name())
		}
		if c.want != c.hash {
			r.problem("%s: record was altered: its hash does not match its contents", c.name())
		}
		prev, lastID = c.hash, c.id
	}
	if r.Heads == nil {
		r.Heads = map[string]string{}
	}
	r.Heads[table] = prev
	return rows.Err()
}
