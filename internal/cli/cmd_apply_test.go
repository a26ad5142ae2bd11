package cli

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
)

// countWrites installs a trigger that logs every change of template, so
// tests can check each agreed row is written exactly once.
func countWrites(t *testing.T, dsn string) {
	t.Helper()
	execSQL(t, dsn, `CREATE TABLE template_writes (id uuid, template text);
CREATE FUNCTION log_template_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.template IS DISTINCT FROM OLD.template THEN
    INSERT INTO template_writes VALUES (NEW.id, NEW.template);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER log_template_write AFTER UPDATE ON workspaces FOR EACH ROW EXECUTE FUNCTION log_template_write();`)
}

func execSQL(t *testing.T, dsn, q string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

type rowState struct {
	template  string
	updatedAt time.Time
	writes    int
}

func (f *planFixture) row(t *testing.T, tenant, name string) rowState {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), f.dsns[tenant])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s rowState
	err = conn.QueryRow(context.Background(), `SELECT template, updated_at, (SELECT count(*) FROM template_writes w WHERE w.id = workspaces.id)
  FROM workspaces WHERE id = $1`, f.ids[name]).Scan(&s.template, &s.updatedAt, &s.writes)
	if err != nil {
		t.Fatalf("%s/%s: %v", tenant, name, err)
	}
	return s
}

// agreed are the fixture's agree items: tenant -> workspace names.
var agreed = map[string][]string{"acme": {"seo-1", "seo-2-restarted"}, "concierge": {"org-concierge"}}

func (f *planFixture) planAndApprove(t *testing.T) {
	t.Helper()
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
}

func (f *planFixture) apply(t *testing.T, extra ...string) result {
	t.Helper()
	return runAt(t, f.env, append([]string{"apply", "--inventory", "inventory.yaml", "--plan", "plan.json"}, extra...)...)
}

