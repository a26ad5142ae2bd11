package cli

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backfill/apply/plan"
	"backfill/internal/fixture"
)

type captureKey struct{ key, sha string }

func capturedSet(t *testing.T, f *fleet, evidencePath string) map[captureKey]bool {
	t.Helper()
	recs := exportJSON(t, &fleet{evidence: evidencePath})
	out := map[captureKey]bool{}
	for k, r := range recs {
		out[captureKey{k, r.EarliestSHA256}] = true
	}
	return out
}

func TestShardsMergedEqualOneRun(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 5, 0)
	var shards []string
	for k := 0; k < 3; k++ {
		p := filepath.Join(f.dir, fmt.Sprintf("shard-%d.db", k))
		res := run(t, f.env, "--evidence", p, "snapshot", "--inventory", f.inventory, "--shard", fmt.Sprintf("%d/3", k))
		if res.code != 0 {
			t.Fatalf("shard %d: %d %s %s", k, res.code, res.stdout, res.stderr)
		}
		shards = append(shards, p)
	}
	merged := filepath.Join(f.dir, "merged.db")
	res := run(t, nil, append([]string{"merge", merged}, shards...)...)
	if res.code != 0 {
		t.Fatalf("merge: %d %s %s", res.code, res.stdout, res.stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(f.dir, ".merged.db.publish-*")); len(left) > 0 {
		t.Errorf("merge left its temporary store: %v", left)
	}
	if v := run(t, nil, "verify", "--evidence", merged); v.code != 0 {
		t.Fatalf("verify merged: %s", v.stdout)
	}
	whole := f.snapshot(t)
	if whole.code != 0 {
		t.Fatalf("unsharded: %s", whole.stderr)
	}
	got, want := capturedSet(t, f, merged), capturedSet(t, f, f.evidence)
	if len(want) != len(f.live) || len(got) != len(want) {
		t.Fatalf("merged %d workspaces, unsharded %d, live %d", len(got), len(want), len(f.live))
	}
	for k := range want {
		if !got[k] {
			t.Errorf("merged store lacks %v", k)
		}
	}
	// Provenance survives the merge.
	db, _ := sql.Open("sqlite", "file:"+merged+"?mode=ro")
	defer db.Close()
	var n int
	db.QueryRow(`SELECT count(*) FROM captures WHERE method = 'http' AND json_extract(provenance, '$."header.X-Molecule-Files-Source"') = 'container'`).Scan(&n)
	if n != 5 {
		t.Errorf("%d http captures kept their provenance, want 5", n)
	}
	db.QueryRow(`SELECT count(*) FROM merged_from`).Scan(&n)
	if n != 3 {
		t.Errorf("merged_from has %d rows, want 3", n)
	}
	// And plan works on the merged store.
	catalog := fixture.CatalogDir(t)
	cp := writeFile(t, filepath.Join(f.dir, "cp.csv"), "tenant,workspace_id,template\nalpha,,seo-agent\nbeta,,seo-agent\ngamma,,seo-agent\n")
	planPath := filepath.Join(f.dir, "plan.json")
	pr := runAt(t, f.env, "--evidence", merged, "plan", "--inventory", f.inventory, "--cp", cp, "--catalog", catalog, "--out", planPath, "--author", "ops")
	if pr.code != 0 {
		t.Fatalf("plan on merged store: %d %s", pr.code, pr.stderr)
	}
	p, err := plan.LoadPlan(planPath)
	if err != nil {
		t.Fatal(err)
	}
	// Of five workspaces per tenant, only the third is templated (see newFleet).
	if p.Counts["agree"] != 12 || p.Counts["already-set"] != 3 {
		t.Errorf("plan on merged store: %v", p.Counts)
	}
}

func TestMergeRefusesSelfAndTampered(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 2, 0)
	if res := f.snapshot(t); res.code != 0 {
		t.Fatal(res.stderr)
	}
	copyPath := filepath.Join(f.dir, "copy.db")
	b, _ := os.ReadFile(f.evidence)
	os.WriteFile(copyPath, b, 0o600)
	if wal, err := os.ReadFile(f.evidence + "-wal"); err == nil {
		os.WriteFile(copyPath+"-wal", wal, 0o600)
	}
	out := filepath.Join(f.dir, "out.db")
	for name, ins := range map[string][]string{"itself": {f.evidence, f.evidence}, "its copy": {f.evidence, copyPath}} {
		res := run(t, nil, append([]string{"merge", out}, ins...)...)
		if res.code != 1 || !strings.Contains(res.stderr, "cannot be merged with itself") {
			t.Errorf("%s: exit %d %s", name, res.code, res.stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: a refused merge left %s behind", name, out)
		}
	}
	tamper := filepath.Join(f.dir, "tampered.db")
	os.WriteFile(tamper, b, 0o600)
	if wal, err := os.ReadFile(f.evidence + "-wal"); err == nil {
		os.WriteFile(tamper+"-wal", wal, 0o600)
	}
	db, _ := sql.Open("sqlite", "file:"+tamper)
	for _, q := range []string{"DROP TRIGGER captures_no_update", "UPDATE captures SET reason = 'x' WHERE id = 1"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	res := run(t, nil, "merge", out, tamper)
	if res.code != 1 || !strings.Contains(res.stderr, "does not verify") {
		t.Errorf("tampered: exit %d %s", res.code, res.stderr)
	}
	// OUT, and the temporary file merge builds it in (made before the
	// inputs are verified).
	left, _ := filepath.Glob(out + "*")
	tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".publish-*"))
	if left = append(left, tmps...); len(left) > 0 {
		t.Errorf("a failed merge left files behind: %v", left)
	}
	if res := run(t, nil, "merge", f.evidence, copyPath); res.code != 1 || !strings.Contains(res.stderr, "already exists") {
		t.Errorf("existing output: exit %d %s", res.code, res.stderr)
	}
}

