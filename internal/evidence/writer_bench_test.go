package evidence

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkWriter measures the single writer alone: records/s of 2 KiB
// captures handed to it by 64 capture workers at once (Submit, as snapshot
// does), each acknowledged only once its batch is committed. "distinct" has
// new content in every capture; "duplicate" the same bytes in all, as a
// fleet built from one template has.
func BenchmarkWriter(b *testing.B) {
	for _, mode := range []string{"distinct", "duplicate"} {
		b.Run(mode, func(b *testing.B) { benchWriter(b, mode == "duplicate") })
	}
}

func benchWriter(b *testing.B, duplicate bool) {
	const workers = 64
	pad := strings.Repeat("# padding to 2 KiB\n", 2048/19+1)
	content := func(i int) []byte {
		if duplicate {
			i = 0
		}
		return []byte((fmt.Sprintf("name: ws-%d\n", i) + pad)[:2048])
	}
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "evidence.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := s.NewWriter()
	b.ResetTimer()
	start := time.Now()
	var acked sync.WaitGroup
	var failed sync.Once
	var werr error
	var prod sync.WaitGroup
	for g := 0; g < workers; g++ {
		prod.Add(1)
		go func(g int) {
			defer prod.Done()
			for i := g; i < b.N; i += workers {
				c := capture("t", fmt.Sprintf("w%08d", i), Captured, "")
				c.Content = content(i)
				acked.Add(1)
				w.Submit(c, func(err error) {
					if err != nil {
						failed.Do(func() { werr = err })
					}
					acked.Done()
				})
			}
		}(g)
	}
	prod.Wait()
	acked.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	w.Close()
	if werr != nil {
		b.Fatal(werr)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}
