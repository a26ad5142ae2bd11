package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/pgtest"
	"backfill/internal/tenantdb"
	"backfill/internal/workspace"
)

// Options.Rows captures only the rows it selects while the listing is
// recorded whole; RecaptureBefore captures again exactly the selected
// workspaces whose latest evidence is older, appending; a re-capture that
// fails leaves the workspace covered by its earlier evidence.
func TestRowsAndRecaptureBefore(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewTenantDB(t)
	root := t.TempDir()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	id := func(i int) string { return fmt.Sprintf("00000001-0000-4000-8000-%012d", i) }
	for i, tmpl := range []string{"", "seo-agent", "", "codex"} {
		if _, err := conn.Exec(ctx, `INSERT INTO workspaces (id, name, runtime, template) VALUES ($1, $2, 'claude-code', $3)`, id(i), fmt.Sprintf("ws-%d", i), tmpl); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, id(i)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, id(i), "config.yaml"), []byte("name: x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	inv, err := inventory.Parse("inventory.yaml", fmt.Appendf(nil, "version: 1\ntenants:\n  - name: t\n    dsn: %q\n    collector: {file: \"%s/{workspace_id}/config.yaml\"}\n", dsn, root), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := evidence.Open(ctx, filepath.Join(t.TempDir(), "evidence.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	empty := func(_ string, r workspace.Row) bool { return r.Template == "" }
	run := func(now time.Time, before time.Time) (*Summary, []string) {
		t.Helper()
		var mu sync.Mutex
		var listed []string
		sum, err := Run(ctx, Options{Inventory: inv, Store: store, Rows: empty, RecaptureBefore: before, Retries: 0,
			Now: func() time.Time { return now },
			OnListed: func(tenant string, _ tenantdb.Database, rows []workspace.Row) {
				mu.Lock()
				defer mu.Unlock()
				for _, r := range rows {
					listed = append(listed, tenant+"/"+r.ID)
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(listed)
		return sum, listed
	}
	captured := func() map[string]int {
		n := map[string]int{}
		err := store.Captures(ctx, func(c *evidence.Capture) error {
			if c.IsEvidence() {
				n[c.WorkspaceID]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	sum, listed := run(t0, time.Time{})
	if !sum.Complete() || sum.Live != 2 || sum.Unselected != 2 || sum.Captured != 2 || sum.Recapture != 0 || len(listed) != 4 {
		t.Fatalf("first run: %+v, listed %v", sum, listed)
	}
	if n := captured(); len(n) != 2 || n[id(0)] != 1 || n[id(2)] != 1 {
		t.Fatalf("captures after the first run: %v, want only the template = '' rows", n)
	}
	ls, err := store.LatestListings(ctx, true)
	if err != nil || len(ls["t"].Rows) != 4 {
		t.Fatalf("the listing is recorded whole: %+v %v", ls["t"], err)
	}

	// An hour and a half later, evidence older than an hour: both again.
	sum, _ = run(t0.Add(90*time.Minute), t0.Add(30*time.Minute))
	if !sum.Complete() || sum.Recapture != 2 || sum.Captured != 2 || sum.AlreadyCaptured != 0 {
		t.Fatalf("re-capture run: %+v", sum)
	}
	// Their latest evidence is now 90 minutes old: nothing is older than
	// an hour before that.
	sum, _ = run(t0.Add(100*time.Minute), t0.Add(40*time.Minute))
	if !sum.Complete() || sum.Recapture != 0 || sum.Captured != 0 || sum.AlreadyCaptured != 2 {
		t.Fatalf("nothing older than the limit: %+v", sum)
	}
	if n := captured(); n[id(0)] != 2 || n[id(2)] != 2 || len(n) != 2 {
		t.Fatalf("captures: %v, want two of each selected workspace (the first one kept)", n)
	}
	// A re-capture that fails: the workspace stays covered by what it had.
	if err := os.Remove(filepath.Join(root, id(2), "config.yaml")); err != nil {
		t.Fatal(err)
	}
	sum, _ = run(t0.Add(200*time.Minute), t0.Add(150*time.Minute))
	if !sum.Complete() || sum.Recapture != 2 || sum.Captured != 1 || sum.Gone != 1 || sum.CoveredEarlier != 1 {
		t.Fatalf("a failed re-capture: %+v", sum)
	}
}
