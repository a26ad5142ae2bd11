package evidence

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// v7Store writes a store at schema version 7, content in its WITHOUT ROWID
// table: 200 captures of 54 distinct configs of 2 KiB and more (so their
// bytes overflow b-tree cells), some failed, and one content row no capture
// cites, planted with the triggers bypassed as tampering would.
func v7Store(t *testing.T) (path string, contents map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	db, path := migratedTo(t, "v7.db", 7)
	defer db.Close()
	contents = map[string][]byte{}
	var recs []Record
	for i := 0; i < 200; i++ {
		ws := fmt.Sprintf("w%03d", i)
		if i%10 == 9 {
			recs = append(recs, capture("acme", ws, Failed, ""))
			continue
		}
		body := fmt.Sprintf("name: agent %d\n", i%60) + strings.Repeat("# pad\n", 340+i%60)
		contents[SHA256Hex([]byte(body))] = []byte(body)
		recs = append(recs, capture("acme", ws, Captured, body))
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := appendTx(ctx, tx, recs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	orphan := []byte("name: nobody cites this\n")
	contents[SHA256Hex(orphan)] = orphan
	if _, err := db.Exec("INSERT INTO content (sha256, size, bytes) VALUES (?, ?, ?)", SHA256Hex(orphan), len(orphan), orphan); err != nil {
		t.Fatal(err)
	}
	return path, contents
}

// Migration 8 moves content to a rowid table: every byte, every capture's
// hash and the chain head survive; the schema is exactly what the
// migrations make on an empty store (so captures' foreign key still names
// content); the append-only triggers and the foreign key hold afterwards;
// verify reports the same problems (the planted orphan) before and after.
func TestMigration8KeepsEveryByteAndTheChain(t *testing.T) {
	ctx := context.Background()
	path, contents := v7Store(t)

	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := ro.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	if before.Captures != 200 || before.Contents != len(contents) || len(before.Problems) != 1 || !strings.Contains(before.Problems[0], "cited by no capture") {
		t.Fatalf("the v7 store before migration: %+v", before)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	if err := s.DB().QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("user_version = %d %v, want %d", v, err, len(migrations))
	}
	after, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Captures != before.Captures || after.Contents != before.Contents || after.ChainHead != before.ChainHead ||
		fmt.Sprint(after.Problems) != fmt.Sprint(before.Problems) {
		t.Fatalf("verify after migration: %+v\nbefore: %+v", after, before)
	}
	rows, err := s.DB().QueryContext(ctx, "SELECT sha256, size, bytes FROM content")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var sha string
		var size int
		var b []byte
		if err := rows.Scan(&sha, &size, &b); err != nil {
			t.Fatal(err)
		}
		if want, ok := contents[sha]; !ok || string(b) != string(want) || size != len(want) {
			t.Errorf("content %s: %d bytes, size %d, known %v", sha, len(b), size, ok)
		}
		n++
	}
	if err := rows.Err(); err != nil || n != len(contents) {
		t.Fatalf("%d content rows, want %d (%v)", n, len(contents), err)
	}
	var fk string
	if err := s.DB().QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE name = 'captures'").Scan(&fk); err != nil ||
		!strings.Contains(fk, "REFERENCES content (sha256)") {
		t.Fatalf("captures' foreign key after migration: %q %v", fk, err)
	}
	for _, q := range []string{"UPDATE content SET size = 0", "DELETE FROM content"} {
		if _, err := s.DB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s after migration: %v, want the append-only refusal", q, err)
		}
	}
	// Foreign keys are on again in every pooled connection: a capture citing
	// content that is not there is refused.
	for i := 0; i < 3; i++ {
		_, err := s.DB().ExecContext(ctx, `INSERT INTO captures (id, tenant, workspace_id, db_row, method, target, started_at, ended_at, attempt,
  outcome, reason, sha256, size, provenance, prev_hash, hash) VALUES (1000, 'x', 'y', '{}', 'file', 't', 'a', 'a', 1, 'captured', '', 'nosuch', 1, '{}', '', '')`)
		if err == nil || !strings.Contains(err.Error(), "FOREIGN KEY") {
			t.Fatalf("a capture citing missing content: %v", err)
		}
	}
	// New captures dedupe against migrated content and chain on. The
	// content is one a capture cites: re-citing the planted orphan would
	// make it no orphan.
	var sha string
	if err := s.DB().QueryRowContext(ctx, "SELECT sha256 FROM captures WHERE sha256 IS NOT NULL ORDER BY id LIMIT 1").Scan(&sha); err != nil {
		t.Fatal(err)
	}
	again := capture("acme", "w900", Captured, string(contents[sha]))
	fresh := capture("acme", "w901", Captured, "name: new after migration\n"+strings.Repeat("# pad\n", 400))
	if err := s.Append(ctx, again, fresh); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Verify(ctx); err != nil || r.Captures != 202 || r.Contents != len(contents)+1 || len(r.Problems) != 1 {
		t.Fatalf("verify after appending: %+v %v", r, err)
	}
	if got, err := s.Content(ctx, again.SHA256); err != nil || string(got) != string(contents[sha]) {
		t.Fatalf("content read back: %v", err)
	}
}
