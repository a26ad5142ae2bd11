package evidence

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"backfill/internal/source"
)

// v5Store writes a store the way backfill did before migration 6: schema
// version 5, two listings' worth of captures (one with content, one gone),
// hashed with the formula of the time written out here, so the test proves
// old rows still hash as they did after the table is rebuilt.
func v5Store(t *testing.T) string {
	t.Helper()
	db, path := migratedTo(t, "v5.db", 5)
	defer db.Close()
	at := formatTime(oldAt)
	content := "name: SEO Agent\n"
	sha := SHA256Hex([]byte(content))
	if _, err := db.Exec("INSERT INTO content (sha256, size, bytes) VALUES (?, ?, ?)", sha, len(content), []byte(content)); err != nil {
		t.Fatal(err)
	}
	prev := ""
	for i, c := range []struct {
		ws, method, outcome, reason string
		sha                         sql.NullString
		size                        int64
	}{
		{"w1", "http", "captured", "", sql.NullString{String: sha, Valid: true}, int64(len(content))},
		{"w2", "exec", "gone", "No such container: ws-w2", sql.NullString{}, 0},
		{"w3", "file", "captured", "", sql.NullString{String: sha, Valid: true}, int64(len(content))},
	} {
		id := int64(i + 1)
		row := `{"id":"` + c.ws + `"}`
		h := chainHash("captures", prev, id, "acme", c.ws, row, c.method, "t", at, at, 1, c.outcome, c.reason, c.sha.String, c.size, "{}")
		_, err := db.Exec(`INSERT INTO captures (id, tenant, workspace_id, db_row, method, target, started_at, ended_at, attempt, outcome,
  reason, sha256, size, provenance, prev_hash, hash) VALUES (?, 'acme', ?, ?, ?, 't', ?, ?, 1, ?, ?, ?, ?, '{}', ?, ?)`,
			id, c.ws, row, c.method, at, at, c.outcome, c.reason, c.sha, c.size, prev, h)
		if err != nil {
			t.Fatal(err)
		}
		prev = h
	}
	return path
}

