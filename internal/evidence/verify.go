package evidence

import (
	"context"
	"database/sql"
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
	ChainHead string   // hash of the last capture
	Problems  []string // empty when the store verifies
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
	if err := s.verifyTriggers(ctx, r); err != nil {
		return nil, err
	}
	if err := s.verifySchema(ctx, r); err != nil {
		return nil, err
	}
	badContent, stored, err := s.verifyContent(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := s.verifyCaptures(ctx, r, badContent, stored); err != nil {
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
	return r, nil
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

// verifyContent rehashes every content row. It returns why each bad one is
// bad, and every sha256 stored.
func (s *Store) verifyContent(ctx context.Context, r *VerifyReport) (bad map[string]string, stored map[string]bool, err error) {
	bad, stored = map[string]string{}, map[string]bool{}
	rows, err := s.db.QueryContext(ctx, "SELECT sha256, size, bytes FROM content")
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var sha string
		var size int64
		var b sql.RawBytes // hashed before the next row: no copy of every config
		if err := rows.Scan(&sha, &size, &b); err != nil {
			return nil, nil, err
		}
		r.Contents++
		stored[sha] = true
		if got := SHA256Hex(b); got != sha {
			bad[sha] = fmt.Sprintf("content stored under sha256 %s now hashes to %s", sha, got)
		} else if int64(len(b)) != size {
			bad[sha] = fmt.Sprintf("content %s is %d bytes, recorded as %d", sha, len(b), size)
		}
	}
	return bad, stored, rows.Err()
}

func (s *Store) verifyCaptures(ctx context.Context, r *VerifyReport, badContent map[string]string, stored map[string]bool) error {
	cited := map[string]bool{}
	var missing []string
	err := s.verifyChain(ctx, r, s.captureSelect()+" ORDER BY id", func(sc scanner) (chainRow, error) {
		// The columns as stored are what the hash covers: nothing here
		// needs them decoded.
		id, cc, prev, hash, err := scanCaptureCols(sc)
		if err != nil {
			return chainRow{}, err
		}
		r.Captures++
		name := func() string {
			return fmt.Sprintf("capture %d (tenant %s, workspace %s)", id, cc.tenant, cc.workspaceID)
		}
		if sha := cc.sha.String; cc.sha.Valid {
			cited[sha] = true
			if why, ok := badContent[sha]; ok {
				r.problem("%s: %s", name(), why)
			}
			// Its content row is gone: only possible with the triggers
			// and foreign keys bypassed. Checked against the content
			// just read rather than by a join, which costs a lookup in
			// the content index for every capture.
			if !stored[sha] {
				missing = append(missing, fmt.Sprintf("%s: content %s is missing", name(), sha))
			}
		}
		r.ChainHead = hash
		return chainRow{id, prev, hash, cc.hash(id, prev), name}, nil
	})
	if err != nil {
		return err
	}
	// Content is only ever inserted with a capture that cites it, so
	// content no capture cites means captures were deleted, even from the
	// end of the chain where no id jump shows it.
	r.orphans(stored, cited, "content %s is cited by no capture: the capture that recorded it was deleted")
	for _, m := range missing {
		r.problem("%s", m)
	}
	return nil
}

func (s *Store) verifyListings(ctx context.Context, r *VerifyReport) error {
	return s.verifyChain(ctx, r, "SELECT id, tenant, at, outcome, reason, rows, prev_hash, hash FROM listings ORDER BY id",
		func(sc scanner) (chainRow, error) {
			// The columns as stored are what the hash covers: the rows
			// (JSON, a tenant's whole listing) need no decoding here.
			var id int64
			var lc listingCols
			var prev, hash string
			if err := sc.Scan(&id, &lc.tenant, &lc.at, &lc.outcome, &lc.reason, &lc.rows, &prev, &hash); err != nil {
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
func (s *Store) verifyChain(ctx context.Context, r *VerifyReport, query string, scan func(scanner) (chainRow, error)) error {
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
	return rows.Err()
}
