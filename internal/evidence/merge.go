package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
func Merge(ctx context.Context, out string, inputs []string, now time.Time, opts MergeOptions) ([]MergeSource, error) {
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
		// A small page cache: each input keeps three connections open at
		// once (its listings, its captures, their bytes), and SQLite's
		// default of 2 MiB each made 64 inputs cost 300 MB more.
		s, err := openReadOnlyPath(ctx, p, mergeInputCache)
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
		return nil, fmt.Errorf("merge into %s: %w", out, err)
	}
	defer removeWithSidecars(tmp)
	dst, err := Open(ctx, tmp)
	if err != nil {
		return nil, err
	}
	sources, err := mergeStores(ctx, dst, now, opts, stores...)
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
		return nil, fmt.Errorf("merge into %s: %w", out, err)
	}
	return sources, nil
}

// mergeInputCache is the page cache of each connection to a merge's input:
// it reads each table once, in order.
const mergeInputCache = "cache_size(-256)"

// MergeOptions are Merge's choices.
type MergeOptions struct {
	// AllowOverlap lets a tenant be in more than one input (a shard run
	// again for its failed tenants, say): both inputs' evidence is kept,
	// ordered by their clocks.
	AllowOverlap bool
}

// checkOut refuses an out that exists (a dangling symlink included) or has
// SQLite files beside it, which its first reader would replay over it.
func checkOut(out string) error {
	if err := checkName("merge", out); err != nil {
		return err
	}
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
func mergeStores(ctx context.Context, out *Store, now time.Time, opts MergeOptions, inputs ...*Store) ([]MergeSource, error) {
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

	if err := checkOverlap(ctx, inputs, opts.AllowOverlap); err != nil {
		return nil, err
	}

	if err := copyMerged(ctx, out, inputs); err != nil {
		return nil, err
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

// checkOverlap refuses a tenant that more than one input holds listings or
// captures of, unless allowed. Shards of one run hold separate tenants; a
// tenant in two inputs means a merged store given with its own shards, two
// runs of one shard, or overlapping shard splits: its evidence would be
// there twice, and which listing is its latest would rest on two hosts'
// clocks.
func checkOverlap(ctx context.Context, inputs []*Store, allow bool) error {
	if allow {
		return nil
	}
	owner := map[string]int{}
	for i, in := range inputs {
		rows, err := in.db.QueryContext(ctx, "SELECT tenant FROM listings UNION SELECT tenant FROM captures ORDER BY 1")
		if err != nil {
			return fmt.Errorf("%s: read tenants: %w", in.Path(), err)
		}
		var shared []string
		first := -1
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return fmt.Errorf("%s: read tenants: %w", in.Path(), err)
			}
			if j, ok := owner[t]; ok {
				if first < 0 {
					first = j
				}
				shared = append(shared, t)
				continue
			}
			owner[t] = i
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("%s: read tenants: %w", in.Path(), err)
		}
		if len(shared) > 0 {
			more := ""
			if len(shared) > 1 {
				more = fmt.Sprintf(" (and %d more)", len(shared)-1)
			}
			return fmt.Errorf("tenant %q%s is in both %s and %s: the shards of one run hold separate tenants, so these may be a merged store and one of its own inputs, two runs of one shard, or two shard splits; merge one run's shard copies, or pass --allow-overlap to keep both inputs' evidence, ordered by their hosts' clocks",
				shared[0], more, inputs[first].Path(), in.Path())
		}
	}
	return nil
}

// mergeStream is one input's listings or its captures, read in the order
// its store recorded them, one record ahead.
type mergeStream struct {
	input   int
	capture bool // captures; else listings
	rows    *sql.Rows
	// at is the sort key of the record ahead: its time, or the key of
	// the one before it when its clock read earlier.
	at  time.Time
	id  int64
	rec Record
	ok  bool // a record is ahead
}

func (m *mergeStream) next(in *Store) error {
	m.ok = false
	if !m.rows.Next() {
		return m.rows.Err()
	}
	var t time.Time
	if m.capture {
		c, _, err := scanCapture(m.rows)
		if err != nil {
			return err
		}
		m.id, m.rec, t = c.ID, c, c.EndedAt
	} else {
		l, _, err := scanListing(m.rows)
		if err != nil {
			return err
		}
		m.id, m.rec, t = l.ID, l, l.At
	}
	if t.After(m.at) {
		m.at = t
	}
	m.ok = true
	return nil
}

// before orders the records ahead of two streams: by sort key, then input,
// then id, a listing before a capture of the same id.
func (m *mergeStream) before(o *mergeStream) bool {
	if !m.at.Equal(o.at) {
		return m.at.Before(o.at)
	}
	if m.input != o.input {
		return m.input < o.input
	}
	if m.id != o.id {
		return m.id < o.id
	}
	return !m.capture && o.capture
}

// copyMerged appends the inputs' listings and captures to out, merged by
// time, a batch at a time: memory holds one record of each input's two
// streams, each input's connections (mergeInputCache) and one batch,
// however large the inputs. Each input's listings,
// and its captures, keep the order its store recorded them in: a record
// whose clock read earlier than the one before it (another host, an NTP
// step) sorts as of its predecessor. Sorted by their own times, a later
// "not listed" could land before an earlier listing and the merged store
// call the tenant listed.
func copyMerged(ctx context.Context, out *Store, inputs []*Store) error {
	var streams []*mergeStream
	defer func() {
		for _, m := range streams {
			m.rows.Close()
		}
	}()
	for i, in := range inputs {
		for _, q := range []struct {
			capture bool
			query   string
		}{{false, in.listingSelect() + " ORDER BY id"}, {true, in.captureSelect() + " ORDER BY id"}} {
			rows, err := in.db.QueryContext(ctx, q.query)
			if err != nil {
				return fmt.Errorf("%s: read %s: %w", in.Path(), kindOf(q.capture), err)
			}
			m := &mergeStream{input: i, capture: q.capture, rows: rows}
			streams = append(streams, m)
			if err := m.next(in); err != nil {
				return fmt.Errorf("%s: read %s: %w", in.Path(), kindOf(q.capture), err)
			}
		}
	}
	const batch = 500
	chunk := make([]Record, 0, batch)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if err := out.Append(ctx, chunk...); err != nil {
			return fmt.Errorf("write %s: %w", out.Path(), err)
		}
		clear(chunk)
		chunk = chunk[:0]
		return nil
	}
	for {
		var first *mergeStream
		for _, m := range streams {
			if m.ok && (first == nil || m.before(first)) {
				first = m
			}
		}
		if first == nil {
			return flush()
		}
		in := inputs[first.input]
		r := first.rec
		// Every capture that cites bytes brings them: a not-live answer
		// is kept with its bytes too.
		if c, ok := r.(*Capture); ok && c.SHA256 != "" {
			b, err := in.Content(ctx, c.SHA256)
			if err != nil {
				return fmt.Errorf("%s: capture %d: %w", in.Path(), c.ID, err)
			}
			c.Content = b
		}
		chunk = append(chunk, r)
		if len(chunk) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
		if err := first.next(in); err != nil {
			return fmt.Errorf("%s: read %s: %w", in.Path(), kindOf(first.capture), err)
		}
	}
}

func kindOf(capture bool) string {
	if capture {
		return "captures"
	}
	return "listings"
}

func (s *Store) count(ctx context.Context, table string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}
