package apply

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backfill/apply/plan"
	"backfill/internal/benchsize"
	"backfill/internal/fixture"

	"github.com/jackc/pgx/v5"

	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/pgtest"
	"backfill/internal/workspace"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// BenchmarkApply10k: 10,000 agreed writes across 50 tenant databases, beside
// the naive alternative an operator might script: one `psql -c UPDATE …`
// per row. The naive loop runs over BENCH_NAIVE rows (default 500) and is
// scaled to 10,000; the target is apply at least 20x faster.
func BenchmarkApply10k(b *testing.B) {
	tenants, per := 50, benchsize.N(200, 2)
	ctx := context.Background()
	inv := &inventory.Inventory{Path: "bench.yaml"}
	catDir := fixture.CatalogDir(b)
	cat, err := catalog.Load(catDir)
	if err != nil {
		b.Fatal(err)
	}
	seo := fixture.Live("custom-seo-agent.yaml")
	// The plan is made as an operator makes it (captures, CP records,
	// catalog, the tenant databases), so that apply's re-derivation of
	// every write runs as in production.
	base, err := evidence.Open(ctx, filepath.Join(b.TempDir(), "base.db"))
	if err != nil {
		b.Fatal(err)
	}
	var cpCSV strings.Builder
	cpCSV.WriteString("tenant,workspace_id,template\n")
	type target struct{ dsn, id string }
	var targets []target
	at := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for t := 0; t < tenants; t++ {
		name := fmt.Sprintf("t%02d", t)
		dsn := pgtest.NewTenantDB(b)
		inv.Tenants = append(inv.Tenants, inventory.Tenant{Name: name, DSN: dsn})
		fmt.Fprintf(&cpCSV, "%s,,seo-agent\n", name)
		rows := make([][]any, 0, per)
		var recs []evidence.Record
		for i := 0; i < per; i++ {
			id := fmt.Sprintf("%08d-0000-4000-8000-%012d", t, i)
			rows = append(rows, []any{id, fmt.Sprintf("ws-%d", i), "claude-code", ""})
			r := workspace.Row{ID: id, Name: fmt.Sprintf("ws-%d", i), Runtime: "claude-code", Status: "online", Kind: "workspace"}
			recs = append(recs, &evidence.Capture{Tenant: name, WorkspaceID: id, Row: r, Method: "exec", Target: "bench", StartedAt: at,
				EndedAt: at, Attempt: 1, Outcome: evidence.Captured, Content: seo, Source: "exec", Provenance: map[string]string{}})
			targets = append(targets, target{dsn, id})
		}
		if err := base.Append(ctx, recs...); err != nil {
			b.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"workspaces"}, []string{"id", "name", "runtime", "template"}, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		conn.Close(ctx)
	}
	records, err := cp.Parse("cp.csv", []byte(cpCSV.String()))
	if err != nil {
		b.Fatal(err)
	}
	p, _, err := plan.Build(ctx, plan.BuildOptions{Inventory: inv, Store: base, CP: records, CPSource: "cp.csv", Catalog: cat,
		CatalogDir: catDir, Author: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if n := p.Writes(); n != tenants*per {
		b.Fatalf("the plan agrees on %d writes, want %d", n, tenants*per)
	}
	basePath := filepath.Join(b.TempDir(), "published.db")
	if err := base.Publish(ctx, basePath); err != nil {
		b.Fatal(err)
	}
	base.Close()
	// Each run gets a fresh copy of the store with the approval: against a
	// store that journaled the previous run, the plan would rightly refuse
	// to write its rows a second time.
	freshStore := func() *evidence.Store {
		path := filepath.Join(b.TempDir(), "evidence.db")
		raw, err := os.ReadFile(basePath)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			b.Fatal(err)
		}
		store, err := evidence.Open(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		if err := store.Append(ctx, &evidence.Approval{Fingerprint: p.Fingerprint, By: "reviewer", PlanAuthor: p.Author, At: time.Now(),
			CheckedCatalogSHA256: p.Inputs.Catalog.SHA256, CheckedCPSHA256: p.Inputs.CP.SHA256}); err != nil {
			b.Fatal(err)
		}
		return store
	}
	reset := func() {
		for _, t := range inv.Tenants {
			c, err := pgx.Connect(ctx, t.DSN)
			if err != nil {
				b.Fatal(err)
			}
			c.Exec(ctx, "UPDATE workspaces SET template = ''")
			c.Close(ctx)
		}
	}
	var wall time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		reset()
		store := freshStore()
		b.StartTimer()
		start := time.Now()
		rep, err := Apply(ctx, Options{Plan: p, Inventory: inv, Store: store, Catalog: cat, CP: records, Execute: true, Operator: "bench"})
		wall += time.Since(start)
		b.StopTimer()
		store.Close()
		b.StartTimer()
		if err != nil {
			b.Fatal(err)
		}
		if rep.Counts[Applied] != tenants*per {
			b.Fatalf("applied %d", rep.Counts[Applied])
		}
	}
	b.StopTimer()
	perRun := wall.Seconds() / float64(b.N)
	b.ReportMetric(float64(tenants*per), "writes")
	b.ReportMetric(perRun, "wall-s")
	b.ReportMetric(float64(tenants*per)/perRun, "writes/s")

	psql, err := exec.LookPath("psql")
	if err != nil {
		b.Logf("psql not found: naive comparison skipped")
		return
	}
	reset()
	naiveN := min(benchsize.Env("BENCH_NAIVE", 500, 10), len(targets))
	start := time.Now()
	for i := 0; i < naiveN; i++ {
		t := targets[i*len(targets)/naiveN]
		// psql interpolates :'id' as a quoted literal from standard input.
		cmd := exec.Command(psql, t.dsn, "-q", "-v", "ON_ERROR_STOP=1", "-v", "id="+t.id)
		cmd.Stdin = strings.NewReader("UPDATE workspaces SET template = 'seo-agent', updated_at = now() WHERE id = :'id' AND template = '' AND status <> 'removed';\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("psql: %v %s", err, out)
		}
	}
	naive := time.Since(start).Seconds() * float64(len(targets)) / float64(naiveN)
	b.ReportMetric(naive, "naive-psql-s")
	b.ReportMetric(naive/perRun, "x-faster")
}
