package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"backfill/apply/plan"
	"backfill/internal/evidence"
	"backfill/internal/fixture"
	"backfill/internal/workspace"
)

// fileDigest is a file's bytes' hash, to show that reading it changed nothing.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return evidence.SHA256Hex(b)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Shards are published to a shared directory, merged from there, and the
// merged store verifies and plans like the unsharded one. Reading the
// published copies writes nothing beside them and leaves them out of WAL
// mode.
func TestPublishedShardsMergeVerifyAndPlan(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 5, 0)
	shared := filepath.Join(f.dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	var published []string
	for k := range 2 {
		local := filepath.Join(f.dir, fmt.Sprintf("local-%d", k), "evidence.db")
		os.MkdirAll(filepath.Dir(local), 0o700)
		res := run(t, f.env, "--evidence", local, "snapshot", "--inventory", f.inventory, "--shard", fmt.Sprintf("%d/2", k))
		if res.code != 0 {
			t.Fatalf("shard %d: %d %s %s", k, res.code, res.stdout, res.stderr)
		}
		dest := filepath.Join(shared, fmt.Sprintf("shard-%d.db", k))
		pub := run(t, nil, "--evidence", local, "publish", dest)
		if pub.code != 0 || !strings.Contains(pub.stdout, "the copy verifies") {
			t.Fatalf("publish shard %d: %d %s %s", k, pub.code, pub.stdout, pub.stderr)
		}
		published = append(published, dest)
	}
	before := map[string]string{}
	for _, p := range published {
		before[p] = fileDigest(t, p)
	}
	merged := filepath.Join(f.dir, "merged.db")
	res := run(t, nil, append([]string{"merge", merged}, published...)...)
	if res.code != 0 {
		t.Fatalf("merge of published copies: %d %s %s", res.code, res.stdout, res.stderr)
	}
	if got, want := dirNames(t, shared), []string{"shard-0.db", "shard-1.db"}; !slices.Equal(got, want) {
		t.Errorf("after merge the shared directory holds %q, want %q", got, want)
	}
	for _, p := range published {
		if wal, err := evidence.IsWAL(p); err != nil || wal {
			t.Errorf("%s after merge: WAL %v, %v", p, wal, err)
		}
		if fileDigest(t, p) != before[p] {
			t.Errorf("merge changed %s", p)
		}
	}
	if v := run(t, nil, "verify", "--evidence", merged); v.code != 0 {
		t.Fatalf("verify merged: %s %s", v.stdout, v.stderr)
	}
	whole := f.snapshot(t)
	if whole.code != 0 {
		t.Fatalf("unsharded: %s", whole.stderr)
	}
	got, want := capturedSet(t, f, merged), capturedSet(t, f, f.evidence)
	if len(want) != len(f.live) || !mapsEqual(got, want) {
		t.Fatalf("merged %d workspaces, unsharded %d, live %d", len(got), len(want), len(f.live))
	}
	catalog := fixture.CatalogDir(t)
	cp := writeFile(t, filepath.Join(f.dir, "cp.csv"), "tenant,workspace_id,template\nalpha,,seo-agent\nbeta,,seo-agent\ngamma,,seo-agent\n")
	planPath := filepath.Join(f.dir, "plan.json")
	pr := runAt(t, f.env, "--evidence", merged, "plan", "--inventory", f.inventory, "--cp", cp, "--catalog", catalog, "--out", planPath, "--author", "ops")
	if pr.code != 0 {
		t.Fatalf("plan on the merged store: %d %s", pr.code, pr.stderr)
	}
	p, err := plan.LoadPlan(planPath)
	if err != nil {
		t.Fatal(err)
	}
	if p.Counts["agree"] != 12 || p.Counts["already-set"] != 3 {
		t.Errorf("plan on the merged store: %v", p.Counts)
	}
	// plan also reads a published copy directly.
	pr = runAt(t, f.env, "--evidence", published[0], "plan", "--inventory", f.inventory, "--cp", cp, "--catalog", catalog,
		"--out", filepath.Join(f.dir, "plan-0.json"), "--author", "ops")
	if pr.code != 0 {
		t.Fatalf("plan on a published copy: %d %s", pr.code, pr.stderr)
	}
}

