package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"backfill/internal/workspace"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "evidence.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func capture(tenant, ws, outcome, content string) *Capture {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	c := &Capture{
		Tenant: tenant, WorkspaceID: ws,
		Row:    workspace.Row{ID: ws, Name: "n-" + ws, Runtime: "claude-code", Status: "online", Kind: "workspace", UpdatedAt: now},
		Method: "file", Target: "file: /x/" + ws, StartedAt: now, EndedAt: now.Add(time.Millisecond),
		Attempt: 1, Outcome: outcome, Provenance: map[string]string{"size": "1"},
	}
	if outcome == Captured {
		c.Content = []byte(content)
	} else {
		c.Reason = "because"
	}
	return c
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	s := openTemp(t)
	if err := s.Append(context.Background(), capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{s.Path(), s.Path() + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", p, fi.Mode().Perm())
		}
	}
}

// pragmas reads a store's page size and journal mode with a connection of
// its own.
func pragmas(t *testing.T, path string) (int, string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int
	var mode string
	if err := db.QueryRow("PRAGMA page_size").Scan(&size); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	return size, mode
}

func TestNewStoreHasLargePagesAndWAL(t *testing.T) {
	s := openTemp(t)
	if err := s.Append(context.Background(), capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	if size, mode := pragmas(t, s.Path()); size != pageSize || mode != "wal" {
		t.Fatalf("new store: page size %d, journal mode %q; want %d, wal", size, mode, pageSize)
	}
}

// A store made with SQLite's default pages (every store before 16 KiB
// pages) keeps them, and one in rollback mode is put in WAL mode.
func TestOpenKeepsAnExistingStoresPageSize(t *testing.T) {
	ctx := context.Background()
	for _, journal := range []string{"wal", "delete"} {
		t.Run(journal, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "evidence.db")
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=page_size(4096)&_pragma=journal_mode("+journal+")")
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(1)
			for i, m := range migrations {
				if _, err := db.Exec(m); err != nil {
					t.Fatalf("migration %d: %v", i+1, err)
				}
			}
			if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if size, mode := pragmas(t, path); size != 4096 || mode != journal {
				t.Fatalf("setup: page size %d, mode %q", size, mode)
			}
			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Append(ctx, capture("a", "w1", Captured, "x")); err != nil {
				t.Fatal(err)
			}
			if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Captures != 1 {
				t.Fatalf("verify = %+v, %v", r, err)
			}
			s.Close()
			if size, mode := pragmas(t, path); size != 4096 || mode != "wal" {
				t.Fatalf("after Open: page size %d, journal mode %q; want 4096, wal", size, mode)
			}
		})
	}
}

func TestAppendVerifyAndDedup(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	recs := []Record{
		capture("a", "w1", Captured, "name: SEO Agent\n"),
		capture("a", "w2", Captured, "name: SEO Agent\n"),
		capture("b", "w3", Gone, ""),
		&Listing{Tenant: "a", At: time.Now(), Outcome: Listed, Rows: []workspace.Row{{ID: "w1"}}},
	}
	if err := s.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	r, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Captures != 3 || r.Listings != 1 || r.Contents != 1 {
		t.Fatalf("verify = %+v", r)
	}
	keys, err := s.CapturedKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !keys[Key{"a", "w1"}] || keys[Key{"b", "w3"}] {
		t.Fatalf("captured keys = %v", keys)
	}
	c, err := s.CaptureByID(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Content(ctx, c.SHA256)
	if err != nil || string(b) != "name: SEO Agent\n" {
		t.Fatalf("content = %q, %v", b, err)
	}
	if c.Row.Name != "n-w1" || c.Provenance["size"] != "1" {
		t.Fatalf("capture read back = %+v", c)
	}
}

func TestDatabaseRefusesUpdateAndDelete(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	if err := s.Append(ctx, capture("a", "w1", Captured, "x"), &Listing{Tenant: "a", Outcome: Listed}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"UPDATE captures SET outcome = 'failed'",
		"DELETE FROM captures",
		"UPDATE content SET bytes = x'00'",
		"DELETE FROM content",
		"UPDATE listings SET reason = 'x'",
		"DELETE FROM listings",
	} {
		if _, err := s.DB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want append-only refusal", q, err)
		}
	}
}

