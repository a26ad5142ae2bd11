package apply

import (
	"context"
	"fmt"

	"backfill/apply/plan"

	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/tenantdb"
	"backfill/internal/workspace"
)

// operation is what differs between apply and rollback; everything else
// (the tenant runner, the dry run, the commit-and-journal step) is shared
// and lives in run.go.
type operation struct {
	name  string // the journal's operation: evidence.OpApply or evidence.OpRollback
	wrote string // outcome of a row its statement wrote
	would string // the dry run's outcome of a row the statement would write
	// raced is the reason for a row the statement did not match but the
	// outcome table says it would: only a concurrent change can do that.
	raced string
	// canary: the run honours Canary and CanaryTenants and reads back what
	// it wrote.
	canary bool
	// take gates the run and returns the tenant groups it works on, in plan
	// order, with the journal's history of the plan.
	take func(ctx context.Context, o Options) ([][]plan.Item, *history, error)
	// statement is the compare-and-swap for one item, which matches at most
	// one row; change gives the row's template before and after it, when it
	// matches.
	statement func(it plan.Item) (sql string, args []any)
	change    func(it plan.Item) (from, to string)
	// earlier settles what earlier runs left for the item's row, asking the
	// tenant's server about a run that died at its COMMIT.
	earlier func(ctx context.Context, st *settler, h *history, it plan.Item) (earlier, error)
	// outcome is the outcome table: what the statement makes of a row as it
	// is now, given e; would, or why the row is not written.
	outcome func(row workspace.Row, exists bool, it plan.Item, e earlier) (outcome, reason string)
	// note, if set, adds to the report what the history says beyond the
	// rows run.
	note func(rep *Report, h *history)
}

// earlier is what earlier runs left for one row.
type earlier struct {
	// done: the statement must not run (an earlier run did its write, or
	// may have and the server cannot say).
	done bool
	// outcome and why: rollback's outcome to report whatever the row holds;
	// for apply, why alone says the server could not settle the write.
	outcome, why string
}

// applying writes the plan's agreed values over empty templates.
var applying = operation{
	name: evidence.OpApply, wrote: Applied, would: WouldWrite, canary: true,
	raced: "the row changed while being written; re-run apply",
	take:  applyItems,
	statement: func(it plan.Item) (string, []any) {
		return tenantdb.SetTemplateSQL, []any{it.WorkspaceID, it.Action.SetTemplate, it.Runtime, it.Kind}
	},
	change:  func(it plan.Item) (string, string) { return "", it.Action.SetTemplate },
	earlier: earlierWrite,
	outcome: func(row workspace.Row, exists bool, it plan.Item, e earlier) (string, string) {
		outcome, reason := applyOutcome(row, exists, it, e.done)
		if outcome == SkippedChanged && e.why != "" {
			reason = e.why + "; not written"
		}
		return outcome, reason
	},
}

// rollingBack empties what apply wrote, while the row still holds it.
var rollingBack = operation{
	name: evidence.OpRollback, wrote: RolledBack, would: WouldRollBack,
	raced: "the row changed while being rolled back; re-run rollback",
	take:  undoable,
	statement: func(it plan.Item) (string, []any) {
		return tenantdb.ClearTemplateSQL, []any{it.WorkspaceID, it.Action.SetTemplate}
	},
	change:  func(it plan.Item) (string, string) { return it.Action.SetTemplate, "" },
	earlier: earlierRollback,
	outcome: func(row workspace.Row, exists bool, it plan.Item, e earlier) (string, string) {
		if e.outcome != "" {
			return e.outcome, e.why
		}
		return rollbackOutcome(row.Template, exists, it.Action.SetTemplate)
	},
	note: func(rep *Report, h *history) { rep.EarlierRollbacks, rep.Superseded = h.RolledBack, len(h.Superseded) },
}