// A version 5 store migrates to version 6 keeping every capture, its id and
// hash, the index and the append-only triggers; it verifies before and
// after, and new captures with a source chain on.
func TestMigration6KeepsEveryCaptureAndVerifies(t *testing.T) {
	ctx := context.Background()
	path := v5Store(t)

	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ro.Verify(ctx); err != nil || !r.OK() || r.Captures != 3 {
		t.Fatalf("verify the v5 store read-only: %+v %v", r, err)
	}
	before := map[int64]string{}
	err = ro.Captures(ctx, func(c *Capture) error {
		before[c.ID] = c.Hash
		if c.Source != "" {
			t.Errorf("capture %d of a v5 store has source %q", c.ID, c.Source)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := ro.CapturedKeys(ctx); err != nil || len(keys) != 2 {
		t.Fatalf("captured keys of a v5 store: %v %v", keys, err)
	}
	ro.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	// Open runs every later migration too.
	if err := s.DB().QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("user_version = %d %v, want %d", v, err, len(migrations))
	}
	r, err := s.Verify(ctx)
	if err != nil || !r.OK() || r.Captures != 3 {
		t.Fatalf("verify after migration: %+v %v", r, err)
	}
	var classes []string
	err = s.Captures(ctx, func(c *Capture) error {
		if before[c.ID] != c.Hash {
			t.Errorf("capture %d: hash %s, was %s", c.ID, c.Hash, before[c.ID])
		}
		classes = append(classes, c.SourceClass())
		return nil
	})
	if err != nil || strings.Join(classes, ",") != "unverified,exec,file" {
		t.Fatalf("source classes of old captures: %v %v", classes, err)
	}
	for _, q := range []string{"UPDATE captures SET reason = 'x' WHERE id = 1", "DELETE FROM captures WHERE id = 3"} {
		if _, err := s.DB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s after migration: %v, want the append-only refusal", q, err)
		}
	}
	var plan string
	if err := s.DB().QueryRowContext(ctx, "EXPLAIN QUERY PLAN SELECT id FROM captures WHERE tenant = 'acme' AND workspace_id = 'w1'").Scan(new(int), new(int), new(int), &plan); err != nil || !strings.Contains(plan, "captures_workspace") {
		t.Errorf("query plan %q %v: the index is not used", plan, err)
	}

	live := capture("acme", "w4", Captured, "name: Hermes\n")
	live.Source = source.Container
	notLive := capture("acme", "w5", NotLive, "")
	notLive.Content, notLive.Source = []byte("name: SEO Agent\n"), source.TemplateDir
	notRunning := capture("acme", "w6", NotRunning, "")
	notRunning.Source = source.Exec
	if err := s.Append(ctx, live, notLive, notRunning); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Captures != 6 || r.Contents != 2 {
		t.Fatalf("verify after appending: %+v %v", r, err)
	}
	if notLive.SHA256 != SHA256Hex([]byte("name: SEO Agent\n")) {
		t.Errorf("a not-live capture's bytes are not kept: sha %q", notLive.SHA256)
	}
	keys, err := s.CapturedKeys(ctx)
	if err != nil || len(keys) != 3 || keys[Key{"acme", "w5"}] || keys[Key{"acme", "w6"}] {
		t.Fatalf("captured keys: %v %v (not-live and not-running are not captured)", keys, err)
	}
	ws, err := s.Workspaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if (w.Earliest != nil) != keys[w.Key] {
			t.Errorf("workspace %s: earliest %+v, captured %v", w.WorkspaceID, w.Earliest, keys[w.Key])
		}
	}

	// A second open does not migrate again; a version 6 store re-read
	// read-only sees the sources.
	s2, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	c, err := s2.CaptureByID(ctx, 5)
	if err != nil || c.Source != source.TemplateDir || c.Outcome != NotLive || c.IsEvidence() {
		t.Fatalf("capture 5 read back: %+v %v", c, err)
	}
}

// The chain covers the source column: set, changed or cleared, verify sees it.
func TestVerifyCoversTheSource(t *testing.T) {
	for _, q := range []string{
		"UPDATE captures SET source = 'container' WHERE id = 2",
		"UPDATE captures SET source = NULL WHERE id = 1",
		"UPDATE captures SET source = 'host-mirror' WHERE id = 1",
		"UPDATE captures SET outcome = 'captured' WHERE id = 2",
	} {
		t.Run(q, func(t *testing.T) {
			s := openTemp(t)
			ctx := context.Background()
			a := capture("t", "w1", Captured, "x")
			a.Source = source.Container
			b := capture("t", "w2", NotLive, "")
			b.Content, b.Source = []byte("y"), source.TemplateDir
			if err := s.Append(ctx, a, b); err != nil {
				t.Fatal(err)
			}
			tamper(t, s.Path(), "DROP TRIGGER captures_no_update", q, triggerSQL("captures", "UPDATE"))
			r, err := s.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(fmt.Sprint(r.Problems), "record was altered") {
				t.Fatalf("problems = %q", r.Problems)
			}
		})
	}
}

// The outcome check still refuses what no version allows.
func TestCaptureOutcomeChecked(t *testing.T) {
	s := openTemp(t)
	if err := s.Append(context.Background(), capture("t", "w1", "maybe", "")); err == nil || !strings.Contains(err.Error(), "CHECK") {
		t.Fatalf("outcome maybe: %v", err)
	}
}

// A store from before schema 6 (no source column) is read as it is by
// inspect's query, as by verify and export.
func TestCapturesOfReadsAStoreOlderThanSources(t *testing.T) {
	ctx := context.Background()
	s, err := OpenReadOnly(ctx, v5Store(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cs, err := s.CapturesOf(ctx, "w1")
	if err != nil || len(cs) != 1 || cs[0].Outcome != Captured || cs[0].Source != "" {
		t.Fatalf("CapturesOf on a v5 store: %+v %v", cs, err)
	}
}