// tamper opens the store's file with a raw SQLite connection, as an attacker
// or a careless operator would, and runs statements with the triggers gone.
func tamper(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name  string
		stmts []string
		want  string // a regular expression
	}{
		{"content byte", []string{"DROP TRIGGER content_no_update",
			"UPDATE content SET bytes = CAST('name: Evil Agent' AS BLOB) WHERE sha256 = (SELECT sha256 FROM captures WHERE id = 2)"},
			regexp.QuoteMeta("capture 2 (tenant a, workspace w2)")},
		{"capture field", []string{"DROP TRIGGER captures_no_update", "UPDATE captures SET target = 'elsewhere' WHERE id = 3"},
			regexp.QuoteMeta("capture 3 (tenant a, workspace w3): record was altered")},
		{"deleted capture", []string{"DROP TRIGGER captures_no_delete", "DELETE FROM captures WHERE id = 2"},
			regexp.QuoteMeta("capture 3 (tenant a, workspace w3): ids jump")},
		{"deleted newest capture, triggers restored", []string{"DROP TRIGGER captures_no_delete", "DELETE FROM captures WHERE id = 3",
			triggerSQL("captures", "DELETE")},
			regexp.QuoteMeta("cited by no capture")},
		{"listing", []string{"DROP TRIGGER listings_no_update", "UPDATE listings SET rows = '[]'"},
			regexp.QuoteMeta("listing 1 (tenant a): record was altered")},
		{"deleted content", []string{"DROP TRIGGER content_no_delete",
			"DELETE FROM content WHERE sha256 = (SELECT sha256 FROM captures WHERE id = 2)"},
			regexp.QuoteMeta("capture 2 (tenant a, workspace w2): content ") + "[0-9a-f]{64} is missing"},
		{"content size", []string{"DROP TRIGGER content_no_update",
			"UPDATE content SET size = 99 WHERE sha256 = (SELECT sha256 FROM captures WHERE id = 3)"},
			regexp.QuoteMeta("capture 3 (tenant a, workspace w3): content ") + "[0-9a-f]{64} is 5 bytes, recorded as 99"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTemp(t)
			ctx := context.Background()
			err := s.Append(ctx, capture("a", "w1", Captured, "one"), capture("a", "w2", Captured, "two"),
				capture("a", "w3", Captured, "three"), &Listing{Tenant: "a", Outcome: Listed, Rows: []workspace.Row{{ID: "w1"}}})
			if err != nil {
				t.Fatal(err)
			}
			tamper(t, s.Path(), tc.stmts...)
			r, err := s.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() {
				t.Fatal("verify passed a tampered store")
			}
			if !regexp.MustCompile(tc.want).MatchString(strings.Join(r.Problems, "\n")) {
				t.Fatalf("problems = %q, want one matching %q", r.Problems, tc.want)
			}
		})
	}
}

// The content walk and the captures' chain walk read the store at once, each
// in its own snapshot: a capture appended between them must not look like
// missing content, or like content whose capture was deleted.
func TestVerifySettlesWalksThatSawDifferentSnapshots(t *testing.T) {
	ctx := context.Background()
	for _, contentFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("content walk first %v", contentFirst), func(t *testing.T) {
			s := openTemp(t)
			if err := s.Append(ctx, capture("a", "w1", Captured, "one")); err != nil {
				t.Fatal(err)
			}
			r := &VerifyReport{}
			cw := &contentWalk{bad: map[string]string{}, stored: map[string]bool{}}
			var cited map[string]bool
			walk := func(content bool) {
				var err error
				if content {
					err = s.verifyContent(ctx, cw)
				} else {
					cited, err = s.verifyCaptures(ctx, r)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			walk(contentFirst)
			if err := s.Append(ctx, capture("a", "w2", Captured, "two")); err != nil {
				t.Fatal(err)
			}
			walk(!contentFirst)
			if err := s.settleContent(ctx, r, cw, cited); err != nil {
				t.Fatal(err)
			}
			if !r.OK() {
				t.Fatalf("problems = %q, want none", r.Problems)
			}
		})
	}
	// Content appended after the content walk is still checked.
	s := openTemp(t)
	r := &VerifyReport{}
	cw := &contentWalk{bad: map[string]string{}, stored: map[string]bool{}}
	if err := s.verifyContent(ctx, cw); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, capture("a", "w1", Captured, "one")); err != nil {
		t.Fatal(err)
	}
	tamper(t, s.Path(), "DROP TRIGGER content_no_update", "UPDATE content SET bytes = CAST('evil' AS BLOB)")
	cited, err := s.verifyCaptures(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.settleContent(ctx, r, cw, cited); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Problems, "\n"); !strings.Contains(got, "capture 1 (tenant a, workspace w1): content stored under sha256") {
		t.Fatalf("problems = %q, want capture 1's content named", r.Problems)
	}
}

