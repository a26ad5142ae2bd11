package snapshot

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Shard selects the tenants of shard K of N, so that N snapshot processes
// (a Kubernetes Indexed Job, or N hosts) split a fleet without coordinating.
type Shard struct{ K, N int }

// ParseShard reads "K/N" with 0 <= K < N (K is 0-based, like
// JOB_COMPLETION_INDEX).
func ParseShard(s string) (Shard, error) {
	ks, ns, ok := strings.Cut(s, "/")
	k, err1 := strconv.Atoi(strings.TrimSpace(ks))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	if !ok || err1 != nil || err2 != nil || n < 1 || k < 0 || k >= n {
		return Shard{}, fmt.Errorf("--shard %q: want K/N with 0 <= K < N, e.g. 0/3", s)
	}
	return Shard{k, n}, nil
}

// Has reports whether tenant belongs to the shard. The hash depends on the
// name only, so every process agrees whatever its inventory's order.
func (s Shard) Has(tenant string) bool {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	return int(h.Sum32()%uint32(s.N)) == s.K
}
