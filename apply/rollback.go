package apply

import (
	"context"
	"fmt"

	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/tenantdb"
)

// Written returns the plan's items that the journal shows this plan wrote
// (applied, or journaled as committing when a run died before its final
// entry), in plan order.
func Written(ctx context.Context, s *evidence.Store, p *Plan) ([]Item, error) {
	entries, err := s.Journal(ctx, p.Fingerprint)
	if err != nil {
		return nil, err
	}
	wrote := map[string]bool{}
	for _, e := range entries {
		if e.Operation == evidence.OpApply && (e.Outcome == Applied || e.Outcome == Committing) {
			wrote[e.Tenant+"/"+e.WorkspaceID] = true
		}
	}
	var out []Item
	for _, it := range p.Agreed() {
		if wrote[it.Key()] {
			out = append(out, it)
		}
	}
	return out, nil
}

// Rollback undoes the plan's writes with the inverse compare-and-swap: a row
// is set back to ” only while it still holds the value apply wrote.
func Rollback(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if err := verifyEvidence(ctx, o); err != nil {
		return nil, err
	}
	items, err := Written(ctx, o.Store, o.Plan)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, ErrNothingApplied
	}
	if err := checkTenants(Options{Plan: &Plan{Items: items}, Inventory: o.Inventory}); err != nil {
		return nil, err
	}
	return runTenants(ctx, o, group(items), func(ctx context.Context, t inventory.Tenant, items []Item) TenantReport {
		if !o.Execute {
			return dryRun(ctx, o, t, items, true)
		}
		return rollbackTenant(ctx, o, t, items)
	}), nil
}

func rollbackTenant(ctx context.Context, o Options, t inventory.Tenant, items []Item) TenantReport {
	ctx = context.WithoutCancel(ctx)
	tr := TenantReport{Tenant: t.Name}
	fail := func(reason string) TenantReport {
		return journalOp(ctx, o, failAll(o, t.Name, items, reason), evidence.OpRollback)
	}
	conn, err := tenantdb.Connect(ctx, t.DSN, o.sessionOptions())
	if err != nil {
		return fail("connect: " + o.redact(err))
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fail("begin: " + o.redact(err))
	}
	defer tx.Rollback(ctx)
	for _, it := range items {
		written := it.Action.SetTemplate
		r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName}
		tag, err := tx.Exec(ctx, tenantdb.ClearTemplateSQL, it.WorkspaceID, written)
		if err != nil {
			return fail(fmt.Sprintf("workspace %s: %s; the tenant's transaction was rolled back", it.WorkspaceID, o.redact(err)))
		}
		if tag.RowsAffected() == 1 {
			r.Before, r.After, r.Outcome = written, "", RolledBack
		} else {
			cur, _, exists, err := tenantdb.Current(ctx, tx, it.WorkspaceID)
			if err != nil {
				return fail(fmt.Sprintf("workspace %s: re-read: %s", it.WorkspaceID, o.redact(err)))
			}
			r.Before, r.After = cur, cur
			switch {
			case !exists:
				r.Outcome, r.Reason = SkippedRemoved, "the row no longer exists"
			case cur == "":
				r.Outcome, r.Reason = AlreadyRolledBack, "template is already ''"
			default:
				r.Outcome, r.Reason = SkippedChanged, fmt.Sprintf("template changed since apply: now %q; not touched", cur)
			}
		}
		tr.Results = append(tr.Results, r)
	}
	return commitJournaled(ctx, o, tx, evidence.OpRollback, RolledBack, tr, items, "re-run rollback")
}
