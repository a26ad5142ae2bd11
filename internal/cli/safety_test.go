package cli

import (
	"context"
	"os"
	"strings"
	"testing"

	"backfill/apply"
	"backfill/internal/evidence"
)

func TestExecuteIsCommandLineOnly(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	// A variable left over in an operator's shell must not turn the dry
	// run into a write.
	t.Setenv("BACKFILL_EXECUTE", "true")
	res := f.apply(t)
	if res.code != 0 || !strings.Contains(res.stdout, "dry run") {
		t.Fatalf("exit %d\n%s", res.code, res.stdout)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Fatalf("BACKFILL_EXECUTE wrote: %+v", s)
	}
	t.Setenv("BACKFILL_ALLOW_SELF_APPROVAL", "true")
	if res := runAt(t, nil, "approve", "plan.json", "--by", "ALICE"); res.code != 1 || !strings.Contains(res.stderr, "author") {
		t.Fatalf("self-approval through the environment or case: %d %s", res.code, res.stderr)
	}
}

func TestStrayArgumentsAreUsageErrors(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	for _, args := range [][]string{
		{"apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "false"},
		{"status", "extra"},
		{"show", "plan.json", "plan.json"},
		{"merge", "only-out.db"},
	} {
		if res := runAt(t, f.env, args...); res.code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, res.code, res.stderr)
		}
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Fatalf("a refused command wrote: %+v", s)
	}
}

func TestApplyAfterRollbackIsRefused(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	if res := f.apply(t, "--execute"); res.code != 0 {
		t.Fatalf("apply: %s", res.stdout)
	}
	if res := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute"); res.code != 0 {
		t.Fatalf("rollback: %d %s", res.code, res.stdout)
	}
	res := f.apply(t, "--execute")
	if res.code != 1 || !strings.Contains(res.stderr, "rolled back") {
		t.Fatalf("apply after rollback: %d %s %s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 2 {
		t.Fatalf("row after a refused re-apply: %+v", s)
	}
}

func TestCPSourcePasswordNeverEchoed(t *testing.T) {
	f := newPlanFixture(t)
	t.Chdir(f.dir)
	for _, src := range []string{"host=cp-db password=kw-secret-771 dbname=cp", "postgres://cp:url-secret-552@127.0.0.1:1/cp?connect_timeout=1"} {
		res := runAt(t, f.env, "plan", "--inventory", "inventory.yaml", "--cp", src, "--cp-query", "SELECT 1", "--catalog", "catalog", "--out", "p.json")
		if res.code == 0 || strings.Contains(res.stdout+res.stderr, "secret-") {
			t.Errorf("--cp %q: exit %d, output %q", strings.Fields(src)[0], res.code, res.stderr)
		}
	}
	if _, err := os.Stat("p.json"); err == nil {
		t.Error("a failed plan wrote a plan file")
	}
}

func TestCanaryReadsBackOnlyWrittenRows(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'someone-else' WHERE id = $1", f.ids["seo-1"])
	res := f.apply(t, "--execute", "--canary", "1")
	if res.code != 3 || strings.Contains(res.stdout, "mismatch") || strings.Count(res.stdout, "  ok ") != 1 {
		t.Fatalf("canary: %d\n%s", res.code, res.stdout)
	}
}

func TestApplyRefusesAnotherStoreEvenWithAnApproval(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	p, err := apply.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	// Another store, holding an approval of this very fingerprint but not
	// the evidence the plan was made from.
	os.Rename("evidence.db", "evidence.orig")
	os.Remove("evidence.db-wal")
	os.Remove("evidence.db-shm")
	other, err := evidence.Open(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	err = other.Append(context.Background(), &evidence.Approval{Fingerprint: p.Fingerprint, By: "mallory", PlanAuthor: p.Author, At: planClock})
	other.Close()
	if err != nil {
		t.Fatal(err)
	}
	res := f.apply(t, "--execute")
	if res.code != 1 || !strings.Contains(res.stderr, "other evidence") {
		t.Fatalf("exit %d: %s%s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Fatalf("written: %+v", s)
	}
}
