package evidence

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// Merge combines the snapshot shard stores at inputs (or their published
// copies) into a new store at out, which must not exist. Inputs are only
// read: a published copy on a shared or read-only volume is neither
// migrated nor switched to WAL mode. An input a snapshot may still be
// writing (one in WAL mode) is locked first, so that it is never merged
// part-way. The new store is built under a temporary name and linked into
// place only when complete: a merge killed half-way never leaves an out
// that verifies while missing captures.
func Merge(ctx context.Context, out string, inputs []string, now time.Time) ([]MergeSource, error) {
	if err := checkOut(out); err != nil {
		return nil, err
	}
	var stores []*Store
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	var seen []os.FileInfo
	for _, p := range inputs {
		if fi, err := os.Stat(p); err == nil {
			for _, prev := range seen {
				if os.SameFile(fi, prev) {
					return nil, fmt.Errorf("%s is given twice: a store cannot be merged with itself", p)
				}
			}
			seen = append(seen, fi)
		}
		s, err := OpenReadOnly(ctx, p)
		if err != nil {
			return nil, err
		}
		stores = append(stores, s)
		// A published copy (not in WAL mode) is complete and nothing
		// writes it: backfill writes a store only in WAL mode. It needs no
		// lock, which NFS could not give on a file opened read-only.
		wal, err := IsWAL(p)
		if err != nil {
			return nil, err
		}
		if !wal {
			continue
		}
		if err := s.Lock(); errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: is a snapshot still writing it? merge it when it has finished", err)
		} else if err != nil {
			return nil, err
		}
	}
	// An unguessable name made with O_EXCL: a name anyone could predict
	// (the pid is 1 in a container) could be a symlink planted to send the
	// store elsewhere.
	tmp, err := claimTemp(filepath.Dir(out), filepath.Base(out))
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	defer removeWithSidecars(tmp)
	dst, err := Open(ctx, tmp)
	if err != nil {
		return nil, err
	}
	sources, err := mergeStores(ctx, dst, now, stores...)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = cerr
	}
	// As a published copy: one file, no WAL beside it, synced and verified
	// before it takes its name.
	if err == nil {
		err = setRollbackJournal(ctx, tmp)
	}
	if err == nil {
		err = syncPath(tmp)
	}
	if err == nil {
		_, err = verifyCopy(ctx, tmp)
	}
	if err == nil {
		err = checkOut(out)
	}
	if err == nil {
		err = linkNoReplace(tmp, out)
	}
	if err == nil {
		err = syncDir(filepath.Dir(out))
	}
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	return sources, nil
}

// checkOut refuses an out that exists (a dangling symlink included) or has
// SQLite files beside it, which its first reader would replay over it.
func checkOut(out string) error {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s already exists: merge writes a new store", out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("merge %s: %w", out, err)
	}
	return checkSidecars("merge", out)
}

// mergeStores copies the listings and captures of snapshot shard stores
// into out, which must be empty. Every input must verify; two inputs with the same
// evidence (the same store twice) are refused. Captures keep their bytes,
// content hashes, times and provenance, and are re-chained in out in time
// order, each input's own order kept, so `verify` passes on out and
// "earliest capture" means the same thing it meant in the shard. The inputs are recorded in
// out's merged_from table.
func mergeStores(ctx context.Context, out *Store, now time.Time, inputs ...*Store) ([]MergeSource, error) {
	if n, err := out.count(ctx, "captures"); err != nil || n > 0 {
		return nil, fmt.Errorf("output store %s is not empty: merge into a new file", out.Path())
	}
	outInfo, _ := os.Stat(out.Path())
	var sources []MergeSource
	var listingHeads []string
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
		if rep.Approvals > 0 || rep.Journal > 0 || rep.Audits > 0 || rep.Plans > 0 {
			return nil, fmt.Errorf("%s holds plans, approvals, an apply journal or audits: merge combines snapshot shards only (plan on the merged store)", in.Path())
		}
		// Two stores with no captures are the same when their listings are.
		head := rep.ChainHead + " " + rep.Heads["listings"]
		if prev, dup := heads[head]; dup && (rep.Captures > 0 || rep.Listings > 0) {
			return nil, fmt.Errorf("%s holds the same evidence as %s (chain head %s): a store cannot be merged with itself", in.Path(), prev, rep.ChainHead)
		}
		heads[head] = in.Path()
		listingHeads = append(listingHeads, rep.Heads["listings"])
		sources = append(sources, MergeSource{Path: in.Path(), ChainHead: rep.ChainHead, Captures: rep.Captures, Listings: rep.Listings})
	}
	// A shard published, run again and published again is two copies of
	// one chain, the earlier a prefix of the later: merged, every capture
	// they share would be there twice.
	// Each chain is checked: an early copy may hold listings only (every
	// tenant unreachable then).
	for i, in := range inputs {
		for j, src := range sources {
			if i == j {
				continue
			}
			if src.Captures > 0 && src.ChainHead != sources[i].ChainHead {
				ok, err := in.HasCaptureHash(ctx, src.ChainHead)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", in.Path(), err)
				}
				if ok {
					return nil, fmt.Errorf("%s holds all the evidence of %s (its chain head %s) and more: they are copies of one store at two times; merge the later alone", in.Path(), src.Path, src.ChainHead)
				}
			}
			if src.Listings > 0 && listingHeads[j] != listingHeads[i] {
				ok, err := in.hasHash(ctx, "listings", listingHeads[j])
				if err != nil {
					return nil, fmt.Errorf("%s: %w", in.Path(), err)
				}
				if ok {
					return nil, fmt.Errorf("%s holds all the listings of %s and more: they are copies of one store at two times; merge the later alone", in.Path(), src.Path)
				}
			}
		}
	}

	// Records are merged by time, but each input's listings, and its
	// captures, keep the order its store recorded them in: a record whose
	// clock read earlier than the one before it (another host, an NTP step)
	// sorts as of its predecessor. Sorted by their own times, a later "not
	// listed" could land before an earlier listing and the merged store
	// call the tenant listed.
	type rec struct {
		at    time.Time // the sort key: at least that of its predecessor
		input int
		id    int64
		r     Record
	}
	var recs []rec
	for i, in := range inputs {
		var lastListing, lastCapture time.Time
		rows, err := in.db.QueryContext(ctx, in.listingSelect()+" ORDER BY id")
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			l, _, err := scanListing(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			if l.At.After(lastListing) {
				lastListing = l.At
			}
			recs = append(recs, rec{lastListing, i, l.ID, l})
		}
		rows.Close()
		err = in.Captures(ctx, func(c *Capture) error {
			if c.EndedAt.After(lastCapture) {
				lastCapture = c.EndedAt
			}
			recs = append(recs, rec{lastCapture, i, c.ID, c})
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
			// Every capture that cites bytes brings them: a not-live
			// answer is kept with its bytes too.
			if c, ok := r.r.(*Capture); ok && c.SHA256 != "" {
				b, err := inputs[r.input].Content(ctx, c.SHA256)
				if err != nil {
					return nil, fmt.Errorf("%s: capture %d: %w", inputs[r.input].Path(), c.ID, err)
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