// A walk that cannot read its table fails verify with its own error, not
// with the other walk's cancellation.
func TestVerifyReportsTheWalkThatFailed(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	var recs []Record
	// Enough captures that the chain walk is still going when the content
	// walk fails on its first row.
	for i := range 5000 {
		recs = append(recs, capture("a", fmt.Sprintf("w%04d", i), Captured, fmt.Sprintf("content %d", i)))
	}
	if err := s.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	tamper(t, s.Path(), "DROP TRIGGER content_no_update", "UPDATE content SET size = 'many' WHERE rowid = 1")
	_, err := s.Verify(ctx)
	if err == nil || errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `"size"`) {
		t.Fatalf("verify of a store whose content cannot be read: %v, want the content walk's error", err)
	}
}

func TestWriterBatchesConcurrentWrites(t *testing.T) {
	s := openTemp(t)
	w := s.NewWriter()
	var wg sync.WaitGroup
	errs := make(chan error, 2000)
	for i := 0; i < 2000; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- w.Write(capture("t", fmt.Sprintf("w%04d", i), Captured, fmt.Sprintf("content %d", i%10)))
		}(i)
	}
	wg.Wait()
	w.Close()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Captures != 2000 || r.Contents != 10 {
		t.Fatalf("verify = %+v", r)
	}
}