func TestApplyEndToEnd(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	before := f.row(t, "acme", "seo-1")

	dry := f.apply(t)
	if dry.code != 0 || !strings.Contains(dry.stdout, "dry run") || strings.Count(dry.stdout, "would-write") < 3 {
		t.Fatalf("dry run: %d\n%s%s", dry.code, dry.stdout, dry.stderr)
	}
	if got := f.row(t, "acme", "seo-1"); got != before {
		t.Fatalf("the dry run wrote: %+v", got)
	}

	res := f.apply(t, "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "applied 3") {
		t.Fatalf("apply: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	written := map[string]rowState{}
	for tenant, names := range agreed {
		for _, n := range names {
			s := f.row(t, tenant, n)
			written[n] = s
			if s.template == "" || s.writes != 1 {
				t.Errorf("%s: %+v", n, s)
			}
		}
	}
	if written["seo-1"].template != "seo-agent" || written["org-concierge"].template != "platform-agent" {
		t.Fatalf("wrong values: %+v", written)
	}
	// Nothing that is not agree was touched.
	for name, tenant := range map[string]string{"never-captured": "acme", "claimed-other": "acme", "plain-default": "acme", "orphan": "nocp"} {
		if s := f.row(t, tenant, name); s.template != "" || s.writes != 0 {
			t.Errorf("%s was written: %+v", name, s)
		}
	}

	again := f.apply(t, "--execute")
	if again.code != 0 || !strings.Contains(again.stdout, "already-applied 3") {
		t.Fatalf("re-run: %d\n%s%s", again.code, again.stdout, again.stderr)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s != written[n] {
				t.Errorf("%s changed on re-run: %+v -> %+v", n, written[n], s)
			}
		}
	}

	st := runAt(t, nil, "status")
	if !strings.Contains(st.stdout, "APPLIED") || !strings.Contains(st.stdout, "acme") {
		t.Errorf("status:\n%s", st.stdout)
	}
	recs := exportJSON(t, &fleet{evidence: filepath.Join(f.dir, "evidence.db")})
	if r := recs["acme/"+f.ids["seo-1"]]; r.ApplyOutcome != "already-applied" || r.AppliedValue != "seo-agent" {
		t.Errorf("export apply outcome: %+v", r)
	}

	// Rollback: someone has since changed one written row; it is left alone,
	// and the dry run already exits 3 for it.
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'hand-fixed' WHERE id = $1", f.ids["seo-2-restarted"])
	rdry := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json")
	if rdry.code != 3 || !strings.Contains(rdry.stdout, "would-roll-back 2") || !strings.Contains(rdry.stdout, "skipped-changed 1") || f.row(t, "acme", "seo-1").template != "seo-agent" {
		t.Fatalf("rollback dry run: %d\n%s%s", rdry.code, rdry.stdout, rdry.stderr)
	}
	rb := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if rb.code != 3 || !strings.Contains(rb.stdout, "rolled-back 2") || !strings.Contains(rb.stdout, "skipped-changed 1") {
		t.Fatalf("rollback: %d\n%s%s", rb.code, rb.stdout, rb.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Errorf("seo-1 not rolled back: %+v", s)
	}
	if s := f.row(t, "acme", "seo-2-restarted"); s.template != "hand-fixed" {
		t.Errorf("rollback touched a changed row: %+v", s)
	}
	if v := runAt(t, nil, "verify"); v.code != 0 {
		t.Fatalf("verify: %s", v.stdout)
	}
}

func TestApplyNeverOverwritesRowsChangedSincePlan(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'someone-else' WHERE id = $1", f.ids["seo-1"])
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET status = 'removed' WHERE id = $1", f.ids["seo-2-restarted"])
	res := f.apply(t, "--execute")
	if res.code != 3 {
		t.Fatalf("exit %d, want 3\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []string{"skipped-changed", `now "someone-else"`, "skipped-removed", "applied 1"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, res.stdout)
		}
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "someone-else" || s.writes != 1 {
		t.Errorf("changed row: %+v", s)
	}
	if s := f.row(t, "acme", "seo-2-restarted"); s.template != "" || s.writes != 0 {
		t.Errorf("removed row written: %+v", s)
	}
	if s := f.row(t, "concierge", "org-concierge"); s.template != "platform-agent" {
		t.Errorf("other tenant not applied: %+v", s)
	}
}

func TestApplyRefusalsTouchNoTenant(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	// Every tenant of this inventory points at a closed port: any attempt
	// to connect would show as a connection error instead of the refusal.
	dead := map[string]string{"USER": "alice"}
	for k := range f.env {
		if strings.HasSuffix(k, "_DSN") {
			dead[k] = "postgres://backfill:pw@127.0.0.1:1/x?connect_timeout=1"
		}
	}
	refuse := func(name, want string, args ...string) {
		t.Helper()
		res := runAt(t, dead, append([]string{"apply", "--inventory", "inventory.yaml", "--execute"}, args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, want) || strings.Contains(res.stdout+res.stderr, "connect") {
			t.Errorf("%s: exit %d, want 1 with %q and no connection\n%s%s", name, res.code, want, res.stdout, res.stderr)
		}
	}
	refuse("unapproved", "not approved", "--plan", "plan.json")

	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
	orig, _ := os.ReadFile("plan.json")
	os.WriteFile("edited.json", []byte(strings.Replace(string(orig), `"set_template": "seo-agent"`, `"set_template": "seo-agenT"`, 1)), 0o644)
	refuse("edited", "edited", "--plan", "edited.json")

	// Tampered evidence: one byte of a cited capture's content.
	alterContent(t, "evidence.db")
	refuse("tampered", "does not verify", "--plan", "plan.json")

	// Evidence replaced by another store.
	os.Rename("evidence.db", "evidence.old")
	os.Remove("evidence.db-wal")
	os.Remove("evidence.db-shm")
	other, err := evidence.Open(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	refuse("replaced evidence", "not approved", "--plan", "plan.json")
	os.Remove("evidence.db")
	refuse("deleted evidence", "evidence.db", "--plan", "plan.json")
}

// waitForLockWait polls until a backfill session is waiting on a lock.
func waitForLockWait(t *testing.T, dsn string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
  WHERE application_name = 'backfill' AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	t.Fatal("no backfill session ever waited on the lock")
}

// lockRow holds FOR UPDATE on one row until the returned func is called.
func lockRow(t *testing.T, dsn, id string) (release func()) {
	return holdLock(t, dsn, "SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE", id)
}

// holdLock runs stmt in a transaction of its own and keeps that transaction,
// and the locks it took, open until release (or the test's end).
func holdLock(t *testing.T, dsn, stmt string, args ...any) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, stmt, args...); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			tx.Rollback(ctx)
			conn.Close(ctx)
		}
	}
	t.Cleanup(release)
	return release
}

func TestApplyLockedRowFailsOnlyItsTenant(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	release := lockRow(t, f.dsns["acme"], f.ids["seo-1"])
	start := time.Now()
	res := f.apply(t, "--execute", "--lock-timeout", "300ms")
	if res.code != 3 || !strings.Contains(res.stdout, "lock timeout") {
		t.Fatalf("exit %d, want 3 with a lock timeout\n%s%s", res.code, res.stdout, res.stderr)
	}
	t.Logf("returned after %v", time.Since(start))
	if s := f.row(t, "concierge", "org-concierge"); s.template != "platform-agent" {
		t.Errorf("the other tenant was not applied: %+v", s)
	}
	if s := f.row(t, "acme", "seo-2-restarted"); s.template != "" {
		t.Errorf("the locked tenant's transaction was not rolled back: %+v", s)
	}
	release()
	if res := f.apply(t, "--execute"); res.code != 0 || !strings.Contains(res.stdout, "applied 2") {
		t.Fatalf("re-run: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

func TestApplyTenantDatabaseStoppedMidApply(t *testing.T) {
	f := newPlanFixture(t, "concierge")
	f.planAndApprove(t)
	// acme goes first (plan order, one tenant at a time) and waits on a lock;
	// meanwhile the concierge tenant's server goes down.
	release := lockRow(t, f.dsns["acme"], f.ids["seo-1"])
	done := make(chan result, 1)
	go func() { done <- f.apply(t, "--execute", "--concurrency", "1", "--lock-timeout", "60s") }()
	waitForLockWait(t, f.dsns["acme"])
	if err := f.clusters["concierge"].Stop(); err != nil {
		t.Fatal(err)
	}
	release()
	res := <-done
	if res.code != 3 || !strings.Contains(res.stdout, "tenant concierge: failed 1") {
		t.Fatalf("exit %d, want 3 with concierge failed\n%s%s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" {
		t.Errorf("acme not applied: %+v", s)
	}
	if err := f.clusters["concierge"].Restart(); err != nil {
		t.Fatal(err)
	}
	if res := f.apply(t, "--execute"); res.code != 0 || !strings.Contains(res.stdout, "applied 1") {
		t.Fatalf("re-run: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.writes != 1 {
				t.Errorf("%s written %d times", n, s.writes)
			}
		}
	}
}

func TestApplySurvivesSIGKILL(t *testing.T) {
	bin := backfillBinary(t)
	f := newPlanFixture(t)
	f.planAndApprove(t)
	// acme is applied and journaled, then the process dies while concierge
	// waits on a lock.
	release := lockRow(t, f.dsns["concierge"], f.ids["org-concierge"])
	cmd := exec.Command(bin, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute",
		"--concurrency", "1", "--lock-timeout", "60s")
	cmd.Env = processEnv(f.env)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForLockWait(t, f.dsns["concierge"])
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	release()
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" {
		t.Fatalf("acme was not applied before the kill: %+v\n%s", s, out.String())
	}

	res := f.apply(t, "--execute")
	if res.code != 0 {
		t.Fatalf("re-run: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	store, err := evidence.OpenExisting(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	entries, err := store.Journal(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]int{}
	for _, e := range entries {
		if e.Outcome == "applied" {
			applied[e.WorkspaceID]++
		}
	}
	for tenant, names := range agreed {
		for _, n := range names {
			s := f.row(t, tenant, n)
			if s.writes != 1 || s.template == "" {
				t.Errorf("%s: %+v, want written exactly once", n, s)
			}
			if applied[f.ids[n]] != 1 {
				t.Errorf("%s: %d applied journal entries, want 1", n, applied[f.ids[n]])
			}
		}
	}
	if v := runAt(t, nil, "verify"); v.code != 0 {
		t.Fatalf("verify: %s", v.stdout)
	}
}

func TestApplyCanaryTouchesOnlyFirstTenants(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	res := f.apply(t, "--execute", "--canary", "1")
	if res.code != 0 || !strings.Contains(res.stdout, "canary read-back") || strings.Count(res.stdout, "  ok ") != 2 {
		t.Fatalf("canary: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" {
		t.Errorf("canary tenant not applied: %+v", s)
	}
	if s := f.row(t, "concierge", "org-concierge"); s.template != "" || s.writes != 0 {
		t.Errorf("canary touched a later tenant: %+v", s)
	}
}

// alterContent changes one byte of every stored config that has "SEO" in
// it, past the store's triggers, as someone with the file could.
func alterContent(t *testing.T, store string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"DROP TRIGGER content_no_update",
		"UPDATE content SET bytes = CAST(replace(CAST(bytes AS TEXT), 'SEO', 'SEX') AS BLOB)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}
