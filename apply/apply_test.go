package apply_test

import (
	"context"
	"errors"
	"testing"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/evidence"
)

// A dry run reports every item as it would be written, and writes neither
// a row nor the journal.
func TestApplyDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 2, 2)
	before := f.rows(t)
	rep := f.apply(t, f.options(false))
	if rep.Execute || !rep.Complete() || rep.Counts[apply.WouldWrite] != 4 || len(rep.Counts) != 1 {
		t.Fatalf("dry run: execute %v, complete %v, counts %v", rep.Execute, rep.Complete(), rep.Counts)
	}
	for _, tr := range rep.Tenants {
		if tr.Err != "" || len(tr.Results) != 2 {
			t.Fatalf("tenant %s: err %q, %d results", tr.Tenant, tr.Err, len(tr.Results))
		}
		for _, r := range tr.Results {
			if r.Before != "" || r.After != planned || r.Tenant != tr.Tenant {
				t.Errorf("%s: before %q after %q tenant %q, want '' -> %q in %s", r.WorkspaceID, r.Before, r.After, r.Tenant, planned, tr.Tenant)
			}
		}
	}
	if after := f.rows(t); !equalRows(before, after) {
		t.Errorf("a dry run changed rows:\n%v\n%v", before, after)
	}
	if j := f.journal(t, evidence.OpApply); len(j) != 0 {
		t.Errorf("a dry run journaled %v", j)
	}
}

// --execute writes every agreed value and journals it, committing first;
// a second run finds the rows written and touches none of them.
func TestApplyExecuteThenAgain(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 2, 2)
	rep := f.apply(t, f.options(true))
	if !rep.Execute || !rep.Complete() || rep.Counts[apply.Applied] != 4 || len(rep.Counts) != 1 {
		t.Fatalf("execute: complete %v, counts %v", rep.Complete(), rep.Counts)
	}
	for _, tr := range rep.Tenants {
		for _, r := range tr.Results {
			if r.Before != "" || r.After != planned {
				t.Errorf("%s: %q -> %q, want '' -> %q", r.WorkspaceID, r.Before, r.After, planned)
			}
		}
	}
	written := f.rows(t)
	sameMap(t, "rows after apply", templates(written), f.each(planned))
	journal := f.journal(t, evidence.OpApply)
	for id := range f.each("") {
		if got := journal[id]; len(got) != 2 || got[0] != apply.Committing || got[1] != apply.Applied {
			t.Errorf("journal of %s: %v, want [committing applied]", id, got)
		}
	}

	for _, execute := range []bool{false, true} {
		again := f.apply(t, f.options(execute))
		if !again.Complete() || again.Counts[apply.AlreadyApplied] != 4 || len(again.Counts) != 1 {
			t.Errorf("again (execute %v): counts %v, want all %s", execute, again.Counts, apply.AlreadyApplied)
		}
	}
	if after := f.rows(t); !equalRows(written, after) {
		t.Errorf("a second apply touched rows:\n%v\n%v", written, after)
	}
	for id, got := range f.journal(t, evidence.OpApply) {
		if len(got) != 3 || got[2] != apply.AlreadyApplied {
			t.Errorf("journal of %s after a second run: %v, want one more %s", id, got, apply.AlreadyApplied)
		}
	}
}

