package snapshot

import (
	"fmt"
	"testing"
)

func TestShardsPartitionTenants(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7} {
		counts := make([]int, n)
		for i := 0; i < 1000; i++ {
			name := fmt.Sprintf("tenant-%d", i)
			owners := 0
			for k := 0; k < n; k++ {
				if (Shard{k, n}).Has(name) {
					owners++
					counts[k]++
				}
			}
			if owners != 1 {
				t.Fatalf("%s is in %d of %d shards", name, owners, n)
			}
		}
		for k, c := range counts {
			if c < 1000/n/2 {
				t.Errorf("shard %d/%d holds only %d of 1000 tenants", k, n, c)
			}
		}
	}
}

func TestParseShard(t *testing.T) {
	for _, bad := range []string{"", "3", "3/3", "-1/3", "a/b", "0/0", "1/"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if s, err := ParseShard("2/5"); err != nil || s != (Shard{2, 5}) {
		t.Errorf("2/5: %v %v", s, err)
	}
}