func mapsEqual[K comparable](a, b map[K]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// coverageStore is a snapshot-free store: tenant a listed with three live
// workspaces, then recs (their captures).
func coverageStore(t *testing.T, recs ...evidence.Record) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "evidence.db")
	s, err := evidence.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	recs = append([]evidence.Record{&evidence.Listing{Tenant: "a", At: at, Outcome: evidence.Listed,
		Rows: []workspace.Row{{ID: uuidFor(1, 1)}, {ID: uuidFor(1, 2)}, {ID: uuidFor(1, 3)}}}}, recs...)
	if err := s.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	return path
}

func evidenceCapture(id, outcome string) *evidence.Capture {
	at := time.Date(2026, 11, 27, 9, 1, 0, 0, time.UTC)
	c := &evidence.Capture{Tenant: "a", WorkspaceID: id, Row: workspace.Row{ID: id, Name: "w", Runtime: "claude-code", Status: "online", Kind: "workspace"},
		Method: "file", Target: "file: /x", StartedAt: at, EndedAt: at, Attempt: 1, Outcome: outcome, Provenance: map[string]string{}}
	if outcome == evidence.Captured {
		c.Content = []byte(seoConfig)
	} else {
		c.Reason = "because"
	}
	return c
}

func TestPublishExitCodesAndRefusals(t *testing.T) {
	complete := coverageStore(t, evidenceCapture(uuidFor(1, 1), evidence.Captured), evidenceCapture(uuidFor(1, 2), evidence.Captured),
		evidenceCapture(uuidFor(1, 3), evidence.Captured))
	withGone := coverageStore(t, evidenceCapture(uuidFor(1, 1), evidence.Captured), evidenceCapture(uuidFor(1, 2), evidence.Captured),
		evidenceCapture(uuidFor(1, 3), evidence.Gone))
	withFailed := coverageStore(t, evidenceCapture(uuidFor(1, 1), evidence.Captured), evidenceCapture(uuidFor(1, 2), evidence.Gone),
		evidenceCapture(uuidFor(1, 3), evidence.Failed))
	unlisted := coverageStore(t, evidenceCapture(uuidFor(1, 1), evidence.Captured), evidenceCapture(uuidFor(1, 2), evidence.Captured),
		evidenceCapture(uuidFor(1, 3), evidence.Captured), &evidence.Listing{Tenant: "b", At: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
			Outcome: evidence.Unreachable, Reason: "connection refused"})
	out := t.TempDir()
	dest := func(name string) string { return filepath.Join(out, name) }

	if r := run(t, nil, "--evidence", complete, "publish", dest("complete.db")); r.code != 0 ||
		!strings.Contains(r.stdout, "1 tenants (0 not listed), 3 live workspaces: 3 with evidence, 0 gone, 0 without evidence") {
		t.Fatalf("complete: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// Exit 3 comes after the copy is in place: the evidence is safe.
	r := run(t, nil, "--evidence", withGone, "publish", dest("gone.db"))
	if r.code != 3 || !strings.Contains(r.stdout, "1 gone") || !strings.Contains(r.stdout, "incomplete") {
		t.Fatalf("with a gone workspace: %d %q", r.code, r.stdout)
	}
	if _, err := os.Stat(dest("gone.db")); err != nil {
		t.Fatalf("exit 3 without the copy: %v", err)
	}
	if r := run(t, nil, "--evidence", withGone, "publish", dest("gone2.db"), "--allow-gone"); r.code != 0 {
		t.Fatalf("--allow-gone: %d %q", r.code, r.stdout)
	}
	if r := run(t, nil, "--evidence", withFailed, "publish", dest("failed.db"), "--allow-gone"); r.code != 3 {
		t.Fatalf("a failed capture with --allow-gone: %d %q", r.code, r.stdout)
	}
	if r := run(t, nil, "--evidence", unlisted, "publish", dest("unlisted.db"), "--allow-gone"); r.code != 3 || !strings.Contains(r.stdout, "2 tenants (1 not listed)") {
		t.Fatalf("a tenant not listed: %d %q", r.code, r.stdout)
	}
	if r := run(t, nil, "--partial-exit-code", "0", "--evidence", withFailed, "publish", dest("failed2.db")); r.code != 0 {
		t.Fatalf("--partial-exit-code 0: %d %q", r.code, r.stdout)
	}
	r = run(t, nil, "--evidence", withFailed, "publish", dest("failed3.db"), "--json")
	var doc publishJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 3 || doc.SchemaVersion != 1 || doc.Complete ||
		doc.Live != 3 || doc.WithEvidence != 1 || doc.Gone != 1 || doc.WithoutEvidence != 1 || doc.Captures != 3 || doc.ChainHead == "" {
		t.Fatalf("--json: %d %v %+v %q", r.code, err, doc, r.stdout)
	}

	// An existing DEST is refused, whatever the environment says; --force
	// replaces it.
	t.Setenv("BACKFILL_FORCE", "true")
	if r := run(t, nil, "--evidence", complete, "publish", dest("gone.db")); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("existing DEST: %d %q", r.code, r.stderr)
	}
	before := fileDigest(t, dest("gone.db"))
	if r := run(t, nil, "--evidence", complete, "publish", dest("gone.db"), "--force"); r.code != 0 {
		t.Fatalf("--force: %d %q", r.code, r.stderr)
	}
	if fileDigest(t, dest("gone.db")) == before {
		t.Fatal("--force did not replace DEST")
	}
	// A store a snapshot holds is not published part-way.
	s, err := evidence.Open(context.Background(), complete)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "--evidence", complete, "publish", dest("locked.db"))
	s.Close()
	if r.code != 1 || !strings.Contains(r.stderr, "still writing") {
		t.Fatalf("locked store: %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(dest("locked.db")); err == nil {
		t.Fatal("published a locked store")
	}
	if r := run(t, nil, "--evidence", filepath.Join(out, "nosuch.db"), "publish", dest("x.db")); r.code != 1 {
		t.Errorf("missing store: %d %q", r.code, r.stderr)
	}
	for _, n := range dirNames(t, out) {
		if strings.Contains(n, ".publish-") || strings.HasSuffix(n, "-wal") || strings.HasSuffix(n, "-shm") {
			t.Errorf("left in the destination directory: %s", n)
		}
	}
}

// --partial-exit-code turns exit 3 into another status; it is read from
// the command line only.
func TestPartialExitCode(t *testing.T) {
	f := newFleet(t, 2, 0)
	// One workspace is gone by the time of its capture: the snapshot is
	// incomplete.
	if err := os.Remove(filepath.Join(f.roots["gamma"], uuidFor(3, 0), "config.yaml")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BACKFILL_PARTIAL_EXIT_CODE", "0")
	if r := f.snapshot(t); r.code != 3 {
		t.Fatalf("incomplete snapshot: exit %d, want 3 (the variable must be ignored)\n%s", r.code, r.stdout)
	}
	r := run(t, f.env, "--partial-exit-code", "0", "--evidence", f.evidence, "snapshot", "--inventory", f.inventory)
	if r.code != 0 || !strings.Contains(r.stdout, "snapshot incomplete") {
		t.Fatalf("--partial-exit-code 0: %d\n%s", r.code, r.stdout)
	}
	r = run(t, f.env, "--evidence", f.evidence, "snapshot", "--inventory", f.inventory, "--partial-exit-code", "7")
	if r.code != 7 {
		t.Fatalf("--partial-exit-code 7 after the command: %d", r.code)
	}
	// Errors keep their own status.
	if r := run(t, nil, "--partial-exit-code", "0", "--evidence", filepath.Join(f.dir, "nosuch.db"), "verify"); r.code != 1 {
		t.Errorf("an error under --partial-exit-code 0: exit %d", r.code)
	}
}

// A tenant that left the inventory for good, its latest listing a failure,
// kept every publish of the store at exit 3; one the inventory gained and
// no run listed was counted nowhere. --inventory counts coverage over the
// inventory's tenants (and --shard over one shard of them) and names both.
func TestPublishCountsOverAnInventory(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	store := coverageStore(t, evidenceCapture(uuidFor(1, 1), evidence.Captured), evidenceCapture(uuidFor(1, 2), evidence.Captured),
		evidenceCapture(uuidFor(1, 3), evidence.Captured),
		&evidence.Listing{Tenant: "left", At: at, Outcome: evidence.Unreachable, Reason: "not listed: the run that began at T had not listed it"})
	dir := t.TempDir()
	inv := func(name string, tenants ...string) string {
		var b strings.Builder
		b.WriteString("version: 1\ntenants:\n")
		for _, tn := range tenants {
			fmt.Fprintf(&b, "  - name: %s\n    dsn: postgres://localhost/%s\n    collector:\n      file: \"/x/{workspace_id}/config.yaml\"\n", tn, tn)
		}
		return writeFile(t, filepath.Join(dir, name), b.String())
	}
	dest := func(name string) string { return filepath.Join(dir, name) }

	if r := run(t, nil, "--evidence", store, "publish", dest("all.db")); r.code != 3 || !strings.Contains(r.stdout, "2 tenants (1 not listed)") {
		t.Fatalf("without --inventory: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r := run(t, nil, "--evidence", store, "publish", dest("a.db"), "--inventory", inv("a.yaml", "a"))
	if r.code != 0 || !strings.Contains(r.stdout, "1 tenants (0 not listed), 3 live workspaces: 3 with evidence") ||
		!strings.Contains(r.stdout, "not in the inventory, so not counted: left") {
		t.Fatalf("the inventory without the tenant that left: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, nil, "--evidence", store, "publish", dest("ab.db"), "--inventory", inv("ab.yaml", "a", "new"), "--json")
	var doc publishJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 3 || doc.Complete || doc.Tenants != 2 || doc.TenantsNotListed != 1 ||
		!slices.Equal(doc.NeverListed, []string{"new"}) || !slices.Equal(doc.NotInInventory, []string{"left"}) || doc.Live != 3 {
		t.Fatalf("a tenant the store never listed: %d %v %+v", r.code, err, doc)
	}
	// Shard 0/2 or 1/2 holds "new"; the other shard, with "a", is complete.
	var codes []int
	others := 0
	for k := range 2 {
		r := run(t, nil, "--evidence", store, "publish", dest(fmt.Sprintf("shard%d.db", k)), "--inventory", dest("ab.yaml"), "--shard", fmt.Sprintf("%d/2", k))
		codes = append(codes, r.code)
		if !strings.Contains(r.stdout, fmt.Sprintf("(shard %d/2)", k)) {
			t.Errorf("shard %d: %q", k, r.stdout)
		}
		// Found by review: a tenant of another shard was called not in
		// the inventory.
		if !strings.Contains(r.stdout, "not in the inventory, so not counted: left\n") {
			t.Errorf("shard %d names tenants of other shards as not in the inventory: %q", k, r.stdout)
		}
		if strings.Contains(r.stdout, "in other shards, so not counted: a\n") {
			others++
		}
	}
	if others != 1 {
		t.Errorf("a is in the other shard of one of the two shards, named so %d times", others)
	}
	if slices.Sort(codes); !slices.Equal(codes, []int{0, 3}) {
		t.Errorf("shards of {a, new}: exit codes %v, want one 0 (a's) and one 3 (new's)", codes)
	}

	// Bad input writes nothing: a broken inventory, --shard without one,
	// and the environment, which a publish does not read for either.
	broken := writeFile(t, filepath.Join(dir, "broken.yaml"), "version: 1\ntenants:\n  - name: a\n")
	if r := run(t, nil, "--evidence", store, "publish", dest("broken.db"), "--inventory", broken); r.code != 1 || !strings.Contains(r.stderr, "broken.yaml") {
		t.Errorf("broken inventory: %d %q", r.code, r.stderr)
	}
	if r := run(t, nil, "--evidence", store, "publish", dest("shardonly.db"), "--shard", "0/2"); r.code != 2 || !strings.Contains(r.stderr, "--shard needs --inventory") {
		t.Errorf("--shard alone: %d %q", r.code, r.stderr)
	}
	for _, n := range []string{"broken.db", "shardonly.db"} {
		if _, err := os.Stat(dest(n)); err == nil {
			t.Errorf("%s written from bad input", n)
		}
	}
	t.Setenv("BACKFILL_INVENTORY", dest("ab.yaml"))
	t.Setenv("BACKFILL_SHARD", "0/2")
	if r := run(t, nil, "--evidence", store, "publish", dest("env.db")); r.code != 3 || !strings.Contains(r.stdout, "2 tenants (1 not listed)") || strings.Contains(r.stdout, "counted over") {
		t.Errorf("with BACKFILL_INVENTORY and BACKFILL_SHARD set: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
