package evidence

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"
)

// doctorIndex drops index name and makes it again as def (a partial index
// that leaves rows out), then puts its original text back in sqlite_master,
// so that the schema reads as backfill made it while the index lacks rows:
// what someone with write access to the file can do.
func doctorIndex(t *testing.T, path, name, def string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var orig string
	if err := db.QueryRow("SELECT sql FROM sqlite_master WHERE name = ?", name).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"DROP INDEX " + name, def, "PRAGMA writable_schema = ON"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.Exec("UPDATE sqlite_master SET sql = ? WHERE name = ?", orig, name); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA writable_schema = OFF"); err != nil {
		t.Fatal(err)
	}
}

// An index made again without some rows, its text put back, hides them
// from every read through it (a workspace's later capture, a tenant's
// failed listing) while the schema and every chain still verify: verify
// must name it, from SQLite's own check.
func TestVerifyNamesAnIndexThatLeavesRowsOut(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ index, def string }{
		{"captures_workspace", "CREATE INDEX captures_workspace ON captures (tenant, workspace_id, id) WHERE id <> 2"},
		{"listings_tenant", "CREATE INDEX listings_tenant ON listings (tenant, id) WHERE outcome = 'listed'"},
	} {
		t.Run(c.index, func(t *testing.T) {
			s := openTemp(t)
			at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			if err := s.Append(ctx, &Listing{Tenant: "a", At: at, Outcome: Listed}, capture("a", "w1", Captured, "x"), capture("a", "w1", Captured, "y"),
				&Listing{Tenant: "a", At: at.Add(time.Minute), Outcome: Unreachable, Reason: "connection refused"}); err != nil {
				t.Fatal(err)
			}
			before, err := s.Verify(ctx)
			if err != nil || !before.OK() {
				t.Fatalf("before: %+v %v", before, err)
			}
			path := s.Path()
			s.Close()
			doctorIndex(t, path, c.index, c.def)
			s, err = OpenReadOnly(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rep, err := s.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || !strings.Contains(rep.Problems[0], "integrity_check") || !strings.Contains(rep.Problems[0], c.index) {
				t.Fatalf("a doctored %s verifies: %q", c.index, rep.Problems)
			}
		})
	}
}
