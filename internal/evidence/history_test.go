package evidence

import (
	"context"
	"fmt"
	"testing"
)

// An old store's committing entry names its transaction only in its
// reason; History still finds it there, so the crash is settled. Entries
// with the typed columns are read from them alone.
func TestHistoryReadsLegacyAndTypedTransactions(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, oldStore(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := s.History(ctx, "sha256:0ld")
	if err != nil {
		t.Fatal(err)
	}
	w1 := Key{"acme", "w1"}
	if got, want := h.Pending[w1], (TenantTx{ID: 7301, SystemID: "7440012345678901234", Timeline: 2}); got != want || !h.Undoable[w1] {
		t.Fatalf("legacy pending = %+v (undoable %v), want %+v", got, h.Undoable[w1], want)
	}
	typed := TenantTx{ID: 42, SystemID: "7440012345678901234", Timeline: 3}
	err = s.Append(ctx,
		&Entry{Fingerprint: "sha256:0ld", Operation: OpApply, Tenant: "acme", WorkspaceID: "w2", Outcome: Committing,
			Reason: "written, commit pending in transaction 7 of system 1 timeline 00000001", Tx: &typed, At: oldAt},
		// Not an old entry: no typed transaction means none, whatever the
		// reason's words.
		&Entry{Fingerprint: "sha256:0ld", Operation: OpApply, Tenant: "acme", WorkspaceID: "w3", Outcome: Committing,
			Reason: "written", At: oldAt})
	if err != nil {
		t.Fatal(err)
	}
	if h, err = s.History(ctx, "sha256:0ld"); err != nil {
		t.Fatal(err)
	}
	if got := h.Pending[Key{"acme", "w2"}]; got != typed {
		t.Errorf("typed pending = %+v, want %+v", got, typed)
	}
	if got, ok := h.Pending[Key{"acme", "w3"}]; !ok || got != (TenantTx{}) {
		t.Errorf("unnamed pending = %+v %v, want the zero TenantTx", got, ok)
	}
}

// Latest is the outcome status and export show per workspace, across plans.
func TestHistoryLatest(t *testing.T) {
	e := func(plan, op, ws, outcome string) Entry {
		return Entry{Fingerprint: plan, Operation: op, Outcome: outcome, Tenant: "t", WorkspaceID: ws, After: plan + "-" + outcome}
	}
	h := Replay([]Entry{
		e("A", OpApply, "w1", Committing), e("A", OpApply, "w1", Applied),
		e("A", OpApply, "w2", Committing), e("A", OpApply, "w2", Committed), // settled: not an outcome of its own
		e("A", OpApply, "w3", Applied), e("A", OpRollback, "w3", Committing), e("A", OpRollback, "w3", RolledBack),
		e("A", OpApply, "w4", Applied), e("A", OpRollback, "w4", "skipped-changed"), // touched nothing
		e("A", OpApply, "w5", Applied), e("B", OpApply, "w5", AlreadyApplied),
		e("A", OpApply, "w6", Applied), e("A", OpRollback, "w6", AlreadyRolledBack),
	}, "")
	got := map[string]string{}
	for k, v := range h.Latest {
		got[k.WorkspaceID] = v.Outcome + " " + v.After
	}
	want := map[string]string{
		"w1": "applied A-applied", "w2": "committing A-committing", "w3": "rolled-back A-rolled-back",
		"w4": "applied A-applied", "w5": "already-applied B-already-applied", "w6": "rolled-back A-already-rolled-back",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("latest = %v\nwant     %v", got, want)
	}
	if len(h.Applied)+len(h.Undoable)+len(h.Pending) != 0 || h.Rollback {
		t.Errorf("no plan given, yet plan state: %+v", h)
	}
}