// applyItems gates apply and returns the agreed items it selects. A dry run
// is checked too: it refuses a rolled-back plan as --execute would, and a
// forged plan's writes must not show as what would happen.
func applyItems(ctx context.Context, o Options) ([][]plan.Item, *history, error) {
	h, err := loadHistory(ctx, o.Store, o.Plan.Fingerprint)
	if err != nil {
		return nil, nil, err
	}
	if o.Execute {
		err = gate(ctx, o, h)
	} else {
		err = h.refusal(o.Plan.Fingerprint)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := plan.Rederive(ctx, o.Plan, o.Store, o.Catalog, o.CP); err != nil {
		return nil, nil, err
	}
	if o.Execute {
		// The plan executed is kept in the store it journals to, whatever
		// store it was made from, so that its undo never depends on a file.
		if err := plan.Keep(ctx, o.Store, o.Plan, ""); err != nil {
			return nil, nil, fmt.Errorf("keep the plan in %s: %w", o.Store.Path(), err)
		}
	}
	if err := checkTenants(o.Inventory, o.Plan.Agreed()); err != nil {
		return nil, nil, err
	}
	groups := o.selected(plan.ByTenant(o.Plan.Agreed()))
	if len(o.CanaryTenants) > 0 {
		groups = filterGroups(groups, o.CanaryTenants)
	} else if o.Canary > 0 && o.Canary < len(groups) {
		groups = groups[:o.Canary]
	}
	// A canary or a filter that selects no write must not pass for one that
	// ran: a script gating the wave on its exit status would go ahead.
	if len(groups) == 0 && (o.Canary > 0 || len(o.CanaryTenants) > 0 || len(o.Tenants) > 0) {
		return nil, nil, &plan.Refusal{Reason: fmt.Sprintf("the tenants selected (--tenant %v, --canary-tenant %v) have no writes in plan %s",
			o.Tenants, o.CanaryTenants, o.Plan.Fingerprint)}
	}
	return groups, h, nil
}

// undoable gates rollback and returns the plan's items it may still undo,
// in the tenants selected: those the journal shows this plan wrote, and no
// rollback or other plan's write has taken from it since.
func undoable(ctx context.Context, o Options) ([][]plan.Item, *history, error) {
	if err := verifyEvidence(ctx, o); err != nil {
		return nil, nil, err
	}
	if o.Execute && o.AllowedSigners != nil {
		// Under signers a journal row alone, which a writer of the store
		// can add, must not get an unapproved plan's values cleared: the
		// plan undone is one that people signed, as for apply.
		if err := checkApprovals(ctx, o); err != nil {
			return nil, nil, err
		}
	}
	h, err := loadHistory(ctx, o.Store, o.Plan.Fingerprint)
	if err != nil {
		return nil, nil, err
	}
	var items []plan.Item
	undone := 0 // written by the plan in the selected tenants, and undone or written over since
	for _, it := range o.Plan.Agreed() {
		// What there is to undo is counted over the selected tenants only.
		if len(o.Tenants) > 0 && !inventory.MatchTenant(it.Tenant, o.Tenants) {
			continue
		}
		switch k := itemKey(it); {
		case h.Undoable[k]:
			items = append(items, it)
		case h.Applied[k] || h.Superseded[k] != "":
			undone++
		}
	}
	switch {
	case len(items) > 0:
	case len(o.Tenants) > 0:
		// Run again once its writes there are undone, it succeeds as a
		// rollback of the whole plan would; only tenants it never wrote
		// in are nothing to roll back.
		if undone > 0 {
			return nil, nil, fmt.Errorf("%w in the tenants selected (--tenant %v): its %d writes there were rolled back by an earlier run or written over by another plan since%w",
				ErrNothingApplied, o.Tenants, undone, silent{ErrAllUndone})
		}
		return nil, nil, fmt.Errorf("%w in the tenants selected (--tenant %v)", ErrNothingApplied, o.Tenants)
	case h.RolledBack+len(h.Superseded) > 0:
		return nil, nil, fmt.Errorf("%w: %d of its writes were rolled back by an earlier run, %d written over by another plan since%w",
			ErrNothingApplied, h.RolledBack, len(h.Superseded), silent{ErrAllUndone})
	default:
		return nil, nil, ErrNothingApplied
	}
	if err := checkTenants(o.Inventory, items); err != nil {
		return nil, nil, err
	}
	return plan.ByTenant(items), h, nil
}

// earlierWrite: a row this plan wrote in an earlier run is never written
// again, whatever it holds now. When that run died at its COMMIT the server
// is asked; when it cannot say, the row counts as written (never risk a
// second write) and why says so.
func earlierWrite(ctx context.Context, st *settler, h *history, it plan.Item) (earlier, error) {
	k := itemKey(it)
	xid, pending := h.Pending[k]
	if h.Applied[k] || !pending {
		return earlier{done: h.Applied[k]}, nil
	}
	settled, err := st.settle(ctx, evidence.OpApply, it.WorkspaceID, xid)
	switch {
	case err != nil:
		return earlier{}, err
	case settled == Committed:
		return earlier{done: true}, nil
	case settled == NotCommitted:
		return earlier{}, nil
	default:
		return earlier{done: true, why: settled}, nil
	}
}

// earlierRollback: a rollback that committed already undid the row (what it
// holds now is someone else's); an apply that never committed never wrote
// it; and when the server cannot say, the row is left alone.
func earlierRollback(ctx context.Context, st *settler, h *history, it plan.Item) (earlier, error) {
	k := itemKey(it)
	leave := func(outcome, why string) (earlier, error) {
		return earlier{done: true, outcome: outcome, why: why}, nil
	}
	if t, ok := h.RollbackPending[k]; ok {
		settled, err := st.settle(ctx, evidence.OpRollback, it.WorkspaceID, t)
		switch {
		case err != nil:
			return earlier{}, err
		case settled == Committed:
			return leave(AlreadyRolledBack, fmt.Sprintf("an earlier rollback (transaction %d) committed; not touched", t.ID))
		case settled != NotCommitted:
			return leave(SkippedChanged, settled+"; not touched")
		}
	}
	if t, ok := h.Pending[k]; ok {
		settled, err := st.settle(ctx, evidence.OpApply, it.WorkspaceID, t)
		switch {
		case err != nil:
			return earlier{}, err
		case settled == NotCommitted:
			return leave(SkippedChanged, fmt.Sprintf("this plan's write (transaction %d) never committed; not touched", t.ID))
		case settled != Committed:
			return leave(SkippedChanged, settled+"; not touched")
		}
	}
	return earlier{}, nil
}

// nullStatus explains an empty-template row that the compare-and-swap
// cannot match: SQL's NULL <> 'removed' is not true.
const nullStatus = "status is NULL, which the compare-and-swap (status <> 'removed') never matches; not written"

// applyOutcome is apply's outcome table: what SetTemplateSQL makes of a row
// as it is now, WouldWrite or why it is not written. wroteBefore: this
// plan's journal shows the row already written once.
func applyOutcome(row workspace.Row, exists bool, it plan.Item, wroteBefore bool) (outcome, reason string) {
	cur, status, set := row.Template, row.Status, it.Action.SetTemplate
	switch {
	case !exists:
		return SkippedRemoved, "the row no longer exists"
	case cur == set:
		return AlreadyApplied, "the row already holds the planned value"
	case status == "removed":
		return SkippedRemoved, "the workspace is removed"
	case row.Runtime != it.Runtime || row.Kind != it.Kind:
		return SkippedChanged, fmt.Sprintf("the row's runtime and kind are now %q and %q, the plan reconciled %q and %q; not written",
			row.Runtime, row.Kind, it.Runtime, it.Kind)
	case wroteBefore:
		return SkippedChanged, fmt.Sprintf("this plan wrote the row once and it is now %q; not written twice", cur)
	case cur == "" && status == "":
		return SkippedChanged, nullStatus
	case cur == "":
		return WouldWrite, "would write"
	default:
		return SkippedChanged, fmt.Sprintf("template changed since the plan: now %q; not overwritten", cur)
	}
}

// rollbackOutcome is rollback's outcome table: what ClearTemplateSQL makes
// of a row as it is now, WouldRollBack or why it is not touched.
func rollbackOutcome(cur string, exists bool, written string) (outcome, reason string) {
	switch {
	case !exists:
		return SkippedRemoved, "the row no longer exists"
	case cur == written:
		return WouldRollBack, "would set template back to ''"
	case cur == "":
		return AlreadyRolledBack, "template is already ''"
	default:
		return SkippedChanged, fmt.Sprintf("template changed since apply: now %q; not touched", cur)
	}
}

// silent wraps an error for errors.Is without adding its text to a
// message that already says it.
type silent struct{ err error }

func (s silent) Error() string { return "" }
func (s silent) Unwrap() error { return s.err }
