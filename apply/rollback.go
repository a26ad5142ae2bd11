package apply

import (
	"context"
	"fmt"

	"backfill/apply/plan"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/tenantdb"
)

// undoable returns the plan's items that rollback may still undo, in plan
// order, and the history that decided it.
func undoable(ctx context.Context, s *evidence.Store, p *plan.Plan) ([]plan.Item, *history, error) {
	h, err := loadHistory(ctx, s, p.Fingerprint)
	if err != nil {
		return nil, nil, err
	}
	var out []plan.Item
	for _, it := range p.Agreed() {
		if h.Undoable[itemKey(it)] {
			out = append(out, it)
		}
	}
	return out, h, nil
}

// Rollback undoes the plan's writes with the inverse compare-and-swap: a row
// is emptied only while it still holds the value apply wrote.
func Rollback(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if err := verifyEvidence(ctx, o); err != nil {
		return nil, err
	}
	items, h, err := undoable(ctx, o.Store, o.Plan)
	if err != nil {
		return nil, err
	}
	if len(o.Tenants) > 0 {
		// What there is to undo is counted over the selected tenants only.
		var sel []plan.Item
		for _, it := range items {
			if MatchTenant(it.Tenant, o.Tenants) {
				sel = append(sel, it)
			}
		}
		if len(sel) == 0 {
			return nil, fmt.Errorf("%w in the tenants selected (--tenant %v)", ErrNothingApplied, o.Tenants)
		}
		items = sel
	}
	if len(items) == 0 && h.RolledBack+len(h.Superseded) > 0 {
		return nil, fmt.Errorf("%w: %d of its writes were rolled back by an earlier run, %d written over by another plan since",
			ErrNothingApplied, h.RolledBack, len(h.Superseded))
	}
	if len(items) == 0 {
		return nil, ErrNothingApplied
	}
	if err := checkTenants(Options{Plan: &plan.Plan{Items: items}, Inventory: o.Inventory}); err != nil {
		return nil, err
	}
	rep := runTenants(ctx, o, o.selected(plan.ByTenant(items)), func(ctx context.Context, t inventory.Tenant, items []plan.Item) TenantReport {
		if !o.Execute {
			return dryRun(ctx, o, t, items, true, h)
		}
		return rollbackTenant(ctx, o, t, items, h)
	})
	rep.EarlierRollbacks, rep.Superseded = h.RolledBack, len(h.Superseded)
	return rep, nil
}

func rollbackTenant(ctx context.Context, o Options, t inventory.Tenant, items []plan.Item, h *history) TenantReport {
	return writeTenant(ctx, o, t, items, evidence.OpRollback, RolledBack, func(ctx context.Context, tx pgx.Tx, st *settler) ([]Result, string) {
		var results []Result
		for _, it := range items {
			written := it.Action.SetTemplate
			r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName}
			outcome, why, err := earlierRollback(ctx, st, h, it)
			if err != nil {
				return nil, fmt.Sprintf("workspace %s: %s; the tenant's transaction was rolled back", it.WorkspaceID, err)
			}
			if outcome != "" {
				cur, _, _, err := tenantdb.Current(ctx, tx, it.WorkspaceID)
				if err != nil {
					return nil, fmt.Sprintf("workspace %s: re-read: %s", it.WorkspaceID, o.redact(err))
				}
				r.Before, r.After, r.Outcome, r.Reason = cur, cur, outcome, why
				results = append(results, r)
				continue
			}
			tag, err := tx.Exec(ctx, tenantdb.ClearTemplateSQL, it.WorkspaceID, written)
			if err != nil {
				return nil, fmt.Sprintf("workspace %s: %s; the tenant's transaction was rolled back", it.WorkspaceID, o.redact(err))
			}
			if tag.RowsAffected() == 1 {
				r.Before, r.After, r.Outcome = written, "", RolledBack
			} else {
				cur, _, exists, err := tenantdb.Current(ctx, tx, it.WorkspaceID)
				if err != nil {
					return nil, fmt.Sprintf("workspace %s: re-read: %s", it.WorkspaceID, o.redact(err))
				}
				r.Before, r.After = cur, cur
				r.Outcome, r.Reason = rollbackOutcome(cur, exists, written)
				if r.Outcome == WouldRollBack {
					// Only a concurrent change between the UPDATE and the read.
					r.Outcome, r.Reason = SkippedChanged, "the row changed while being rolled back; re-run rollback"
				}
			}
			results = append(results, r)
		}
		return results, ""
	})
}

// earlierRollback settles what earlier runs that died at their COMMIT left
// for a row rollback would undo: the outcome to report without touching it,
// or "" to go ahead. A rollback that committed already undid the row (what
// it holds now is someone else's); an apply that never committed never
// wrote it; and when the server cannot say, the row is left alone.
func earlierRollback(ctx context.Context, st *settler, h *history, it plan.Item) (outcome, why string, err error) {
	k := itemKey(it)
	if t, ok := h.RollbackPending[k]; ok {
		settled, err := st.settle(ctx, evidence.OpRollback, it.WorkspaceID, t)
		switch {
		case err != nil:
			return "", "", err
		case settled == Committed:
			return AlreadyRolledBack, fmt.Sprintf("an earlier rollback (transaction %d) committed; not touched", t.ID), nil
		case settled != NotCommitted:
			return SkippedChanged, settled + "; not touched", nil
		}
	}
	if t, ok := h.Pending[k]; ok {
		settled, err := st.settle(ctx, evidence.OpApply, it.WorkspaceID, t)
		switch {
		case err != nil:
			return "", "", err
		case settled == NotCommitted:
			return SkippedChanged, fmt.Sprintf("this plan's write (transaction %d) never committed; not touched", t.ID), nil
		case settled != Committed:
			return SkippedChanged, settled + "; not touched", nil
		}
	}
	return "", "", nil
}
