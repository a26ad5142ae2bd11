package apply

import (
	"fmt"
	"testing"
	"time"

	"backfill/apply/plan"

	"backfill/internal/evidence"
	"backfill/internal/tenantdb"
)

// A committing entry names its tenant transaction in typed columns; one
// journaled before they existed names it only in its reason, which replay
// still reads.
func TestPendingTx(t *testing.T) {
	tx := tenantdb.Tx{ID: 7301, System: 7440012345678901234, Timeline: "00000002"}
	k := evidence.Key{Tenant: "t", WorkspaceID: "w"}
	pendingTx := func(e *evidence.Entry) (evidence.TenantTx, bool) {
		e.Fingerprint, e.Operation, e.Outcome, e.Tenant, e.WorkspaceID = "A", evidence.OpApply, Committing, "t", "w"
		t, ok := evidence.Replay([]evidence.Entry{*e}, "A").Pending[k]
		return t, ok
	}
	o := Options{Plan: &plan.Plan{Fingerprint: "A"}, Now: time.Now}
	typed := committing(o, evidence.OpApply, Result{Tenant: "t", WorkspaceID: "w"}, tx)
	if typed.Tx == nil || typed.Reason != pendingReason(tx) {
		t.Fatalf("committing entry = %+v", typed)
	}
	typed.Reason = "not a reason replay reads"
	if got, ok := pendingTx(typed); !ok || serverTx(got) != tx {
		t.Errorf("typed: pending %+v %v, want %+v", got, ok, tx)
	}
	for reason, want := range map[string]tenantdb.Tx{
		pendingReason(tx): tx, "written, commit pending": {}, "in transaction 12": {}, "in transaction x of system 3 timeline 1": {}, "in transaction 12 of system 3": {}, "": {},
	} {
		got, ok := pendingTx(&evidence.Entry{Reason: reason})
		if !ok || (want == tenantdb.Tx{}) != (got == evidence.TenantTx{}) || (want != tenantdb.Tx{} && serverTx(got) != want) {
			t.Errorf("pendingTx(%q) = %+v, want %+v", reason, got, want)
		}
	}
}

func TestReplay(t *testing.T) {
	e := func(plan, op, outcome string) evidence.Entry {
		return evidence.Entry{Fingerprint: plan, Operation: op, Outcome: outcome, Tenant: "t", WorkspaceID: "w"}
	}
	apply := func(outcome string) evidence.Entry { return e("A", evidence.OpApply, outcome) }
	rollback := func(outcome string) evidence.Entry { return e("A", evidence.OpRollback, outcome) }
	other := func(outcome string) evidence.Entry { return e("B", evidence.OpApply, outcome) }
	cases := []struct {
		name              string
		entries           []evidence.Entry
		applied, undoable bool
		rolledBack        int
		superseded        bool
		refused           bool
		pending           bool // an apply's commit awaits settling
		rollbackPending   bool // a rollback's commit awaits settling
	}{
		{name: "nothing"},
		{name: "applied", entries: []evidence.Entry{apply(Committing), apply(Applied)}, applied: true, undoable: true},
		{name: "died before the final entry: undoable, pending", entries: []evidence.Entry{apply(Committing)}, undoable: true, pending: true},
		{name: "died at COMMIT, settled committed", entries: []evidence.Entry{apply(Committing), apply(Committed), apply(AlreadyApplied)}, applied: true, undoable: true},
		{name: "died before COMMIT, settled not committed", entries: []evidence.Entry{apply(Committing), apply(NotCommitted)}},
		{name: "not committed, then a person's value found: not ours", entries: []evidence.Entry{apply(Committing), apply(NotCommitted), apply(AlreadyApplied)}},
		{name: "not committed, then written: ours", entries: []evidence.Entry{apply(Committing), apply(NotCommitted), apply(Committing), apply(Applied)}, applied: true, undoable: true},
		{name: "unsettled, the value found: applied, still pending", entries: []evidence.Entry{apply(Committing), apply(AlreadyApplied)}, applied: true, undoable: true, pending: true},
		{name: "commit failed: still undoable and pending", entries: []evidence.Entry{apply(Committing), apply(Failed)}, undoable: true, pending: true},
		{name: "skipped", entries: []evidence.Entry{apply(SkippedChanged)}},
		{name: "already applied by someone else is not ours", entries: []evidence.Entry{apply(AlreadyApplied)}},
		{name: "rolled back", entries: []evidence.Entry{apply(Applied), rollback(Committing), rollback(RolledBack)}, applied: true, rolledBack: 1, refused: true},
		{name: "rollback died at COMMIT: still undoable, plan refused", entries: []evidence.Entry{apply(Applied), rollback(Committing)},
			applied: true, undoable: true, refused: true, rollbackPending: true},
		{name: "rollback died at COMMIT, settled committed: undone", entries: []evidence.Entry{apply(Applied), rollback(Committing), rollback(Committed)},
			applied: true, rolledBack: 1, refused: true},
		{name: "rollback died before COMMIT, settled not committed: still undoable", entries: []evidence.Entry{apply(Applied), rollback(Committing), rollback(NotCommitted)},
			applied: true, undoable: true, refused: true},
		{name: "rollback died at COMMIT, then another plan wrote the row: not ours", entries: []evidence.Entry{apply(Applied), rollback(Committing), other(Committing), other(Applied)},
			applied: true, superseded: true, refused: true, rollbackPending: true},
		{name: "rollback died at COMMIT, then another plan died at its COMMIT: not ours", entries: []evidence.Entry{apply(Applied), rollback(Committing), other(Committing)},
			applied: true, superseded: true, refused: true, rollbackPending: true},
		{name: "superseded, then this plan wrote the row again: ours", entries: []evidence.Entry{apply(Committing), other(Applied), apply(Committing), apply(Applied)},
			applied: true, undoable: true},
		{name: "rollback re-run found it already undone", entries: []evidence.Entry{apply(Applied), rollback(Committing), rollback(Failed), rollback(AlreadyRolledBack)},
			applied: true, rolledBack: 1, refused: true},
		{name: "rollback skipped a changed row: still undoable, plan not refused", entries: []evidence.Entry{apply(Applied), rollback(SkippedChanged)}, applied: true, undoable: true},
		{name: "rollback failed to connect: plan not refused", entries: []evidence.Entry{apply(Applied), rollback(Failed)}, applied: true, undoable: true},
		{name: "another plan found it already set: still ours", entries: []evidence.Entry{apply(Applied), other(AlreadyApplied)}, applied: true, undoable: true},
		{name: "another plan wrote first: nothing of ours", entries: []evidence.Entry{other(Applied), apply(AlreadyApplied)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &history{evidence.Replay(tc.entries, "A")}
			k := evidence.Key{Tenant: "t", WorkspaceID: "w"}
			_, pending := h.Pending[k]
			_, rollbackPending := h.RollbackPending[k]
			got := fmt.Sprint(h.Applied[k], h.Undoable[k], h.RolledBack, h.Superseded[k] != "", h.refusal("A") != nil, pending, rollbackPending)
			if want := fmt.Sprint(tc.applied, tc.undoable, tc.rolledBack, tc.superseded, tc.refused, tc.pending, tc.rollbackPending); got != want {
				t.Errorf("applied, undoable, rolled back, superseded, refused, pending, rollback pending = %s, want %s", got, want)
			}
		})
	}
}