// TestASelectionSaysSo: a shard or tenant selection, from the command line
// or left in the environment, is named in the summary, the JSON and the log
// with how many of the inventory's tenants it covers; a whole run names none.
func TestASelectionSaysSo(t *testing.T) {
	f := newFleet(t, 3, 0)
	// Flags read the process's environment; the injected one names it.
	t.Setenv("BACKFILL_SHARD", "0/3")
	env := maps.Clone(f.env)
	env["BACKFILL_SHARD"] = "0/3"
	res := run(t, env, "--evidence", filepath.Join(f.dir, "a.db"), "snapshot", "--inventory", f.inventory)
	if res.code != 0 || !strings.Contains(res.stdout, "only shard 0/3 (BACKFILL_SHARD): 1 of the inventory's 3 tenants") ||
		!strings.Contains(res.stderr, "capturing part of the inventory") {
		t.Fatalf("shard from the environment: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// With both set the flag wins, and the line names the flag, not the
	// variable that selected nothing.
	res = run(t, env, "--evidence", filepath.Join(f.dir, "a2.db"), "snapshot", "--inventory", f.inventory, "--shard", "1/3")
	if res.code != 0 || !strings.Contains(res.stdout, "only shard 1/3 (--shard): ") || strings.Contains(res.stdout, "BACKFILL_SHARD") {
		t.Fatalf("flag over the environment: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// A value from a ConfigMap block ends in a newline: still the variable's.
	t.Setenv("BACKFILL_SHARD", "0/3\n")
	env["BACKFILL_SHARD"] = "0/3\n"
	res = run(t, env, "--evidence", filepath.Join(f.dir, "a3.db"), "snapshot", "--inventory", f.inventory)
	if res.code != 0 || !strings.Contains(res.stdout, "only shard 0/3 (BACKFILL_SHARD): 1 of the inventory's 3 tenants") {
		t.Fatalf("shard from the environment with a newline: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	os.Unsetenv("BACKFILL_SHARD")
	res = run(t, f.env, "--evidence", filepath.Join(f.dir, "b.db"), "snapshot", "--inventory", f.inventory, "--tenant", "beta", "--json")
	var doc snapshotJSON
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || res.code != 0 || doc.Scope == nil ||
		doc.Scope.Selected != 1 || doc.Scope.InventoryTenants != 3 || doc.Scope.TenantsFrom != "--tenant" || doc.Scope.Shard != "" {
		t.Fatalf("--tenant --json: %v %+v\n%s%s", err, doc.Scope, res.stdout, res.stderr)
	}
	res = run(t, f.env, "--evidence", filepath.Join(f.dir, "c.db"), "snapshot", "--inventory", f.inventory)
	if res.code != 0 || strings.Contains(res.stdout, "only ") || strings.Contains(res.stderr, "part of the inventory") {
		t.Fatalf("a whole run: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

// TestMergeKeepsEachStoresOrderOfListings: a later run's "not listed"
// records (the not-yet-listed row a run writes first, then unreachable)
// whose clock read earlier than the run before's listing (another host, an
// NTP step) stay after it in the merged store: the merge, like the store,
// says the tenant is not listed.
func TestMergeKeepsEachStoresOrderOfListings(t *testing.T) {
	f := newFleet(t, 3, 0)
	t1 := time.Now().UTC().Truncate(time.Second)
	if res := runClock(t, f.env, t1, "--evidence", f.evidence, "snapshot", "--inventory", f.inventory); res.code != 0 {
		t.Fatalf("snapshot 1: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// The next run cannot list beta, on a host whose clock is an hour behind.
	f.repoint(t, "beta", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
	if res := runClock(t, f.env, t1.Add(-time.Hour), "--evidence", f.evidence, "snapshot", "--inventory", f.inventory); res.code != 3 {
		t.Fatalf("snapshot 2: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "shard-0.db")
	res := run(t, nil, "--evidence", f.evidence, "publish", "--json", copyPath)
	var doc publishJSON
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || res.code != 3 || doc.TenantsNotListed != 1 {
		t.Fatalf("publish of the store: %d %+v\n%s", res.code, doc, res.stderr)
	}
	merged := filepath.Join(dir, "merged.db")
	if m := run(t, nil, "merge", merged, copyPath); m.code != 0 {
		t.Fatalf("merge: %d %s%s", m.code, m.stdout, m.stderr)
	}
	res = run(t, nil, "--evidence", merged, "publish", "--json", filepath.Join(dir, "merged-copy.db"))
	doc = publishJSON{}
	_ = json.Unmarshal([]byte(res.stdout), &doc)
	if res.code != 3 || doc.TenantsNotListed != 1 {
		t.Fatalf("publish of the merged store: exit %d, tenants not listed %d: the merge calls beta listed, its store does not", res.code, doc.TenantsNotListed)
	}
}
