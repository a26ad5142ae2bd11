package evidence

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var oldAt = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// migratedTo makes a store file name in a new temporary directory with the
// migrations up to schema version v applied and nothing in it, as a backfill
// of that version left one, open on one connection; the caller writes the
// old rows, then closes db before opening the store.
func migratedTo(t *testing.T, name string, v int) (db *sql.DB, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), name)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=foreign_keys(ON)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	// As the store migrates: with foreign keys on, SQLite would rewrite
	// captures' REFERENCES when migration 8 renames content away.
	if _, err := db.Exec("PRAGMA foreign_keys = OFF"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < v; i++ {
		if _, err := db.Exec(migrations[i]); err != nil {
			db.Close()
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d; PRAGMA foreign_keys = ON", v)); err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db, path
}

// oldStore writes a store the way backfill did before migration 5: schema
// version 4, an approval, and an apply that died at its COMMIT, whose
// committing entry names its tenant transaction only in its reason. Hashes
// are computed with the formulas of the time, written out here, so the test
// proves old rows still hash as they did.
func oldStore(t *testing.T) string {
	t.Helper()
	db, path := migratedTo(t, "old.db", 4)
	defer db.Close()
	at := formatTime(oldAt)
	ah := chainHash("approvals", "", int64(1), "sha256:0ld", "bob", "alice", at)
	stmts := []struct {
		q    string
		args []any
	}{
		{"INSERT INTO approvals (id, fingerprint, approved_by, plan_author, at, prev_hash, hash) VALUES (1, 'sha256:0ld', 'bob', 'alice', ?, '', ?)",
			[]any{at, ah}},
	}
	prev := ""
	for i, e := range []struct{ ws, outcome, reason string }{
		{"w1", "committing", "written, commit pending in transaction 7301 of system 7440012345678901234 timeline 00000002"},
		{"w2", "skipped-changed", "template changed since the plan: now \"x\"; not overwritten"},
	} {
		id := int64(i + 1)
		h := chainHash("journal", prev, id, "sha256:0ld", "apply", "carol", "acme", e.ws, "", "seo-agent", e.outcome, e.reason, at)
		stmts = append(stmts, struct {
			q    string
			args []any
		}{`INSERT INTO journal (id, fingerprint, operation, operator, tenant, workspace_id, before, after, outcome, reason, at, prev_hash, hash)
  VALUES (?, 'sha256:0ld', 'apply', 'carol', 'acme', ?, '', 'seo-agent', ?, ?, ?, ?, ?)`, []any{id, e.ws, e.outcome, e.reason, at, prev, h}})
		prev = h
	}
	for _, s := range stmts {
		if _, err := db.Exec(s.q, s.args...); err != nil {
			t.Fatalf("%s: %v", s.q, err)
		}
	}
	return path
}

// A store written before migration 5 opens, migrates, reads back, still
// verifies, and its chains go on.
func TestOldStoreMigratesAndVerifies(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, oldStore(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Approvals != 1 || r.Journal != 2 {
		t.Fatalf("verify after migration: %+v %v", r, err)
	}
	as, err := s.Approvals(ctx, "sha256:0ld")
	if err != nil || len(as) != 1 || !as[0].Legacy || as[0].Writes != 0 || as[0].Signature != "" {
		t.Fatalf("old approval: %+v %v", as, err)
	}
	es, err := s.Journal(ctx, "")
	if err != nil || len(es) != 2 || es[0].Tx != nil || !strings.Contains(es[0].Reason, "transaction 7301") {
		t.Fatalf("old journal: %+v %v", es, err)
	}
	err = s.Append(ctx,
		&Approval{Fingerprint: "sha256:new", By: "bob", PlanAuthor: "alice", Writes: 3, RollupSHA256: "abc", At: oldAt},
		&Entry{Fingerprint: "sha256:new", Operation: OpApply, Operator: "carol", Tenant: "acme", WorkspaceID: "w3",
			Outcome: "committing", Reason: "written", Tx: &TenantTx{ID: 9, SystemID: "744", Timeline: 3}, At: oldAt})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Approvals != 2 || r.Journal != 3 {
		t.Fatalf("verify after appending: %+v %v", r, err)
	}
	as, _ = s.Approvals(ctx, "sha256:new")
	if len(as) != 1 || as[0].Legacy || as[0].Writes != 3 || as[0].RollupSHA256 != "abc" || as[0].Signature != "" {
		t.Fatalf("new approval: %+v", as)
	}
	es, _ = s.Journal(ctx, "sha256:new")
	if len(es) != 1 || es[0].Tx == nil || *es[0].Tx != (TenantTx{ID: 9, SystemID: "744", Timeline: 3}) {
		t.Fatalf("new entry: %+v", es)
	}
}

// The chain hash covers the columns migration 5 added, set or not.
func TestVerifyCoversAddedColumns(t *testing.T) {
	for _, q := range []string{
		"UPDATE journal SET tx_id = 10 WHERE id = 1",
		"UPDATE journal SET system_id = NULL WHERE id = 1",
		"UPDATE journal SET timeline = 1 WHERE id = 2",
		"UPDATE approvals SET writes = 4",
		"UPDATE approvals SET rollup_sha256 = NULL",
		"UPDATE approvals SET signature = 'x'",
	} {
		t.Run(q, func(t *testing.T) {
			s := openTemp(t)
			ctx := context.Background()
			err := s.Append(ctx,
				&Approval{Fingerprint: "sha256:a", By: "bob", PlanAuthor: "alice", Writes: 3, RollupSHA256: "abc", At: oldAt},
				&Entry{Fingerprint: "sha256:a", Operation: OpApply, Tenant: "t", WorkspaceID: "w1", Outcome: "committing",
					Tx: &TenantTx{ID: 9, SystemID: "744", Timeline: 3}, At: oldAt},
				&Entry{Fingerprint: "sha256:a", Operation: OpApply, Tenant: "t", WorkspaceID: "w1", Outcome: "applied", At: oldAt})
			if err != nil {
				t.Fatal(err)
			}
			table := strings.Fields(q)[1]
			tamper(t, s.Path(), "DROP TRIGGER "+table+"_no_update", q, triggerSQL(table, "UPDATE"))
			r, err := s.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(r.Problems, "\n"), "record was altered") {
				t.Fatalf("problems = %q", r.Problems)
			}
		})
	}
}

func TestPlansKeptOnceAndFoundByPrefix(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	fp := func(hex string) string { return "sha256:" + hex + strings.Repeat("0", 64-len(hex)) }
	a, b, c := fp("abcdef0111"), fp("abcdef0122"), fp("1234567890")
	for _, p := range []struct {
		fp, author string
		b          []byte
	}{{a, "alice", []byte(`{"plan":"a"}`)}, {b, "carol", []byte(`{"plan":"b"}`)}, {c, "alice", []byte{}}, {a, "alice", []byte(`{"plan":"a"}`)}} {
		if err := s.PutPlan(ctx, p.fp, p.author, oldAt, p.b, ""); err != nil {
			t.Fatalf("put %s: %v", p.fp, err)
		}
	}
	if err := s.PutPlan(ctx, a, "alice", oldAt, []byte(`{"plan":"A"}`), ""); err == nil || !strings.Contains(err.Error(), "other bytes") {
		t.Fatalf("other bytes under a kept fingerprint: %v", err)
	}
	plans, err := s.Plans(ctx)
	if err != nil || len(plans) != 3 {
		t.Fatalf("plans = %+v %v", plans, err)
	}
	if p := plans[1]; p.ID != 2 || p.Fingerprint != b || p.Author != "carol" || !p.CreatedAt.Equal(oldAt) || p.Size != 12 {
		t.Fatalf("plan 2 = %+v", p)
	}
	for _, q := range []string{a, strings.TrimPrefix(a, "sha256:"), "abcdef011", "sha256:ABCDEF011"} {
		got, bs, err := s.PlanBytes(ctx, q)
		if err != nil || got != a || !bytes.Equal(bs, []byte(`{"plan":"a"}`)) {
			t.Errorf("PlanBytes(%q) = %s %q %v", q, got, bs, err)
		}
	}
	if got, bs, err := s.PlanBytes(ctx, "12345678"); err != nil || got != c || bs == nil || len(bs) != 0 {
		t.Errorf("empty plan: %s %q (nil %v) %v", got, bs, bs == nil, err)
	}
	for q, want := range map[string]string{
		"abcdef0":         "at least 8",
		"sha256:xyz12345": "at least 8",
		"abcdef01":        "matches 2 plans",
		"ffffffff":        "no plan kept",
	} {
		if _, _, err := s.PlanBytes(ctx, q); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("PlanBytes(%q): %v, want %q", q, err, want)
		}
	}
	if _, _, err := s.PlanBytes(ctx, "abcdef01"); err == nil || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Errorf("ambiguous prefix does not list the candidates: %v", err)
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Plans != 3 {
		t.Fatalf("verify = %+v %v", r, err)
	}
	for _, q := range []string{"UPDATE plans SET bytes = CAST('{}' AS BLOB) WHERE id = 1", "DELETE FROM plans WHERE id = 3"} {
		if _, err := s.DB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want append-only refusal", q, err)
		}
	}
	tamper(t, s.Path(), "DROP TRIGGER plans_no_update", "UPDATE plans SET bytes = CAST('{}' AS BLOB) WHERE id = 1", triggerSQL("plans", "UPDATE"))
	if _, _, err := s.PlanBytes(ctx, a); err == nil || !strings.Contains(err.Error(), "altered") {
		t.Errorf("PlanBytes of an edited plan: %v", err)
	}
	r, err := s.Verify(ctx)
	if err != nil || !strings.Contains(fmt.Sprint(r.Problems), "plan 1 ("+a+"): record was altered") {
		t.Fatalf("verify of an edited plan: %+v %v", r, err)
	}
}

