package evidence

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// Since schema 11 a listing names the database it read, in the chain: it
// reads back, a listing made before reads with none, and one whose
// database was edited no longer verifies.
func TestMigration11ListingsNameTheirDatabase(t *testing.T) {
	ctx := context.Background()
	path := v6Store(t)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	if err := s.Append(ctx, &Listing{Tenant: "beta", At: at, Outcome: Listed, Database: "7440012345678901234/beta/16384/16390"}); err != nil {
		t.Fatal(err)
	}
	old, err := s.LatestListing(ctx, "acme")
	if err != nil || old == nil || old.Database != "" {
		t.Fatalf("a listing made before schema 11: %+v %v", old, err)
	}
	l, err := s.LatestListing(ctx, "beta")
	if err != nil || l == nil || l.Database != "7440012345678901234/beta/16384/16390" {
		t.Fatalf("a listing naming its database: %+v %v", l, err)
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Listings != 2 {
		t.Fatalf("verify: %+v %v", r, err)
	}
	s.Close()

	// A merge keeps it.
	shard := openTemp(t)
	if err := shard.Append(ctx, &Listing{Tenant: "beta", At: at, Outcome: Listed, Database: "7440012345678901234/beta/16384/16390"}); err != nil {
		t.Fatal(err)
	}
	shard.Close()
	merged := filepath.Join(t.TempDir(), "merged.db")
	if _, err := Merge(ctx, merged, []string{shard.Path()}, time.Now(), MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := OpenReadOnly(ctx, merged)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := m.LatestListing(ctx, "beta"); err != nil || l == nil || l.Database != "7440012345678901234/beta/16384/16390" {
		t.Errorf("merged: %+v %v", l, err)
	}
	m.Close()

	tamper(t, path, "DROP TRIGGER listings_no_update", "UPDATE listings SET database = '1/beta/1/1' WHERE tenant = 'beta'", triggerSQL("listings", "UPDATE"))
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if r, err := ro.Verify(ctx); err != nil || r.OK() {
		t.Fatalf("a listing's database edited: %+v %v", r, err)
	}
}
