package evidence

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backfill/internal/benchsize"
)

// BenchmarkVerify100k: Verify over a store of 100,000 captures of distinct
// 2 KiB configs (make bench times the built binary's verify on the same
// shape; this one is for profiling).
func BenchmarkVerify100k(b *testing.B) {
	n := benchsize.N(100_000, 1000)
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "evidence.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	pad := strings.Repeat("# padding to 2 KiB\n", 2048/19+1)
	for start := 0; start < n; start += 1000 {
		recs := make([]Record, 0, 1000)
		for i := start; i < start+1000; i++ {
			recs = append(recs, capture(fmt.Sprintf("t%02d", i%50), fmt.Sprintf("%08d-0000-4000-8000-%012d", i%50, i), Captured,
				(fmt.Sprintf("name: ws-%d\n", i) + pad)[:2048]))
		}
		if err := s.Append(ctx, recs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rep, err := s.Verify(ctx)
		if err != nil || !rep.OK() || rep.Captures != n {
			b.Fatalf("%v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(n), "captures")
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "wall-s")
}
