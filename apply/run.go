package apply

import (
	"context"
	"fmt"
	"sync"

	"backfill/apply/plan"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/tenantdb"
)

// run gates op, then runs it on each tenant selected: a dry run without
// Execute, else one transaction per tenant, committed and journaled.
func (op *operation) run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	groups, h, err := op.take(ctx, o)
	if err != nil {
		return nil, err
	}
	canary := op.canary && (o.Canary > 0 || len(o.CanaryTenants) > 0)
	rep := runTenants(ctx, o, groups, func(ctx context.Context, t inventory.Tenant, items []plan.Item) TenantReport {
		if !o.Execute {
			return op.dryRun(ctx, o, t, items, h)
		}
		tr := op.writeTenant(ctx, o, t, items, h)
		if canary {
			tr.Readback = readBack(ctx, o, t, items, tr.Results)
		}
		return tr
	})
	if op.note != nil {
		op.note(rep, h)
	}
	return rep, nil
}

// runTenants runs fn for each tenant group, Concurrency at a time, starting
// them in plan order, and collects reports in plan order.
func runTenants(ctx context.Context, o Options, groups [][]plan.Item, fn func(context.Context, inventory.Tenant, []plan.Item) TenantReport) *Report {
	reports := make([]TenantReport, len(groups))
	next := make(chan int, len(groups))
	for i := range groups {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for w := 0; w < min(o.Concurrency, len(groups)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				items := groups[i]
				t, _ := o.Inventory.Tenant(items[0].Tenant)
				if ctx.Err() != nil {
					// Interrupted: tenants not yet begun are left untouched.
					reports[i] = failAll(t.Name, items, "not started: interrupted")
					continue
				}
				reports[i] = fn(ctx, t, items)
			}
		}()
	}
	wg.Wait()
	rep := &Report{Execute: o.Execute, Tenants: reports, Counts: map[string]int{}}
	for _, tr := range reports {
		for _, r := range tr.Results {
			rep.Counts[r.Outcome]++
		}
	}
	return rep
}

func failAll(tenant string, items []plan.Item, reason string) TenantReport {
	tr := TenantReport{Tenant: tenant, Err: reason}
	for _, it := range items {
		tr.Results = append(tr.Results, Result{Tenant: tenant, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName,
			After: it.DBTemplate, Outcome: Failed, Reason: reason})
	}
	return tr
}

