package apply

import (
	"context"
	"fmt"
	"time"

	"backfill/internal/evidence"
	"backfill/internal/tenantdb"
)

// history is the journal replayed in order, per workspace key, as it bears
// on one plan.
type history struct {
	// applied holds the rows this plan wrote and saw committed (or found
	// holding its value after a run that died at COMMIT); apply never
	// writes them again, whatever they hold now.
	applied map[string]bool
	// undoable holds the rows rollback may still undo: written by this
	// plan, or journaled as committing by a run that died before its final
	// entry, and neither rolled back nor written by another plan since.
	undoable map[string]bool
	// rolledBack counts the rows a rollback of this plan already undid.
	rolledBack int
	// superseded holds, per row, the plan that wrote it after this plan's
	// write was undone; it is that plan's now, not this one's to undo.
	superseded map[string]string
	// pending holds, per row, the tenant transaction of this plan's apply
	// whose commit no later entry settled (the run died at COMMIT, or
	// COMMIT failed); rollbackPending the same for its rollback.
	pending, rollbackPending map[string]tenantdb.Tx
	// rollback: a rollback of this plan wrote or tried to commit, first at
	// rollbackAt.
	rollback   bool
	rollbackAt time.Time
}

// loadHistory replays the whole journal: other plans' writes matter too.
func loadHistory(ctx context.Context, s *evidence.Store, fingerprint string) (*history, error) {
	entries, err := s.Journal(ctx, "")
	if err != nil {
		return nil, err
	}
	return replay(entries, fingerprint), nil
}

// replay folds journal entries, oldest first, into plan fingerprint's history.
func replay(entries []evidence.Entry, fingerprint string) *history {
	h := &history{applied: map[string]bool{}, undoable: map[string]bool{}, superseded: map[string]string{},
		pending: map[string]tenantdb.Tx{}, rollbackPending: map[string]tenantdb.Tx{}}
	undone := map[string]bool{}
	for _, e := range entries {
		k := e.Tenant + "/" + e.WorkspaceID
		wrote := e.Operation == evidence.OpApply && (e.Outcome == Applied || e.Outcome == Committing)
		if e.Fingerprint != fingerprint {
			// Another plan's compare-and-swap matched only an empty
			// template: this plan's write was gone by then.
			if wrote && h.undoable[k] {
				delete(h.undoable, k)
				h.superseded[k] = e.Fingerprint
			}
			continue
		}
		if wrote {
			// This plan's own write: the row is its again.
			delete(h.superseded, k)
		}
		switch {
		case e.Operation == evidence.OpApply && (e.Outcome == Applied || e.Outcome == Committed):
			h.applied[k], h.undoable[k] = true, true
			delete(h.pending, k)
		case e.Operation == evidence.OpApply && e.Outcome == Committing:
			h.undoable[k] = true
			h.pending[k] = pendingTx(e.Reason)
		case e.Operation == evidence.OpApply && e.Outcome == NotCommitted:
			// The write never landed: the row is not this plan's.
			delete(h.undoable, k)
			delete(h.pending, k)
		case e.Operation == evidence.OpApply && e.Outcome == AlreadyApplied && h.undoable[k]:
			// A run died around its COMMIT and the re-run found the value:
			// count it written, so it is never written a second time.
			h.applied[k] = true
		case e.Operation == evidence.OpRollback:
			switch e.Outcome {
			case Committing:
				h.rollbackPending[k] = pendingTx(e.Reason)
			case Committed, NotCommitted, RolledBack, AlreadyRolledBack:
				delete(h.rollbackPending, k)
			}
			if e.Outcome == Committing || e.Outcome == RolledBack || e.Outcome == AlreadyRolledBack {
				if !h.rollback {
					h.rollback, h.rollbackAt = true, e.At
				}
			}
			if e.Outcome == RolledBack || e.Outcome == AlreadyRolledBack || e.Outcome == Committed {
				// Once undone, a row is not this plan's to undo again: a
				// later plan or a person may have set the same value since.
				if h.undoable[k] {
					undone[k] = true
				}
				delete(h.undoable, k)
			}
		}
	}
	h.rolledBack = len(undone)
	return h
}

// refusal is why the plan may not write again, if it may not: a rollback of
// it wrote or tried to commit. Applying again would write rows a second
// time; a new plan shows the reviewer the fleet as it is now.
func (h *history) refusal(fingerprint string) error {
	if !h.rollback {
		return nil
	}
	return &GateError{fmt.Sprintf("plan %s was rolled back (%s); make and approve a new plan to write again", fingerprint, h.rollbackAt.Format(time.RFC3339))}
}
