package cli

import (
	"fmt"
	"sync"
	"testing"
)

// TestRunsInParallel: in-process runs share no package-level state that
// they write, so tests may run them at once. Under -race this fails if a run
// writes urfave/cli's shared help or version flags or its help command;
// without it, each concurrent run must print what it prints alone.
func TestRunsInParallel(t *testing.T) {
	t.Parallel()
	lines := [][]string{
		{"--help"}, {"-h"}, {"--version"}, {"version"}, {"version", "--json"},
		{"help"}, {"help", "snapshot"}, {"snapshot", "--help"}, {"approve", "-h"},
		{"nosuch"}, {"snapshot", "--inventory", "x.yaml", "--timeout", "10"},
		{"completion", "bash"}, {"snapshot", "--generate-bash-completion"},
	}
	want := make([]result, len(lines))
	for i, args := range lines {
		want[i] = run(t, nil, args...)
	}
	const rounds = 4
	got := make([]result, len(lines)*rounds)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = run(t, nil, lines[i%len(lines)]...)
		}()
	}
	wg.Wait()
	for i, g := range got {
		if w := want[i%len(lines)]; g != w {
			t.Errorf("%q run concurrently:\n%s\nalone:\n%s", lines[i%len(lines)], show(g), show(w))
		}
	}
}

func show(r result) string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}