// dryRun compares items with the rows as they are now, read-only, using
// the same rules as the writes it stands in for. What it learns of earlier
// runs' transactions is not journaled: a dry run records nothing.
func (op *operation) dryRun(ctx context.Context, o Options, t inventory.Tenant, items []plan.Item, h *history) TenantReport {
	tr := TenantReport{Tenant: t.Name}
	conn, err := tenantdb.Connect(ctx, t.DSN, o.readOptions())
	if err != nil {
		return failAll(t.Name, items, "connect: "+o.redact(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	moved := ""
	err = tenantdb.ReadOnly(ctx, conn, func(tx pgx.Tx) error {
		var err error
		if moved, err = o.moved(ctx, tx, t.Name); err != nil || moved != "" {
			return err
		}
		st := newSettler(o, tx, t.Name)
		for _, it := range items {
			r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName}
			row, exists, err := tenantdb.CurrentRow(ctx, tx, it.WorkspaceID)
			if err != nil {
				return err
			}
			e, err := op.earlier(ctx, st, h, it)
			if err != nil {
				return fmt.Errorf("workspace %s: %w", it.WorkspaceID, err)
			}
			r.Before, r.After = row.Template, row.Template
			r.Outcome, r.Reason = op.outcome(row, exists, it, e)
			if r.Outcome == op.would {
				_, r.After = op.change(it)
			}
			tr.Results = append(tr.Results, r)
		}
		return nil
	})
	if moved != "" {
		return failAll(t.Name, items, moved)
	}
	if err != nil {
		return failAll(t.Name, items, o.redact(err))
	}
	return tr
}

// writeTenant runs op on one tenant's items in one transaction. Any failure
// is journaled for every item; a success is committed by commitJournaled.
func (op *operation) writeTenant(ctx context.Context, o Options, t inventory.Tenant, items []plan.Item, h *history) TenantReport {
	// Work already begun is not abandoned half-way on Ctrl-C: the tenant's
	// transaction either commits or rolls back, bounded by the timeouts.
	ctx = context.WithoutCancel(ctx)
	fail := func(reason string) TenantReport { return journalOp(ctx, o, failAll(t.Name, items, reason), op.name) }
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
	if why, err := o.moved(ctx, tx, t.Name); err != nil {
		return fail("identify the database: " + o.redact(err))
	} else if why != "" {
		return fail(why)
	}
	st := newSettler(o, tx, t.Name)
	tr := TenantReport{Tenant: t.Name}
	for _, it := range items {
		r, failed := op.writeRow(ctx, o, tx, st, h, it)
		if failed != "" {
			return fail(fmt.Sprintf("workspace %s: %s; the tenant's transaction was rolled back", it.WorkspaceID, failed))
		}
		r.Tenant = t.Name
		tr.Results = append(tr.Results, r)
	}
	return op.commitJournaled(ctx, o, tx, tr, items, st.facts)
}

// writeRow runs op's statement on one row unless an earlier run settles it,
// and otherwise says, from the row as it is now, why it was not written.
func (op *operation) writeRow(ctx context.Context, o Options, tx pgx.Tx, st *settler, h *history, it plan.Item) (r Result, failed string) {
	r = Result{WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName}
	e, err := op.earlier(ctx, st, h, it)
	if err != nil {
		return r, err.Error()
	}
	if !e.done {
		matched, err := op.statement(ctx, tx, it)
		if err != nil {
			return r, o.redact(err)
		}
		if matched {
			r.Before, r.After = op.change(it)
			r.Outcome = op.wrote
			return r, ""
		}
	}
	row, exists, err := tenantdb.CurrentRow(ctx, tx, it.WorkspaceID)
	if err != nil {
		return r, "re-read: " + o.redact(err)
	}
	r.Before, r.After = row.Template, row.Template
	r.Outcome, r.Reason = op.outcome(row, exists, it, e)
	if r.Outcome == op.would {
		// Only a concurrent change between the statement and the read.
		r.Outcome, r.Reason = SkippedChanged, op.raced
	}
	return r, ""
}

// commitJournaled commits a tenant's transaction, journaling the rows op
// wrote as committing just before COMMIT: if the process dies between the
// two, the journal still shows which rows op touched, and re-running op
// resolves an unknown commit outcome.
//
// facts, what the run learnt of earlier runs' transactions, are journaled
// first: they are true whether or not this transaction commits.
func (op *operation) commitJournaled(ctx context.Context, o Options, tx pgx.Tx, tr TenantReport, items []plan.Item, facts []evidence.Record) TenantReport {
	pending := facts
	var xid tenantdb.Tx
	for _, r := range tr.Results {
		if r.Outcome != op.wrote {
			continue
		}
		if xid.ID == 0 {
			var err error
			if xid, err = txID(ctx, tx); err != nil {
				return journalOp(ctx, o, failAll(tr.Tenant, items, "transaction id: "+o.redact(err)+"; the tenant's transaction was rolled back"), op.name)
			}
		}
		pending = append(pending, committing(o, op.name, r, xid))
	}
	if len(pending) > 0 {
		if err := o.Store.Append(ctx, pending...); err != nil {
			return failAll(tr.Tenant, items, "journal: "+err.Error()+"; nothing was committed")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		reason := "commit: " + o.redact(err) + "; the outcome of this tenant's writes is unknown: re-run " + op.name + " to resolve"
		return journalOp(ctx, o, failAll(tr.Tenant, items, reason), op.name)
	}
	return journalOp(ctx, o, tr, op.name)
}

// journalOp records a tenant's outcomes of op as soon as its transaction
// ended.
func journalOp(ctx context.Context, o Options, tr TenantReport, op string) TenantReport {
	recs := make([]evidence.Record, 0, len(tr.Results))
	for _, r := range tr.Results {
		recs = append(recs, o.entry(op, r))
	}
	if err := o.Store.Append(ctx, recs...); err != nil {
		o.Logger.Error("journal write failed; the tenant databases hold the truth, re-run to journal it", "tenant", tr.Tenant, "err", err)
		if tr.Err == "" {
			tr.Err = "journal: " + err.Error()
		}
	}
	if tr.Err != "" {
		o.Logger.Error("tenant failed", "tenant", tr.Tenant, "reason", tr.Err)
	}
	return tr
}

func (o Options) entry(op string, r Result) *evidence.Entry {
	return &evidence.Entry{Fingerprint: o.Plan.Fingerprint, Operation: op, Operator: o.Operator, Tenant: r.Tenant,
		WorkspaceID: r.WorkspaceID, Before: r.Before, After: r.After, Outcome: r.Outcome, Reason: r.Reason, At: o.Now()}
}

func (o Options) sessionOptions() tenantdb.Options {
	return tenantdb.Options{LockTimeout: o.LockTimeout, StatementTimeout: o.StatementTimeout}
}

// readOptions are for sessions that must never write (dry run, read-back).
func (o Options) readOptions() tenantdb.Options {
	so := o.sessionOptions()
	so.ReadOnly = true
	return so
}

func (o Options) redact(err error) string { return o.Redactor.Redact(err.Error()) }

// moved says why tenant's DSN must not be written through, when it now
// reaches another database than the plan read: a DSN edited or re-pointed
// since (a clone on the same server included) would write rows of a
// database nobody reviewed.
func (o Options) moved(ctx context.Context, tx pgx.Tx, tenant string) (string, error) {
	if o.AllowMoved[tenant] {
		return "", nil
	}
	now, err := tenantdb.Identify(ctx, tx)
	if err != nil {
		return "", err
	}
	was, ok := o.Plan.Database(tenant)
	switch {
	case !ok:
		return fmt.Sprintf("the plan records no database for tenant %q (format %d), and its DSN now reaches %s; pass --allow-moved %s to write there anyway",
			tenant, o.Plan.FormatVersion, now, tenant), nil
	case !was.Same(now):
		return fmt.Sprintf("tenant %q's DSN now reaches %s, not %s that the plan read; refused (--allow-moved %s overrides)", tenant, now, was, tenant), nil
	}
	return "", nil
}

// readBack reads, in a new session, every row of a canary tenant that
// applied or was already applied; skipped rows were not written.
func readBack(ctx context.Context, o Options, t inventory.Tenant, all []plan.Item, results []Result) []Result {
	done := map[string]bool{}
	for _, r := range results {
		if r.Outcome == Applied || r.Outcome == AlreadyApplied {
			done[r.WorkspaceID] = true
		}
	}
	var items []plan.Item
	for _, it := range all {
		if done[it.WorkspaceID] {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return nil
	}
	var out []Result
	conn, err := tenantdb.Connect(ctx, t.DSN, o.readOptions())
	if err != nil {
		return []Result{{Tenant: t.Name, Outcome: Failed, Reason: "read back: " + o.redact(err)}}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = tenantdb.ReadOnly(ctx, conn, func(tx pgx.Tx) error {
		for _, it := range items {
			cur, _, exists, err := tenantdb.Current(ctx, tx, it.WorkspaceID)
			if err != nil {
				return err
			}
			r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName, After: cur, Outcome: "ok"}
			if !exists || cur != it.Action.SetTemplate {
				r.Outcome, r.Reason = "mismatch", fmt.Sprintf("planned %q", it.Action.SetTemplate)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		out = append(out, Result{Tenant: t.Name, Outcome: Failed, Reason: "read back: " + o.redact(err)})
	}
	return out
}
