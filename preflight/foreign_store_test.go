package preflight

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"backfill/internal/evidence"
)

// TestPreflightRefusesAForeignSQLiteFile: --evidence pointed at another
// application's SQLite file (tables, no schema version) is refused by the
// snapshot's Open, so preflight, which reads only the header, says it is
// not ready; an SQLite file with no tables yet, and a store, are ready.
func TestPreflightRefusesAForeignSQLiteFile(t *testing.T) {
	dir := t.TempDir()
	sqlite := func(name string, stmts string) string {
		path := filepath.Join(dir, name)
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(DELETE)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(stmts); err != nil {
			t.Fatal(err)
		}
		return path
	}
	foreign := sqlite("app.db", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('x')")
	if _, err := evidence.Open(context.Background(), foreign); err == nil {
		t.Fatal("the snapshot's Open took a foreign database")
	}
	if s := checkStore(foreign, nil, plenty); s.Ready || !strings.Contains(strings.Join(s.Why, "; "), "not a backfill evidence store") {
		t.Fatalf("preflight of a file the snapshot refuses: %+v", s)
	}
	// Its tables dropped: every page past the first is free, and Open takes it.
	emptied := sqlite("emptied.db", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('x'); DROP TABLE users")
	if s := checkStore(emptied, nil, plenty); !s.Ready {
		t.Fatalf("preflight of an SQLite file with no tables: %+v", s)
	}
	store, err := evidence.Open(context.Background(), filepath.Join(dir, "evidence.db"))
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	if s := checkStore(store.Path(), nil, plenty); !s.Ready {
		t.Fatalf("preflight of a store: %+v", s)
	}
}