// A row changed since the plan is never overwritten: the compare-and-swap
// does not match it and the outcome says why. The dry run predicts what
// --execute then does.
func TestApplyRowChangedSincePlan(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		change  string // SQL on the tenant's first row, $1 its id
		outcome string
		after   string // the row's template after --execute
	}{
		{"template set by someone", `UPDATE workspaces SET template = 'hand-set' WHERE id = $1`, apply.SkippedChanged, "hand-set"},
		{"already the planned value", `UPDATE workspaces SET template = 'seo-agent' WHERE id = $1`, apply.AlreadyApplied, planned},
		{"runtime changed", `UPDATE workspaces SET runtime = 'hermes' WHERE id = $1`, apply.SkippedChanged, ""},
		{"workspace removed", `UPDATE workspaces SET status = 'removed' WHERE id = $1`, apply.SkippedRemoved, ""},
		{"status NULL", `UPDATE workspaces SET status = NULL WHERE id = $1`, apply.SkippedChanged, ""},
		{"row deleted", `DELETE FROM workspaces WHERE id = $1`, apply.SkippedRemoved, "<gone>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFleet(t, 1, 2)
			changed, other := f.ids["t0"][0], f.ids["t0"][1]
			f.exec(t, "t0", tc.change, changed)

			dry := outcomes(f.apply(t, f.options(false)))
			want := map[string]string{changed: tc.outcome, other: apply.WouldWrite}
			sameMap(t, "dry run", dry, want)

			rep := f.apply(t, f.options(true))
			want[other] = apply.Applied
			sameMap(t, "execute", outcomes(rep), want)
			sameMap(t, "rows", templates(f.rows(t)), map[string]string{changed: tc.after, other: planned})
			if complete := tc.outcome == apply.AlreadyApplied; rep.Complete() != complete {
				t.Errorf("complete %v, want %v", rep.Complete(), complete)
			}
			if j := f.journal(t, evidence.OpApply)[changed]; len(j) != 1 || j[0] != tc.outcome {
				t.Errorf("journal of the changed row: %v, want [%s]", j, tc.outcome)
			}
		})
	}
}

// A tenant that cannot be reached fails as a whole, journaled, while the
// others are written.
func TestApplyUnreachableTenant(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 2)
	o := f.options(true)
	o.Inventory = unreachable(f, "t1")
	rep := f.apply(t, o)
	if rep.Complete() || rep.Counts[apply.Applied] != 4 || rep.Counts[apply.Failed] != 2 {
		t.Fatalf("complete %v, counts %v", rep.Complete(), rep.Counts)
	}
	for _, tr := range rep.Tenants {
		if failed := tr.Tenant == "t1"; (tr.Err != "") != failed {
			t.Errorf("tenant %s: err %q", tr.Tenant, tr.Err)
		}
	}
	want := f.each(planned)
	for _, id := range f.ids["t1"] {
		want[id] = ""
	}
	sameMap(t, "rows", templates(f.rows(t)), want)
	journal := f.journal(t, evidence.OpApply)
	for _, id := range f.ids["t1"] {
		if j := journal[id]; len(j) != 1 || j[0] != apply.Failed {
			t.Errorf("journal of %s: %v, want [failed]", id, j)
		}
	}

	// Once it is reachable again, a re-run writes it and nothing else.
	rep = f.apply(t, f.options(true))
	if !rep.Complete() || rep.Counts[apply.Applied] != 2 || rep.Counts[apply.AlreadyApplied] != 4 {
		t.Errorf("re-run: complete %v, counts %v", rep.Complete(), rep.Counts)
	}
	sameMap(t, "rows after the re-run", templates(f.rows(t)), f.each(planned))
}

