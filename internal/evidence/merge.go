package evidence

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"
)

// MergeSource is one input of a merge, as recorded in the merged store.
type MergeSource struct {
	Path      string
	ChainHead string
	Captures  int
	Listings  int
}

// Merge copies the listings and captures of snapshot shard stores into out,
// which must be empty. Every input must verify; two inputs with the same
// evidence (the same store twice) are refused. Captures keep their bytes,
// content hashes, times and provenance, and are re-chained in out in
// capture-time order, so `verify` passes on out and "earliest capture"
// means the same thing it meant in the shard. The inputs are recorded in
// out's merged_from table.
func Merge(ctx context.Context, out *Store, now time.Time, inputs ...*Store) ([]MergeSource, error) {
	if n, err := out.count(ctx, "captures"); err != nil || n > 0 {
		return nil, fmt.Errorf("output store %s is not empty: merge into a new file", out.Path())
	}
	outInfo, _ := os.Stat(out.Path())
	var sources []MergeSource
	heads := map[string]string{}
	for _, in := range inputs {
		if inInfo, err := os.Stat(in.Path()); err == nil && outInfo != nil && os.SameFile(inInfo, outInfo) {
			return nil, fmt.Errorf("%s is the output store", in.Path())
		}
		rep, err := in.Verify(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Path(), err)
		}
		if !rep.OK() {
			return nil, fmt.Errorf("%s does not verify, refusing to merge it: %s", in.Path(), rep.Problems[0])
		}
		// Merge copies listings and captures only: anything else would be
		// dropped without a word.
		if rep.Approvals > 0 || rep.Journal > 0 || rep.Audits > 0 {
			return nil, fmt.Errorf("%s holds approvals, an apply journal or audits: merge combines snapshot shards only", in.Path())
		}
		if prev, dup := heads[rep.ChainHead]; dup && rep.Captures > 0 {
			return nil, fmt.Errorf("%s holds the same evidence as %s (chain head %s): a store cannot be merged with itself", in.Path(), prev, rep.ChainHead)
		}
		heads[rep.ChainHead] = in.Path()
		sources = append(sources, MergeSource{Path: in.Path(), ChainHead: rep.ChainHead, Captures: rep.Captures, Listings: rep.Listings})
	}

	type rec struct {
		at    time.Time
		input int
		id    int64
		r     Record
	}
	var recs []rec
	for i, in := range inputs {
		rows, err := in.db.QueryContext(ctx, "SELECT id, tenant, at, outcome, reason, rows, prev_hash, hash FROM listings ORDER BY id")
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			l, _, err := scanListing(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			recs = append(recs, rec{l.At, i, l.ID, l})
		}
		rows.Close()
		err = in.Captures(ctx, func(c *Capture) error {
			recs = append(recs, rec{c.EndedAt, i, c.ID, c})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(recs, func(a, b int) bool {
		if !recs[a].at.Equal(recs[b].at) {
			return recs[a].at.Before(recs[b].at)
		}
		if recs[a].input != recs[b].input {
			return recs[a].input < recs[b].input
		}
		return recs[a].id < recs[b].id
	})
	const batch = 500
	for start := 0; start < len(recs); start += batch {
		end := min(start+batch, len(recs))
		chunk := make([]Record, 0, end-start)
		for _, r := range recs[start:end] {
			if c, ok := r.r.(*Capture); ok && c.Outcome == Captured {
				b, err := inputs[r.input].Content(ctx, c.SHA256)
				if err != nil {
					return nil, err
				}
				c.Content = b
			}
			chunk = append(chunk, r.r)
		}
		if err := out.Append(ctx, chunk...); err != nil {
			return nil, fmt.Errorf("write %s: %w", out.Path(), err)
		}
		for _, r := range chunk {
			if c, ok := r.(*Capture); ok {
				c.Content = nil // keep memory to one batch of contents
			}
		}
	}
	for _, src := range sources {
		res, err := out.db.ExecContext(ctx, `INSERT INTO merged_from (path, chain_head, captures, listings, at) VALUES (?,?,?,?,?)`,
			src.Path, src.ChainHead, src.Captures, src.Listings, formatTime(now))
		if err != nil {
			return nil, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, err
		}
		if err := checkInserted("merged_from", n); err != nil {
			return nil, err
		}
	}
	return sources, nil
}

func (s *Store) count(ctx context.Context, table string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}
