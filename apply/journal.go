package apply

import (
	"context"

	"backfill/internal/evidence"
)

// history is a plan's journal replayed in order, per workspace key.
type history struct {
	// applied holds the rows this plan's apply saw committed; apply never
	// writes them again, whatever they hold now.
	applied map[string]bool
	// undoable holds the rows rollback may still undo: applied, or
	// journaled as committing by a run that died before its final entry,
	// and not rolled back since.
	undoable map[string]bool
	// rolledBack counts the rows a rollback of this plan already undid.
	rolledBack int
}

func loadHistory(ctx context.Context, s *evidence.Store, fingerprint string) (*history, error) {
	entries, err := s.Journal(ctx, fingerprint)
	if err != nil {
		return nil, err
	}
	return replay(entries), nil
}

// replay folds journal entries, oldest first, into a history.
func replay(entries []evidence.Entry) *history {
	h := &history{applied: map[string]bool{}, undoable: map[string]bool{}}
	undone := map[string]bool{}
	for _, e := range entries {
		k := e.Tenant + "/" + e.WorkspaceID
		switch {
		case e.Operation == evidence.OpApply && e.Outcome == Applied:
			h.applied[k], h.undoable[k] = true, true
		case e.Operation == evidence.OpApply && e.Outcome == Committing:
			h.undoable[k] = true
		case e.Operation == evidence.OpRollback && (e.Outcome == RolledBack || e.Outcome == AlreadyRolledBack):
			// Once undone, a row is not this plan's to undo again: a later
			// plan or a person may have set the same value since.
			if h.undoable[k] {
				undone[k] = true
			}
			delete(h.undoable, k)
		}
	}
	h.rolledBack = len(undone)
	return h
}