// TestVerifyFindsAPlanKeptUnderAnotherFingerprint: the plans chain is
// anchored nowhere, so a store writer can keep one plan's bytes under
// another's fingerprint with every hash right; verify reads the fingerprint
// the bytes name and reports the record.
func TestVerifyFindsAPlanKeptUnderAnotherFingerprint(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	file := func(fp string) []byte {
		return fmt.Appendf(nil, "{\n  \"format_version\": 2,\n  \"fingerprint\": %q,\n  \"author\": \"alice\"\n}\n", fp)
	}
	if err := s.PutPlan(ctx, a, "alice", oldAt, file(a), ""); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() {
		t.Fatalf("verify: %+v %v", r, err)
	}
	if err := s.PutPlan(ctx, b, "alice", oldAt, file(a), ""); err != nil {
		t.Fatal(err)
	}
	r, err := s.Verify(ctx)
	if err != nil || len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "plan 2 ("+b+"): its bytes are another plan's, \""+a+"\"") {
		t.Fatalf("verify of a plan kept under another fingerprint: %+v %v", r, err)
	}
	for _, head := range []string{"{}", `{"plan":"a"}`, "{\n  \"fingerprint\": \"x\"\n}", "[1, 2, 3, 4, 5]", ""} {
		if fp := headFingerprint([]byte(head)); fp != "" {
			t.Errorf("headFingerprint(%q) = %q, want none", head, fp)
		}
	}
}
