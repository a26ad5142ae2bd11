package evidence

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Journal outcomes that History gives a meaning to. Apply and rollback
// journal others too (skipped-changed, skipped-removed, and Failed, which
// has the same text as a failed capture); to History they are outcomes that
// wrote nothing.
const (
	Applied           = "applied"
	AlreadyApplied    = "already-applied"
	Committing        = "committing"    // journaled just before COMMIT by apply and rollback; a crash leaves it as the trace of the write
	Committed         = "committed"     // a later run learnt from the server that a committing entry's transaction committed
	NotCommitted      = "not-committed" // it rolled back: that run wrote nothing
	RolledBack        = "rolled-back"
	AlreadyRolledBack = "already-rolled-back"
)

// PlanHistory is the journal replayed in order as it bears on one plan,
// per workspace, and the latest standing outcome of every workspace.
// It is the one reading of the journal that apply, rollback, status and
// export share.
type PlanHistory struct {
	// Fingerprint is the plan's.
	Fingerprint string
	// Applied holds the rows this plan wrote and saw committed (or found
	// holding its value after a run that died at COMMIT); apply never
	// writes them again, whatever they hold now.
	Applied map[Key]bool
	// Undoable holds the rows rollback may still undo: written by this
	// plan, or journaled as committing by a run that died before its final
	// entry, and neither rolled back nor written by another plan since.
	Undoable map[Key]bool
	// RolledBack counts the rows a rollback of this plan already undid.
	RolledBack int
	// Superseded holds, per row, the plan that wrote it after this plan's
	// write was undone; it is that plan's now, not this one's to undo.
	Superseded map[Key]string
	// Pending holds, per row, the tenant transaction of this plan's apply
	// whose commit no later entry settled (the run died at COMMIT, or
	// COMMIT failed); RollbackPending the same for its rollback. The zero
	// TenantTx when the entry does not name it.
	Pending, RollbackPending map[Key]TenantTx
	// Rollback: a rollback of this plan wrote or tried to commit, first at
	// RollbackAt.
	Rollback   bool
	RollbackAt time.Time
	// Latest is every workspace's most recent standing outcome, whatever
	// the plan: what a later run learnt of an earlier one (committed,
	// not-committed) is skipped, as an outcome of its own follows; so is a
	// rollback that touched nothing, which leaves the apply outcome
	// standing; a rollback that undid the row or found it undone reads as
	// RolledBack.
	Latest map[Key]Entry
}

// History replays the whole journal for plan fingerprint ("" for none, when
// only Latest is wanted): other plans' writes matter too.
func (s *Store) History(ctx context.Context, fingerprint string) (*PlanHistory, error) {
	entries, err := s.Journal(ctx, "")
	if err != nil {
		return nil, err
	}
	return Replay(entries, fingerprint), nil
}

// Replay folds journal entries, oldest first, into plan fingerprint's
// history.
func Replay(entries []Entry, fingerprint string) *PlanHistory {
	h := &PlanHistory{Fingerprint: fingerprint, Applied: map[Key]bool{}, Undoable: map[Key]bool{}, Superseded: map[Key]string{},
		Pending: map[Key]TenantTx{}, RollbackPending: map[Key]TenantTx{}, Latest: map[Key]Entry{}}
	undone := map[Key]bool{}
	for _, e := range entries {
		k := Key{Tenant: e.Tenant, WorkspaceID: e.WorkspaceID}
		h.latest(k, e)
		wrote := e.Operation == OpApply && (e.Outcome == Applied || e.Outcome == Committing)
		if e.Fingerprint != fingerprint {
			// Another plan's compare-and-swap matched only an empty
			// template: this plan's write was gone by then.
			if wrote && h.Undoable[k] {
				delete(h.Undoable, k)
				h.Superseded[k] = e.Fingerprint
			}
			continue
		}
		if wrote {
			// This plan's own write: the row is its again.
			delete(h.Superseded, k)
		}
		switch {
		case e.Operation == OpApply && (e.Outcome == Applied || e.Outcome == Committed):
			h.Applied[k], h.Undoable[k] = true, true
			delete(h.Pending, k)
		case e.Operation == OpApply && e.Outcome == Committing:
			h.Undoable[k] = true
			h.Pending[k] = e.tenantTx()
		case e.Operation == OpApply && e.Outcome == NotCommitted:
			// The write never landed: the row is not this plan's.
			delete(h.Undoable, k)
			delete(h.Pending, k)
		case e.Operation == OpApply && e.Outcome == AlreadyApplied && h.Undoable[k]:
			// A run died around its COMMIT and the re-run found the value:
			// count it written, so it is never written a second time.
			h.Applied[k] = true
		case e.Operation == OpRollback:
			switch e.Outcome {
			case Committing:
				h.RollbackPending[k] = e.tenantTx()
			case Committed, NotCommitted, RolledBack, AlreadyRolledBack:
				delete(h.RollbackPending, k)
			}
			if e.Outcome == Committing || e.Outcome == RolledBack || e.Outcome == AlreadyRolledBack {
				if !h.Rollback {
					h.Rollback, h.RollbackAt = true, e.At
				}
			}
			if e.Outcome == RolledBack || e.Outcome == AlreadyRolledBack || e.Outcome == Committed {
				// Once undone, a row is not this plan's to undo again: a
				// later plan or a person may have set the same value since.
				if h.Undoable[k] {
					undone[k] = true
				}
				delete(h.Undoable, k)
			}
		}
	}
	h.RolledBack = len(undone)
	return h
}

// latest records e as k's standing outcome, if it is one.
func (h *PlanHistory) latest(k Key, e Entry) {
	switch {
	case e.Outcome == Committed || e.Outcome == NotCommitted:
		// What a later run learnt of an earlier one; an outcome of its own follows.
	case e.Operation == OpRollback && e.Outcome != RolledBack && e.Outcome != AlreadyRolledBack:
		// A rollback that touched nothing leaves the apply outcome standing.
	default:
		if e.Operation == OpRollback {
			e.Outcome = RolledBack
		}
		h.Latest[k] = e
	}
}

// tenantTx is the transaction a committing entry names: its typed columns,
// or, for an entry journaled before they existed (schema version 5), its
// reason; the zero TenantTx when it names none.
func (e *Entry) tenantTx() TenantTx {
	if e.Tx != nil {
		return *e.Tx
	}
	return legacyTx(e.Reason)
}

// legacyTx reads the transaction out of a reason as backfill wrote it
// before the journal had typed columns: "... in transaction ID of system
// SYSTEM timeline TIMELINE", the timeline in hex as in WAL file names.
// Entries written since never need it: theirs is in Entry.Tx.
func legacyTx(reason string) TenantTx {
	i := strings.LastIndex(reason, " transaction ")
	if i < 0 {
		return TenantTx{}
	}
	var id, system int64
	var timeline string
	if _, err := fmt.Sscanf(reason[i:], " transaction %d of system %d timeline %s", &id, &system, &timeline); err != nil {
		return TenantTx{}
	}
	tl, err := strconv.ParseInt(timeline, 16, 64)
	if err != nil {
		return TenantTx{}
	}
	return TenantTx{ID: id, SystemID: strconv.FormatInt(system, 10), Timeline: tl}
}
