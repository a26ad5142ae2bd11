package apply_test

import (
	"context"
	"errors"
	"testing"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/evidence"
)

// Rollback restores ” where apply wrote, journaled; a second rollback has
// nothing left to undo, and the plan may not write again.
func TestRollbackThenAgain(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 2, 2)
	f.apply(t, f.options(true))
	written := f.rows(t)

	dry := f.rollback(t, f.options(false))
	if dry.Execute || !dry.Complete() || dry.Counts[apply.WouldRollBack] != 4 || len(dry.Counts) != 1 {
		t.Fatalf("dry run: complete %v, counts %v", dry.Complete(), dry.Counts)
	}
	for _, tr := range dry.Tenants {
		for _, r := range tr.Results {
			if r.Before != planned || r.After != "" {
				t.Errorf("dry run %s: %q -> %q, want %q -> ''", r.WorkspaceID, r.Before, r.After, planned)
			}
		}
	}
	if after := f.rows(t); !equalRows(written, after) {
		t.Errorf("a dry run of rollback changed rows")
	}
	if j := f.journal(t, evidence.OpRollback); len(j) != 0 {
		t.Errorf("a dry run of rollback journaled %v", j)
	}

	rep := f.rollback(t, f.options(true))
	if !rep.Complete() || rep.Counts[apply.RolledBack] != 4 || len(rep.Counts) != 1 || rep.EarlierRollbacks != 0 {
		t.Fatalf("rollback: complete %v, counts %v, earlier %d", rep.Complete(), rep.Counts, rep.EarlierRollbacks)
	}
	for _, tr := range rep.Tenants {
		for _, r := range tr.Results {
			if r.Before != planned || r.After != "" {
				t.Errorf("%s: %q -> %q, want %q -> ''", r.WorkspaceID, r.Before, r.After, planned)
			}
		}
	}
	undone := f.rows(t)
	sameMap(t, "rows after rollback", templates(undone), f.each(""))
	for id, j := range f.journal(t, evidence.OpRollback) {
		if len(j) != 2 || j[0] != apply.Committing || j[1] != apply.RolledBack {
			t.Errorf("journal of %s: %v, want [committing rolled-back]", id, j)
		}
	}

	for _, execute := range []bool{false, true} {
		if rep, err := apply.Rollback(context.Background(), f.options(execute)); !errors.Is(err, apply.ErrNothingApplied) {
			t.Errorf("second rollback (execute %v): %+v, %v; want %v", execute, rep, err, apply.ErrNothingApplied)
		}
		var refusal *plan.Refusal
		if rep, err := apply.Apply(context.Background(), f.options(execute)); !errors.As(err, &refusal) {
			t.Errorf("apply after rollback (execute %v): %+v, %v; want a refusal", execute, rep, err)
		}
	}
	if after := f.rows(t); !equalRows(undone, after) {
		t.Errorf("a second rollback or a refused apply touched rows")
	}
}

// Rollback empties a row only while it holds what apply wrote; a row
// changed since is left alone, and stays for a later rollback to try.
func TestRollbackRowChangedSinceApply(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 1, 4)
	f.apply(t, f.options(true))
	ids := f.ids["t0"]
	f.exec(t, "t0", `UPDATE workspaces SET template = 'hand-set' WHERE id = $1`, ids[0])
	f.exec(t, "t0", `UPDATE workspaces SET template = '' WHERE id = $1`, ids[1])
	f.exec(t, "t0", `DELETE FROM workspaces WHERE id = $1`, ids[2])
	want := map[string]string{ids[0]: apply.SkippedChanged, ids[1]: apply.AlreadyRolledBack, ids[2]: apply.SkippedRemoved, ids[3]: apply.WouldRollBack}

	sameMap(t, "dry run", outcomes(f.rollback(t, f.options(false))), want)
	rep := f.rollback(t, f.options(true))
	want[ids[3]] = apply.RolledBack
	sameMap(t, "rollback", outcomes(rep), want)
	if rep.Complete() {
		t.Errorf("a rollback that skipped rows is complete")
	}
	rows := map[string]string{ids[0]: "hand-set", ids[1]: "", ids[2]: "<gone>", ids[3]: ""}
	sameMap(t, "rows", templates(f.rows(t)), rows)

	// The skipped rows are still this plan's to undo; the ones undone are
	// counted, not touched.
	again := f.rollback(t, f.options(true))
	sameMap(t, "second rollback", outcomes(again), map[string]string{ids[0]: apply.SkippedChanged, ids[2]: apply.SkippedRemoved})
	if again.EarlierRollbacks != 2 {
		t.Errorf("earlier rollbacks %d, want 2", again.EarlierRollbacks)
	}
	sameMap(t, "rows after the second rollback", templates(f.rows(t)), rows)
}

// Rollback with nothing to undo, in the plan or in the tenants selected,
// says so and touches nothing.
func TestRollbackNothingToUndo(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 2, 1)
	if _, err := apply.Rollback(context.Background(), f.options(true)); !errors.Is(err, apply.ErrNothingApplied) {
		t.Errorf("rollback of a plan never applied: %v", err)
	}
	o := f.options(true)
	o.Tenants = []string{"t0"}
	f.apply(t, o)
	o.Tenants = []string{"t1"}
	if _, err := apply.Rollback(context.Background(), o); !errors.Is(err, apply.ErrNothingApplied) {
		t.Errorf("rollback of a tenant never applied: %v", err)
	}
	sameMap(t, "rows", templates(f.rows(t)), map[string]string{f.ids["t0"][0]: planned, f.ids["t1"][0]: ""})
}

// A tenant that cannot be reached fails while the others are rolled back;
// a re-run finishes it.
func TestRollbackUnreachableTenant(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 1)
	f.apply(t, f.options(true))
	o := f.options(true)
	o.Inventory = unreachable(f, "t0")
	rep := f.rollback(t, o)
	if rep.Complete() || rep.Counts[apply.RolledBack] != 2 || rep.Counts[apply.Failed] != 1 {
		t.Fatalf("complete %v, counts %v", rep.Complete(), rep.Counts)
	}
	if rep.Tenants[0].Tenant != "t0" || rep.Tenants[0].Err == "" {
		t.Errorf("tenant %s: err %q, want t0 failed", rep.Tenants[0].Tenant, rep.Tenants[0].Err)
	}
	sameMap(t, "rows", templates(f.rows(t)), map[string]string{f.ids["t0"][0]: planned, f.ids["t1"][0]: "", f.ids["t2"][0]: ""})

	rep = f.rollback(t, f.options(true))
	if !rep.Complete() || rep.Counts[apply.RolledBack] != 1 || len(rep.Counts) != 1 || rep.EarlierRollbacks != 2 {
		t.Errorf("re-run: complete %v, counts %v, earlier %d", rep.Complete(), rep.Counts, rep.EarlierRollbacks)
	}
	sameMap(t, "rows after the re-run", templates(f.rows(t)), f.each(""))
}
