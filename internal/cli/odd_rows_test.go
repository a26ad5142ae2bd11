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

// Found by the third review: a row given another row's instance_id (on a
// hosted server, the container's name) was captured from that container,
// the other workspace's config stored as its evidence. When more than one
// live row of a tenant names an instance_id, a collector reading by it
// ({instance_id}, {container}) fails them: nothing says whose it is.
func TestASharedInstanceIDFailsTheCapturesThatUseIt(t *testing.T) {
	dir := t.TempDir()
	dsn := pgtest.NewTenantDB(t)
	victim, copier, alone := uuidFor(93, 1), uuidFor(93, 2), uuidFor(93, 3)
	insertRows(t, dsn, ws{id: victim, name: "victim", instance: "mol-ws-victim-a9f3044fa3f2"},
		ws{id: copier, name: "copier", instance: "mol-ws-victim-a9f3044fa3f2"}, ws{id: alone, name: "alone", instance: "mol-ws-alone-0b1c2d3e4f50"})
	root := filepath.Join(dir, "hosts")
	writeFile(t, filepath.Join(root, "mol-ws-victim-a9f3044fa3f2", "config.yaml"), seoConfig)
	writeFile(t, filepath.Join(root, "mol-ws-alone-0b1c2d3e4f50", "config.yaml"), seoConfig)
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf(
		"version: 1\ntenants:\n  - name: acme\n    dsn: %q\n    collector:\n      file: \"%s/{instance_id}/config.yaml\"\n", dsn, root))
	store := filepath.Join(dir, "evidence.db")
	res := run(t, nil, "--evidence", store, "snapshot", "--inventory", inv, "--retries", "0")
	got := storedCaptures(t, store)
	if res.code != 3 || got[alone].outcome != "captured" {
		t.Fatalf("snapshot: %d, alone %q\n%s%s", res.code, got[alone].outcome, res.stdout, res.stderr)
	}
	for _, id := range []string{victim, copier} {
		if got[id].outcome != "failed" || len(got[id].content) != 0 {
			t.Errorf("%s sharing an instance_id: %q with %d bytes", id, got[id].outcome, len(got[id].content))
		}
	}
	if !strings.Contains(res.stdout+res.stderr, "names it too") {
		t.Errorf("no reason given:\n%s%s", res.stdout, res.stderr)
	}
}
