package snapshot

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/benchsize"
	"backfill/internal/collector"
	"backfill/internal/evidence"
	"backfill/internal/filesapi"
	"backfill/internal/inventory"
	"backfill/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// benchFleet creates n workspaces over tenants databases, each with a
// config of size bytes served over the files API with the given latency.
func benchFleet(tb testing.TB, n, tenants, size int, latency time.Duration) *inventory.Inventory {
	inv, _ := benchFleetURLs(tb, n, tenants, size, latency)
	return inv
}

// benchFleetURLs is benchFleet that also returns every workspace's URL, for
// the shell alternative.
func benchFleetURLs(tb testing.TB, n, tenants, size int, latency time.Duration) (*inventory.Inventory, []string) {
	tb.Helper()
	ctx := context.Background()
	root := tb.TempDir()
	srv := httptest.NewServer((&filesapi.Server{Root: root, Token: "bench-token", Latency: latency}).Handler())
	tb.Cleanup(srv.Close)
	content := []byte("name: SEO Agent\nruntime: claude-code\n" + strings.Repeat("# padding to the configured size\n", size/33+1))[:size]
	inv := &inventory.Inventory{Path: "bench.yaml"}
	var urls []string
	for t := 0; t < tenants; t++ {
		dsn := pgtest.NewTenantDB(tb)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Fatal(err)
		}
		var rows [][]any
		for i := t; i < n; i += tenants {
			id := fmt.Sprintf("%08d-0000-4000-8000-%012d", t, i)
			rows = append(rows, []any{id, fmt.Sprintf("ws-%d", i), "claude-code", ""})
			if err := filesapi.WriteConfig(root, id, content); err != nil {
				tb.Fatal(err)
			}
			urls = append(urls, srv.URL+"/workspaces/"+id+"/files/config.yaml?root=/configs")
		}
		_, err = conn.CopyFrom(ctx, pgx.Identifier{"workspaces"}, []string{"id", "name", "runtime", "template"}, pgx.CopyFromRows(rows))
		if err != nil {
			tb.Fatal(err)
		}
		conn.Close(ctx)
		col := collector.Spec{Method: "http", URL: srv.URL + "/workspaces/{workspace_id}/files/config.yaml?root=/configs",
			Headers: map[string]string{"Authorization": "Bearer bench-token"}, JSONField: "content"}
		inv.Tenants = append(inv.Tenants, inventory.Tenant{Name: fmt.Sprintf("t%02d", t), DSN: dsn, Collector: col, Raw: col})
	}
	return inv, urls
}

func peakRSSMB() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024 // Linux reports KiB
}

func benchSnapshot(b *testing.B, n, tenants, size, conc int, latency time.Duration) {
	benchSnapshotVsShell(b, n, tenants, size, conc, latency, 0)
}

// benchSnapshotVsShell also times, in the same run, the script an operator
// would otherwise write: `xargs -P C curl` into one file per workspace, over
// shellN of the URLs (scaled to n), given the URL list for free.
func benchSnapshotVsShell(b *testing.B, n, tenants, size, conc int, latency time.Duration, shellN int) {
	inv, urls := benchFleetURLs(b, n, tenants, size, latency)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		store, err := evidence.Open(context.Background(), filepath.Join(b.TempDir(), "evidence.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		sum, err := Run(context.Background(), Options{Inventory: inv, Store: store, Concurrency: conc, Timeout: 30 * time.Second})
		total += time.Since(start)
		b.StopTimer()
		if err != nil || sum.Captured != n {
			b.Fatalf("captured %d of %d: %v", sum.Captured, n, err)
		}
		store.Close()
		b.StartTimer()
	}
	wall := total.Seconds() / float64(b.N)
	b.ReportMetric(float64(n)/wall, "captures/s")
	b.ReportMetric(wall, "wall-s")
	if latency > 0 {
		ideal := float64(n) * latency.Seconds() / float64(conc)
		b.ReportMetric(ideal, "ideal-s")
		b.ReportMetric(wall/ideal, "x-ideal")
	}
	b.ReportMetric(peakRSSMB(), "peak-rss-MB")
	b.StopTimer()
	if shellN > 0 {
		shell := shellCapture(b, urls, min(shellN, n), conc)
		b.ReportMetric(shell, "shell-s")
		b.ReportMetric(shell/wall, "x-shell")
	}
}

// shellCapture runs `xargs -P conc -n 2 curl -sf -H ... -o FILE URL` over a
// sample of the URLs and returns the time scaled to all of them.
func shellCapture(b *testing.B, urls []string, sample, conc int) float64 {
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Logf("curl not found: shell comparison skipped")
		return 0
	}
	dir := b.TempDir()
	var in strings.Builder
	for i := 0; i < sample; i++ {
		fmt.Fprintf(&in, "%s %s\n", filepath.Join(dir, strconv.Itoa(i)), urls[i*len(urls)/sample])
	}
	cmd := exec.Command("xargs", "-P", strconv.Itoa(conc), "-n", "2", curl, "-sf", "-H", "Authorization: Bearer bench-token", "-o")
	cmd.Stdin = strings.NewReader(in.String())
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("xargs curl: %v %s", err, out)
	}
	return time.Since(start).Seconds() * float64(len(urls)) / float64(sample)
}

// BenchmarkSnapshotLatency: N=5,000 over HTTP with 20ms per request and
// concurrency 64; the target is a wall time within 1.25x of N*L/C.
func BenchmarkSnapshotLatency(b *testing.B) {
	benchSnapshot(b, benchsize.Env("BENCH_N", 5000, 100), 10, 2048, 64, 20*time.Millisecond)
}

// BenchmarkSnapshotThroughput: no latency, 2 KiB configs; the target is at
// least 10,000 captures/s into the evidence store.
func BenchmarkSnapshotThroughput(b *testing.B) {
	benchSnapshot(b, benchsize.Env("BENCH_N", 20000, 100), 10, 2048, 64, 0)
}

// BenchmarkSnapshotFleet10k and 100k: the files API with 10 ms per request
// and concurrency 64, beside `xargs -P 64 curl` (timed over up to
// BENCH_SHELL_N URLs, default 10,000, and scaled).
func BenchmarkSnapshotFleet10k(b *testing.B) {
	benchSnapshotVsShell(b, benchsize.N(10000, 100), 20, 2048, 64, 10*time.Millisecond, benchsize.Env("BENCH_SHELL_N", 10000, 20))
}

func BenchmarkSnapshotFleet100k(b *testing.B) {
	benchSnapshotVsShell(b, benchsize.N(100000, 100), 50, 2048, 64, 10*time.Millisecond, benchsize.Env("BENCH_SHELL_N", 10000, 20))
}

// BenchmarkSnapshotMemory: N=50,000; the target is a peak RSS under 150 MB.
// Run it alone (-bench Memory) so the peak is its own.
func BenchmarkSnapshotMemory(b *testing.B) {
	benchSnapshot(b, benchsize.Env("BENCH_N", 50000, 100), 20, 2048, 64, 0)
}
