package apply

import (
	"fmt"
	"testing"

	"backfill/internal/evidence"
)

func TestReplay(t *testing.T) {
	e := func(op, outcome string) evidence.Entry {
		return evidence.Entry{Operation: op, Outcome: outcome, Tenant: "t", WorkspaceID: "w"}
	}
	apply := func(outcome string) evidence.Entry { return e(evidence.OpApply, outcome) }
	rollback := func(outcome string) evidence.Entry { return e(evidence.OpRollback, outcome) }
	cases := []struct {
		name              string
		entries           []evidence.Entry
		applied, undoable bool
		rolledBack        int
	}{
		{"nothing", nil, false, false, 0},
		{"applied", []evidence.Entry{apply(Committing), apply(Applied)}, true, true, 0},
		{"died before the final entry: undoable, not known applied", []evidence.Entry{apply(Committing)}, false, true, 0},
		{"commit failed: still undoable, the outcome is unknown", []evidence.Entry{apply(Committing), apply(Failed)}, false, true, 0},
		{"skipped", []evidence.Entry{apply(SkippedChanged)}, false, false, 0},
		{"already applied by someone else is not ours to undo", []evidence.Entry{apply(AlreadyApplied)}, false, false, 0},
		{"rolled back", []evidence.Entry{apply(Applied), rollback(Committing), rollback(RolledBack)}, true, false, 1},
		{"rollback died at COMMIT: still undoable", []evidence.Entry{apply(Applied), rollback(Committing)}, true, true, 0},
		{"rollback re-run found it already undone", []evidence.Entry{apply(Applied), rollback(Committing), rollback(Failed), rollback(AlreadyRolledBack)}, true, false, 1},
		{"rollback skipped a changed row: still undoable", []evidence.Entry{apply(Applied), rollback(SkippedChanged)}, true, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := replay(tc.entries)
			got := fmt.Sprint(h.applied["t/w"], h.undoable["t/w"], h.rolledBack)
			if want := fmt.Sprint(tc.applied, tc.undoable, tc.rolledBack); got != want {
				t.Errorf("applied, undoable, rolled back = %s, want %s", got, want)
			}
		})
	}
}
