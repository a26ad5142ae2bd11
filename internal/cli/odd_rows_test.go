package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"backfill/internal/pgtest"
)

// Found by review: one workspace row whose updated_at is in year 10000 or
// later made the store's writer panic encoding the listing as JSON, and
// every snapshot (and audit) of the fleet crashed with exit 2 until the row
// was fixed; one whose updated_at is 'infinity' failed its tenant's whole
// listing. updated_at is only recorded: such a value reads as the epoch,
// and every workspace of both tenants is captured.
func TestOddUpdatedAtValuesNeitherStopTheRunNorTheTenant(t *testing.T) {
	dir := t.TempDir()
	good, odd := pgtest.NewTenantDB(t), pgtest.NewTenantDB(t)
	healthy, far, inf, fine := uuidFor(91, 1), uuidFor(92, 1), uuidFor(92, 2), uuidFor(92, 3)
	insertRows(t, good, ws{id: healthy, name: "healthy"})
	insertRows(t, odd, ws{id: far, name: "far"}, ws{id: inf, name: "inf"}, ws{id: fine, name: "fine"})
	execSQL(t, odd, fmt.Sprintf(`UPDATE workspaces SET updated_at = '10000-01-01 00:00:00+00' WHERE id = '%s'`, far))
	execSQL(t, odd, fmt.Sprintf(`UPDATE workspaces SET updated_at = 'infinity' WHERE id = '%s'`, inf))
	root := filepath.Join(dir, "mirror")
	for _, id := range []string{healthy, far, inf, fine} {
		writeFile(t, filepath.Join(root, id, "config.yaml"), seoConfig)
	}
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf(
		"version: 1\ndefaults:\n  collector:\n    file: \"%s/{workspace_id}/config.yaml\"\ntenants:\n  - name: a-healthy\n    dsn: %q\n  - name: b-odd\n    dsn: %q\n", root, good, odd))
	store := filepath.Join(dir, "evidence.db")
	res := run(t, nil, "--evidence", store, "snapshot", "--inventory", inv, "--retries", "0")
	if res.code != 0 || !strings.Contains(res.stdout, "2 tenants (0 not listed), 4 live workspaces") {
		t.Fatalf("snapshot: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	got := storedCaptures(t, store)
	for _, id := range []string{healthy, far, inf, fine} {
		if got[id].outcome != "captured" {
			t.Errorf("%s: %q, want captured", id, got[id].outcome)
		}
	}
	if res := run(t, nil, "--evidence", store, "verify"); res.code != 0 {
		t.Errorf("verify: %d %s%s", res.code, res.stdout, res.stderr)
	}
	if res := run(t, nil, "--evidence", filepath.Join(dir, "audit.db"), "audit", "--inventory", inv); res.code == 2 || strings.Contains(res.stderr, "panic") {
		t.Errorf("audit: %d %s%s", res.code, res.stdout, res.stderr)
	}
}