// A canary writes the tenants it names (or the first N) and reads them
// back; one, or a --tenant filter, that selects no write is refused before
// anything is touched.
func TestApplySelection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		set      func(*apply.Options)
		refused  bool
		tenants  []string // the tenants written
		readback bool
	}{
		{name: "canary first 1", set: func(o *apply.Options) { o.Canary = 1 }, tenants: []string{"t0"}, readback: true},
		{name: "canary tenant", set: func(o *apply.Options) { o.CanaryTenants = []string{"t2"} }, tenants: []string{"t2"}, readback: true},
		{name: "tenant filter", set: func(o *apply.Options) { o.Tenants = []string{"t[01]"} }, tenants: []string{"t0", "t1"}},
		{name: "canary beyond the fleet", set: func(o *apply.Options) { o.Canary = 9 }, tenants: []string{"t0", "t1", "t2"}, readback: true},
		{name: "tenant filter selecting nothing", set: func(o *apply.Options) { o.Tenants = []string{"nobody*"} }, refused: true},
		{name: "canary tenant selecting nothing", set: func(o *apply.Options) { o.CanaryTenants = []string{"nobody"} }, refused: true},
		{name: "canary outside the filter", set: func(o *apply.Options) { o.Tenants, o.CanaryTenants = []string{"t0"}, []string{"t1"} }, refused: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFleet(t, 3, 1)
			for _, execute := range []bool{false, true} {
				o := f.options(execute)
				tc.set(&o)
				rep, err := apply.Apply(context.Background(), o)
				var refusal *plan.Refusal
				if tc.refused {
					if !errors.As(err, &refusal) {
						t.Fatalf("execute %v: %v, %v; want a refusal", execute, rep, err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				var ran []string
				for _, tr := range rep.Tenants {
					ran = append(ran, tr.Tenant)
					if execute && tc.readback && (len(tr.Readback) != 1 || tr.Readback[0].Outcome != "ok") {
						t.Errorf("tenant %s: read back %+v", tr.Tenant, tr.Readback)
					}
					if (!execute || !tc.readback) && tr.Readback != nil {
						t.Errorf("tenant %s: read back %+v without a canary --execute", tr.Tenant, tr.Readback)
					}
				}
				if !rep.Complete() || fmtSlice(ran) != fmtSlice(tc.tenants) {
					t.Errorf("execute %v: ran %v (complete %v), want %v", execute, ran, rep.Complete(), tc.tenants)
				}
			}
			want := f.each("")
			for _, tenant := range tc.tenants {
				want[f.ids[tenant][0]] = planned
			}
			sameMap(t, "rows", templates(f.rows(t)), want)
			if tc.refused {
				if j := f.journal(t, evidence.OpApply); len(j) != 0 {
					t.Errorf("a refused run journaled %v", j)
				}
			}
		})
	}
}

// A tenant with more rows than one batch of compare-and-swaps: rows changed
// in the first and second batch are each reported for what they hold, the
// others written, and rollback undoes exactly the rows written.
func TestApplyAcrossBatches(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 1, 1205)
	ids := f.ids["t0"]
	f.exec(t, "t0", `UPDATE workspaces SET template = 'hand-set' WHERE id = $1`, ids[3])
	f.exec(t, "t0", `DELETE FROM workspaces WHERE id = $1`, ids[1100])
	f.exec(t, "t0", `UPDATE workspaces SET template = 'seo-agent' WHERE id = $1`, ids[1204])

	want := map[string]string{}
	for _, id := range ids {
		want[id] = apply.WouldWrite
	}
	want[ids[3]], want[ids[1100]], want[ids[1204]] = apply.SkippedChanged, apply.SkippedRemoved, apply.AlreadyApplied
	sameMap(t, "dry run", outcomes(f.apply(t, f.options(false))), want)

	for _, id := range ids {
		if want[id] == apply.WouldWrite {
			want[id] = apply.Applied
		}
	}
	sameMap(t, "execute", outcomes(f.apply(t, f.options(true))), want)
	rows := templates(f.rows(t))
	if rows[ids[3]] != "hand-set" || rows[ids[0]] != planned || rows[ids[1204]] != planned || rows[ids[1199]] != planned {
		t.Errorf("rows after apply: %q %q %q %q", rows[ids[3]], rows[ids[0]], rows[ids[1199]], rows[ids[1204]])
	}

	rb := f.rollback(t, f.options(true))
	if rb.Counts[apply.RolledBack] != len(ids)-3 {
		t.Errorf("rollback counts %v, want %d rolled back", rb.Counts, len(ids)-3)
	}
	rows = templates(f.rows(t))
	if rows[ids[3]] != "hand-set" || rows[ids[0]] != "" || rows[ids[1204]] != planned || rows[ids[1199]] != "" {
		t.Errorf("rows after rollback: %q %q %q %q", rows[ids[3]], rows[ids[0]], rows[ids[1199]], rows[ids[1204]])
	}
}