func TestTwoProcessesAppendToOneChain(t *testing.T) {
	// Two Store handles on one file stand in for two processes: SQLite's
	// own locking serialises them and the chain stays valid.
	s1 := openTemp(t)
	s2, err := Open(context.Background(), s1.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var wg sync.WaitGroup
	for _, s := range []*Store{s1, s2} {
		wg.Add(1)
		go func(s *Store) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := s.Append(context.Background(), capture("t", fmt.Sprintf("w%d", i), Captured, "x")); err != nil {
					t.Error(err)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	r, err := s1.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Captures != 100 {
		t.Fatalf("verify = %+v", r)
	}
}

func TestLockIsExclusive(t *testing.T) {
	s1 := openTemp(t)
	if err := s1.Lock(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(context.Background(), s1.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Lock(); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	s1.Close()
	if err := s2.Lock(); err != nil {
		t.Fatalf("lock after release: %v", err)
	}
}

func TestOpenRefusesForeignOrNewerFiles(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.db")
	tamper(t, foreign, "CREATE TABLE t (x)")
	if _, err := Open(context.Background(), foreign); err == nil || !strings.Contains(err.Error(), "not a backfill evidence store") {
		t.Errorf("foreign db: %v", err)
	}
	newer := filepath.Join(dir, "newer.db")
	tamper(t, newer, "PRAGMA user_version = 99")
	if _, err := Open(context.Background(), newer); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("newer db: %v", err)
	}
	text := filepath.Join(dir, "text.db")
	os.WriteFile(text, []byte("this is not sqlite, just some text that is long enough to have a header......"), 0o600)
	if _, err := Open(context.Background(), text); err == nil {
		t.Errorf("text file opened as a store")
	}
	if _, err := OpenExisting(context.Background(), filepath.Join(dir, "missing.db")); err == nil {
		t.Errorf("OpenExisting created a missing store")
	}
}

func TestWorkspacesSummary(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	err := s.Append(ctx,
		&Listing{Tenant: "a", Outcome: Listed, Rows: []workspace.Row{{ID: "w1", Name: "one"}, {ID: "w2", Name: "two"}, {ID: "w9", Name: "never"}}},
		capture("a", "w1", Failed, ""),
		capture("a", "w1", Captured, "first"),
		capture("a", "w1", Captured, "second"),
		capture("a", "w2", Gone, ""),
	)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := s.Workspaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 3 {
		t.Fatalf("got %d workspaces", len(ws))
	}
	w1, w2, w9 := ws[0], ws[1], ws[2]
	if w1.Attempts != 3 || w1.Earliest == nil || w1.Earliest.ID != 2 || w1.LatestOutcome != Captured {
		t.Errorf("w1 = %+v", w1)
	}
	if w2.Earliest != nil || w2.LatestOutcome != Gone || !w2.Listed {
		t.Errorf("w2 = %+v", w2)
	}
	if w9.Attempts != 0 || w9.LatestOutcome != "" || w9.Row.Name != "never" {
		t.Errorf("w9 = %+v", w9)
	}
}

// An empty config.yaml is evidence like any other: it survives a merge and
// reads back as empty, not as missing.
func TestMergeKeepsAnEmptyCapture(t *testing.T) {
	ctx := context.Background()
	in := openTemp(t)
	if err := in.Append(ctx, capture("a", "w1", Captured, ""), capture("a", "w2", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	out, err := Open(ctx, filepath.Join(t.TempDir(), "out.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := mergeStores(ctx, out, time.Now(), MergeOptions{}, in); err != nil {
		t.Fatalf("merge: %v", err)
	}
	if rep, err := out.Verify(ctx); err != nil || !rep.OK() {
		t.Fatalf("verify after merge: %+v %v", rep, err)
	}
	b, err := out.Content(ctx, SHA256Hex(nil))
	if err != nil || b == nil || len(b) != 0 {
		t.Fatalf("empty content: %q (nil %v) %v", b, b == nil, err)
	}
}

// The writer's connection has its own, larger page cache while it writes,
// and goes back to the pool with the pool's.
func TestWriterCacheIsItsOwn(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	s.db.SetMaxOpenConns(1) // the writer's connection is the one the pool hands out after
	cacheSize := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		t.Helper()
		var n int
		if err := q.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	pool := cacheSize(s.db)
	if pool == -writerCacheKiB {
		t.Fatalf("the pool's cache_size is already the writer's (%d): nothing to tell apart", pool)
	}
	w := s.NewWriter()
	if err := w.Write(capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	if got := cacheSize(w.conn); got != -writerCacheKiB {
		t.Errorf("writer's cache_size = %d, want %d", got, -writerCacheKiB)
	}
	w.Close()
	if got := cacheSize(s.db); got != pool {
		t.Errorf("after Close the pool's cache_size = %d, want %d as before", got, pool)
	}
}

// A connection whose ROLLBACK failed may still be in a transaction: the
// writer does not give it back to the pool, where the next BEGIN would fail.
// A trigger that says RAISE(ROLLBACK) ends the transaction itself, so the
// writer's own ROLLBACK fails.
func TestWriterDropsAConnectionWhoseRollbackFailed(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	tamper(t, s.Path(), `CREATE TRIGGER boom BEFORE INSERT ON captures WHEN NEW.tenant = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END`)
	s.db.SetMaxOpenConns(1) // the writer takes the connection the mark is on
	if _, err := s.db.ExecContext(ctx, "CREATE TEMP TABLE mark (x)"); err != nil {
		t.Fatal(err)
	}
	marked := func() bool {
		t.Helper()
		var n int
		if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM temp.sqlite_master WHERE name = 'mark'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	w := s.NewWriter()
	if err := w.Write(capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if !marked() {
		t.Fatal("a writer whose batches all committed did not give its connection back")
	}
	w = s.NewWriter()
	if err := w.Write(capture("boom", "w2", Captured, "y")); err == nil {
		t.Fatal("the capture was stored through a trigger that rolls back")
	}
	w.Close()
	if marked() {
		t.Error("the connection whose ROLLBACK failed went back to the pool")
	}
	if _, err := s.db.ExecContext(ctx, "BEGIN IMMEDIATE; ROLLBACK"); err != nil {
		t.Errorf("the pool's connection: %v", err)
	}
}

// A Write (snapshot's tenant listing) goes ahead of every record Submitted
// before it and is committed in a batch of its own: it never waits for a
// queue of captures.
func TestWriterWritesGoFirst(t *testing.T) {
	s := openTemp(t)
	// Queue before the writer goroutine starts, so the order it finds is known.
	w := &Writer{s: s, urgent: make(chan writeReq, 64), reqs: make(chan writeReq, maxBatch), done: make(chan struct{}),
		stmts: map[string]*sql.Stmt{}, known: map[contentKey]struct{}{}}
	var order []string // appended from the writer goroutine only
	for i := 0; i < 300; i++ {
		w.reqs <- writeReq{rec: capture("t", fmt.Sprintf("w%03d", i), Captured, "x"), done: func(err error) {
			if err != nil {
				t.Error(err)
			}
			order = append(order, "capture")
		}}
	}
	listed := make(chan error, 1)
	w.urgent <- writeReq{rec: &Listing{Tenant: "t", Outcome: Listed}, done: func(err error) {
		order = append(order, "listing")
		listed <- err
	}}
	go w.loop()
	if err := <-listed; err != nil {
		t.Fatal(err)
	}
	w.Close()
	if len(order) != 301 || order[0] != "listing" {
		t.Fatalf("commit order starts %v (%d records), want the listing first", order[:min(3, len(order))], len(order))
	}
	var captures int
	if err := s.DB().QueryRow("SELECT count(*) FROM captures").Scan(&captures); err != nil || captures != 300 {
		t.Fatalf("captures = %d, %v", captures, err)
	}
}

// The writer remembers content it has committed and does not insert or
// read it again; content it has not seen is still inserted and checked, so
// a trigger that discards it is still caught, and content stored by an
// earlier run is still found.
func TestWriterContentDedupStillCatchesADroppedInsert(t *testing.T) {
	s := openTemp(t)
	if err := s.Append(context.Background(), capture("a", "w0", Captured, "earlier run")); err != nil {
		t.Fatal(err)
	}
	w := s.NewWriter()
	defer w.Close()
	if err := w.Write(capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	tamper(t, s.Path(), "CREATE TRIGGER drop_content BEFORE INSERT ON content BEGIN SELECT RAISE(IGNORE); END")
	if err := w.Write(capture("a", "w2", Captured, "x")); err != nil {
		t.Fatalf("content this writer committed: %v", err)
	}
	if err := w.Write(capture("a", "w3", Captured, "earlier run")); err != nil {
		t.Fatalf("content an earlier run committed: %v", err)
	}
	err := w.Write(capture("a", "w4", Captured, "new bytes"))
	if err == nil || !strings.Contains(err.Error(), "insert into content was dropped") {
		t.Fatalf("new content with the trigger in place: %v", err)
	}
	// A batch that failed stores nothing, and its content is not taken as known.
	tamper(t, s.Path(), "DROP TRIGGER drop_content")
	if err := w.Write(capture("a", "w5", Captured, "new bytes")); err != nil {
		t.Fatal(err)
	}
	r, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Captures != 5 || r.Contents != 3 {
		t.Fatalf("verify = %+v", r)
	}
}

// TestAppendManyWriters appends from as many goroutines at once as apply's
// tenant concurrency: every append must succeed. SQLite's own busy wait is
// no queue (a waiting writer polls and can lose to newer ones until its
// timeout), so in-process writers take turns before they reach it.
func TestAppendManyWriters(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	const writers, each = 256, 4
	errs := make(chan error, writers*each)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range each {
				errs <- s.Append(context.Background(), &Entry{Fingerprint: "sha256:x", Operation: OpApply, Operator: "op",
					Tenant: fmt.Sprintf("t%03d", i), WorkspaceID: fmt.Sprintf("w%d", j), Outcome: "applied", At: time.Now()})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.DB().QueryRow("SELECT count(*) FROM journal").Scan(&n); err != nil || n != writers*each {
		t.Fatalf("journal holds %d entries (%v), want %d", n, err, writers*each)
	}
}

// TestGroupCommitSharesAndIsolates: calls made while a commit runs share the
// next transaction, and a call whose records fail is retried alone so the
// calls it shared a transaction with still commit.
func TestGroupCommitSharesAndIsolates(t *testing.T) {
	t.Parallel()
	var g groupCommit
	first := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var commits [][]Record
	bad := &Entry{Reason: "bad"}
	commit := func(recs []Record) error {
		mu.Lock()
		commits = append(commits, recs)
		n := len(commits)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-release
		}
		for _, r := range recs {
			if r == bad {
				return errors.New("refused")
			}
		}
		return nil
	}
	errs := make(chan error, 1)
	go func() { errs <- g.do([]Record{&Entry{}}, commit) }()
	<-first // the first call's commit is running: the next calls queue
	const waiting = 5
	results := make([]chan error, waiting)
	for i := range results {
		results[i] = make(chan error, 1)
		rec := Record(&Entry{})
		if i == 2 {
			rec = bad
		}
		go func() { results[i] <- g.do([]Record{rec}, commit) }()
	}
	// Every call is queued before the first commit ends.
	for {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == waiting {
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	for i, c := range results {
		err := <-c
		if (i == 2) != (err != nil) {
			t.Errorf("call %d: %v", i, err)
		}
	}
	// One commit for the first call, one shared by the five (it failed),
	// then each of the five alone.
	if len(commits) != 2+waiting || len(commits[1]) != waiting {
		t.Fatalf("commits of %v records, want 1, %d, then 1 each", lens(commits), waiting)
	}
}

func lens(c [][]Record) []int {
	var n []int
	for _, r := range c {
		n = append(n, len(r))
	}
	return n
}

// Writes waiting together are committed together: listings of many tenants
// made at once cost one fsync, not one each, and none waits behind the
// Submitted captures.
func TestWriterCommitsWaitingWritesTogether(t *testing.T) {
	s := openTemp(t)
	w := &Writer{s: s, urgent: make(chan writeReq, 64), reqs: make(chan writeReq, maxBatch), done: make(chan struct{}),
		stmts: map[string]*sql.Stmt{}, known: map[contentKey]struct{}{}}
	for i := range 100 {
		w.reqs <- writeReq{rec: capture("t", fmt.Sprintf("w%03d", i), Captured, "x"), done: func(err error) {
			if err != nil {
				t.Error(err)
			}
		}}
	}
	var listed []int // appended from the writer goroutine only
	for i := range 50 {
		w.urgent <- writeReq{rec: &Listing{Tenant: fmt.Sprintf("t%02d", i), Outcome: Listed}, done: func(err error) {
			if err != nil {
				t.Error(err)
			}
			listed = append(listed, w.commits)
		}}
	}
	go w.loop()
	w.Close()
	if len(listed) != 50 || listed[0] != 1 || listed[49] != 1 {
		t.Fatalf("50 waiting listings committed in commits %v, want all in the first", listed)
	}
	r, err := s.Verify(context.Background())
	if err != nil || !r.OK() || r.Captures != 100 || r.Listings != 50 {
		t.Fatalf("verify = %+v %v", r, err)
	}
}

// Backfills started at once on the same new store all open it: migrating
// reads the schema version again under the write lock, so steps another
// process made are not made twice.
func TestOpenSameNewStoreAtOnce(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 10; round++ {
		path := filepath.Join(t.TempDir(), "evidence.db")
		const n = 8
		errs := make(chan error, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			go func() {
				<-start
				s, err := Open(ctx, path)
				if err == nil {
					err = s.Append(ctx, capture("a", fmt.Sprintf("w%d", i), Captured, "x"))
					s.Close()
				}
				errs <- err
			}()
		}
		close(start)
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if size, mode := pragmas(t, path); size != pageSize || mode != "wal" {
			t.Fatalf("round %d: page size %d, journal mode %q", round, size, mode)
		}
	}
}

// AllContents reads every content once, an empty one as empty; Citations
// names the tenant and content of each capture with content up to an id,
// in recording order.
func TestAllContentsAndCitations(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	err := s.Append(ctx, capture("a", "w1", Captured, "x"), capture("b", "w2", Captured, ""), capture("a", "w3", Failed, ""),
		capture("b", "w4", Captured, "x"), capture("a", "w5", Captured, "y"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err = s.AllContents(ctx, func(sha string, b []byte) error {
		if b == nil {
			t.Errorf("content %s read as nil", sha)
		}
		got[sha] = string(b)
		return nil
	})
	want := map[string]string{SHA256Hex([]byte("x")): "x", SHA256Hex(nil): "", SHA256Hex([]byte("y")): "y"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("contents %q, %v; want %q", got, err, want)
	}
	var cites []string
	err = s.Citations(ctx, 4, func(tenant, sha string) error {
		cites = append(cites, tenant+" "+sha)
		return nil
	})
	wantCites := []string{"a " + SHA256Hex([]byte("x")), "b " + SHA256Hex(nil), "b " + SHA256Hex([]byte("x"))}
	if err != nil || !slices.Equal(cites, wantCites) {
		t.Fatalf("citations %q, %v; want %q", cites, err, wantCites)
	}
}
