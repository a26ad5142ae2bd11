package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"backfill/internal/evidence"
)

// verify, status and export open the store read-only: they neither migrate
// nor create anything in it, and nothing they could do writes it.
func TestReadingCommandsNeverWriteTheStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "evidence.db")
	s, err := evidence.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, args := range [][]string{{"verify"}, {"status"}, {"export"}} {
		// An empty file would have been made a store by a read-write open.
		res := run(t, nil, append(args, "--evidence", empty)...)
		if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 || res.code != 1 || !strings.Contains(res.stderr, "empty") {
			t.Errorf("%s on an empty file: exit %d %s (file %v %v)", args[0], res.code, res.stderr, fi.Size(), err)
		}
		if res := run(t, nil, append(args, "--evidence", store)...); res.code != 0 {
			t.Errorf("%s: exit %d %s", args[0], res.code, res.stderr)
		}
	}
}
