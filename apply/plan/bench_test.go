package plan

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/benchsize"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/identity"
	"backfill/internal/inventory"
	"backfill/internal/pgtest"
	"backfill/internal/workspace"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// BenchmarkReconcile100k: reconciliation alone over 100,000 workspaces with
// evidence already loaded; the target is under 2 s.
func BenchmarkReconcile100k(b *testing.B) {
	cat := loadCatalog(b)
	contents := []string{live(b, "custom-seo-agent.yaml"), live(b, "runtime-default-after-restart.yaml"),
		live(b, "stub-named-like-a-template.yaml"), conciergeCfg}
	ids := make([]identity.Identity, len(contents))
	for i, c := range contents {
		ids[i] = identity.Derive([]byte(c), cat)
	}
	n := benchsize.N(100000, 100)
	inputs := make([]reconcileInput, n)
	for i := range inputs {
		inputs[i] = reconcileInput{
			Captures: []captured{{CaptureID: int64(i), Identity: ids[i%len(ids)]}, {CaptureID: int64(n + i), Identity: ids[1]}},
			Claim:    cpClaim{Templates: []string{"seo-agent"}, Level: "tenant", Sources: []string{"cp.csv:2"}},
			Row:      &workspace.Row{ID: fmt.Sprint(i), Runtime: "claude-code", Status: "online"},
			Catalog:  cat,
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for _, in := range inputs {
			reconcile(in)
		}
	}
	// Per 100,000, whatever size BENCH_SCALE made.
	b.ReportMetric(float64(n), "workspaces")
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N)*100000/float64(n), "s/100k")
}

// BenchmarkPlan100k: a whole plan over 100,000 workspaces in 50 tenant
// databases on the local cluster, streamed as the plan command streams it;
// targets: under 3 s, peak RSS under 150 MB. Run it alone so that the peak
// is its own.
func BenchmarkPlan100k(b *testing.B) {
	tenants, per := 50, benchsize.N(2000, 2)
	ctx := context.Background()
	cat := loadCatalog(b)
	store, err := evidence.Open(ctx, filepath.Join(b.TempDir(), "evidence.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	contents := [][]byte{[]byte(live(b, "custom-seo-agent.yaml")), []byte(live(b, "runtime-default-after-restart.yaml")),
		[]byte(live(b, "stub-named-like-a-template.yaml"))}
	inv := &inventory.Inventory{Path: "bench.yaml"}
	var claims []byte = []byte("tenant,workspace_id,template\n")
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for t := 0; t < tenants; t++ {
		name := fmt.Sprintf("t%02d", t)
		dsn := pgtest.NewTenantDB(b)
		inv.Tenants = append(inv.Tenants, inventory.Tenant{Name: name, DSN: dsn})
		claims = append(claims, name+",,seo-agent\n"...)
		rows := make([][]any, 0, per)
		var recs []evidence.Record
		for i := 0; i < per; i++ {
			id := fmt.Sprintf("%08d-0000-4000-8000-%012d", t, i)
			rows = append(rows, []any{id, fmt.Sprintf("ws-%d", i), "claude-code", ""})
			// Distinct bytes per workspace, as in a real fleet, so that
			// identity derivation is not served from a handful of hashes.
			content := append(append([]byte{}, contents[i%len(contents)]...), fmt.Sprintf("# %s\n", id)...)
			recs = append(recs, &evidence.Capture{Tenant: name, WorkspaceID: id, Row: workspace.Row{ID: id, Runtime: "claude-code"},
				Method: "http", StartedAt: at, EndedAt: at, Attempt: 1, Outcome: evidence.Captured, Content: content})
		}
		if err := store.Append(ctx, recs...); err != nil {
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
	records, err := cp.Parse("cp.csv", claims)
	if err != nil {
		b.Fatal(err)
	}
	// The peak so far is the setup's: the plan's own shows only above it.
	var setup syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &setup)
	b.ResetTimer()
	var wall, cpu time.Duration
	for i := 0; i < b.N; i++ {
		start, startCPU := time.Now(), cpuTime()
		// As plan runs it: items streamed through a Writer, the plan file
		// and the full report written from it.
		dir := b.TempDir()
		w, err := NewWriter(filepath.Join(dir, "plan.json"), true, false)
		if err != nil {
			b.Fatal(err)
		}
		p, warnings, err := Stream(ctx, BuildOptions{Inventory: inv, Store: store, CP: records, CPSource: "cp.csv", Catalog: cat, Author: "bench"}, w.Add)
		if err == nil {
			err = w.Seal(p)
		}
		if err == nil {
			err = WriteFileAtomic(filepath.Join(dir, "plan.json"), w.Encode)
		}
		if err == nil {
			err = WriteFileAtomic(filepath.Join(dir, "report.md"), func(f io.Writer) error { return w.WriteReport(f, "plan.json", warnings) })
		}
		if err != nil {
			b.Fatal(err)
		}
		items := w.Items()
		w.Close()
		wall += time.Since(start)
		cpu += cpuTime() - startCPU
		b.Logf("run %d: wall %.2fs cpu %.2fs", i+1, time.Since(start).Seconds(), (cpuTime() - startCPU).Seconds())
		if items != tenants*per {
			b.Fatalf("%d items", items)
		}
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(float64(tenants*per), "workspaces")
	b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s")
	// CPU time (user and system, this process only) is what a loaded
	// machine changes least.
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s")
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-rss-MB")
	b.ReportMetric(float64(setup.Maxrss)/1024, "setup-peak-rss-MB") // after ResetTimer, which drops metrics
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
