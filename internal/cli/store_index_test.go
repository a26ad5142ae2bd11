package cli

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backfill/internal/evidence"
)

// leaveOutOfIndex makes index name of the store at path again without the
// rows where keep is false, and puts its original text back in
// sqlite_master: the schema reads as backfill made it, the index lacks rows.
func leaveOutOfIndex(t *testing.T, path, name, def string) {
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
	steps := []struct {
		q    string
		args []any
	}{{"DROP INDEX " + name, nil}, {def, nil}, {"PRAGMA writable_schema = ON", nil},
		{"UPDATE sqlite_master SET sql = ? WHERE name = ?", []any{orig, name}}, {"PRAGMA writable_schema = OFF", nil}}
	for _, s := range steps {
		if _, err := db.Exec(s.q, s.args...); err != nil {
			t.Fatalf("%s: %v", s.q, err)
		}
	}
}

// Found by review: the captures index made again without flip-flop's later
// capture (which names another template) hid it from approve's and apply's
// re-derivation, and an approved plan wrote the unstable workspace, exit 0,
// while verify and the store head saw nothing. Every gate now runs SQLite's
// integrity check with the store's own.
func TestAStoreIndexLeavingACaptureOutStopsApplyAndPlan(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	db, err := sql.Open("sqlite", f.dir+"/evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	var later string
	err = db.QueryRow("SELECT max(id) FROM captures WHERE workspace_id = ?", f.ids["flip-flop"]).Scan(&later)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	leaveOutOfIndex(t, f.dir+"/evidence.db", "captures_workspace",
		"CREATE INDEX captures_workspace ON captures (tenant, workspace_id, id) WHERE id <> "+later)

	if res := runAt(t, nil, "verify"); res.code != 1 || !strings.Contains(res.stdout, "integrity_check") || !strings.Contains(res.stdout, "captures_workspace") {
		t.Errorf("verify: %d %s%s", res.code, res.stdout, res.stderr)
	}
	res := f.apply(t, "--execute")
	if res.code != 1 || !strings.Contains(res.stderr, "integrity_check") {
		t.Errorf("apply --execute on the doctored store: %d %s%s", res.code, res.stdout, res.stderr)
	}
	for tenant, names := range agreed {
		for _, name := range append(names, "flip-flop") {
			if tenant == "concierge" && name == "flip-flop" {
				continue
			}
			if s := f.row(t, tenant, name); s.template != "" {
				t.Errorf("%s/%s written from the doctored store: %+v", tenant, name, s)
			}
		}
	}
	if res := f.plan(t, "--out", "again.json"); res.code != 1 || !strings.Contains(res.stderr, "integrity_check") {
		t.Errorf("plan on the doctored store: %d %s%s", res.code, res.stdout, res.stderr)
	}
}

// The listings index made again with successful listings only hid a
// tenant's latest, failed listing, and publish called the copy complete
// (the copy carrying the doctored index too). The copy now does not
// verify, and nothing is published.
func TestAStoreIndexLeavingAListingOutStopsPublish(t *testing.T) {
	store := coverageStore(t, evidenceCapture(uuidFor(1, 1), evidence.Captured), evidenceCapture(uuidFor(1, 2), evidence.Captured),
		evidenceCapture(uuidFor(1, 3), evidence.Captured),
		&evidence.Listing{Tenant: "a", At: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), Outcome: evidence.Unreachable, Reason: "not listed: run interrupted"})
	leaveOutOfIndex(t, store, "listings_tenant", "CREATE INDEX listings_tenant ON listings (tenant, id) WHERE outcome = 'listed'")
	dest := filepath.Join(t.TempDir(), "copy.db")
	if r := run(t, nil, "--evidence", store, "publish", dest); r.code != 1 || !strings.Contains(r.stderr, "integrity_check") {
		t.Fatalf("publish of the doctored store: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("the doctored store was published")
	}
}
