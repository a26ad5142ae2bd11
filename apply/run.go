package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
	db, cancel := o.session(ctx, len(items))
	defer cancel()
	moved := ""
	err = tenantdb.ReadOnly(db, conn, func(tx pgx.Tx) error {
		var err error
		if moved, err = o.moved(db, tx, t.Name); err != nil || moved != "" {
			return err
		}
		es, err := op.settleAll(db, newSettler(o, tx, t.Name), h, items)
		if err != nil {
			return err
		}
		rows, exists, err := tenantdb.CurrentRows(db, tx, workspaceIDs(items))
		if err != nil {
			return err
		}
		for i, it := range items {
			r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName}
			r.Before, r.After = rows[i].Template, rows[i].Template
			r.Outcome, r.Reason = op.outcome(rows[i], exists[i], it, es[i])
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
		return failAll(t.Name, items, o.dbErr(db, err))
	}
	return tr
}

// writeTenant runs op on one tenant's items in one transaction. Any failure
// is journaled for every item; a success is committed by commitJournaled.
//
// A remote tenant is tens of milliseconds away, so the round trips do not
// grow with its rows: the compare-and-swaps go in batches of swapBatch, and
// the rows they did not match are re-read in one query to say why.
func (op *operation) writeTenant(ctx context.Context, o Options, t inventory.Tenant, items []plan.Item, h *history) TenantReport {
	// Work already begun is not abandoned half-way on Ctrl-C: the tenant's
	// transaction either commits or rolls back, bounded by the timeouts
	// (db: the session; ctx, for the journal, is never cut short).
	ctx = context.WithoutCancel(ctx)
	fail := func(reason string) TenantReport { return journalOp(ctx, o, failAll(t.Name, items, reason), op.name) }
	const rolledBack = "; the tenant's transaction was rolled back"
	conn, err := tenantdb.Connect(ctx, t.DSN, o.sessionOptions())
	if err != nil {
		return fail("connect: " + o.redact(err))
	}
	db, cancel := o.session(ctx, len(items))
	defer cancel()
	defer conn.Close(db)
	tx, err := conn.Begin(db)
	if err != nil {
		return fail("begin: " + o.dbErr(db, err))
	}
	defer tx.Rollback(db)
	if why, err := o.moved(db, tx, t.Name); err != nil {
		return fail("identify the database: " + o.dbErr(db, err))
	} else if why != "" {
		return fail(why)
	}
	st := newSettler(o, tx, t.Name)
	es, err := op.settleAll(db, st, h, items)
	if err != nil {
		return fail(o.dbErr(db, err) + rolledBack)
	}
	matched, xid, err := op.swap(db, tx, items, es)
	if err != nil {
		return fail(o.dbErr(db, err) + rolledBack)
	}
	var unmatched []plan.Item
	for i, it := range items {
		if !matched[i] {
			unmatched = append(unmatched, it)
		}
	}
	rows, exists, err := tenantdb.CurrentRows(db, tx, workspaceIDs(unmatched))
	if err != nil {
		return fail("re-read: " + o.dbErr(db, err) + rolledBack)
	}
	tr := TenantReport{Tenant: t.Name}
	for i, it := range items {
		r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName}
		if matched[i] {
			r.Before, r.After = op.change(it)
			r.Outcome = op.wrote
		} else {
			row, ok := rows[0], exists[0]
			rows, exists = rows[1:], exists[1:]
			r.Before, r.After = row.Template, row.Template
			r.Outcome, r.Reason = op.outcome(row, ok, it, es[i])
			if r.Outcome == op.would {
				// Only a concurrent change between the statement and the read.
				r.Outcome, r.Reason = SkippedChanged, op.raced
			}
		}
		tr.Results = append(tr.Results, r)
	}
	return op.commitJournaled(ctx, o, tx, xid, tr, items, st.facts)
}

// settleAll settles what earlier runs left for each item's row.
func (op *operation) settleAll(ctx context.Context, st *settler, h *history, items []plan.Item) ([]earlier, error) {
	es := make([]earlier, len(items))
	for i, it := range items {
		e, err := op.earlier(ctx, st, h, it)
		if err != nil {
			return nil, fmt.Errorf("workspace %s: %w", it.WorkspaceID, err)
		}
		es[i] = e
	}
	return es, nil
}

// swapBatch bounds the statements sent in one round trip.
const swapBatch = 1000

// swap runs op's statement for every item that es does not settle, a batch
// at a time, and says which matched. A statement that fails aborts the
// transaction, and the error names its workspace. The last batch also asks
// for the transaction's id, which the journal needs before COMMIT when
// anything matched: asked for apart, it cost every tenant a round trip.
// When no statement is sent, xid is zero.
func (op *operation) swap(ctx context.Context, tx pgx.Tx, items []plan.Item, es []earlier) (matched []bool, xid tenantdb.Tx, err error) {
	matched = make([]bool, len(items))
	var queued []int
	for i := range items {
		if !es[i].done {
			queued = append(queued, i)
		}
	}
	for len(queued) > 0 {
		n := min(swapBatch, len(queued))
		batch := queued[:n]
		queued = queued[n:]
		b := &pgx.Batch{}
		for _, i := range batch {
			sql, args := op.statement(items[i])
			b.Queue(sql, args...)
		}
		last := len(queued) == 0
		if last {
			tenantdb.QueueTxID(b)
		}
		br := tx.SendBatch(ctx, b)
		for _, i := range batch {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return nil, xid, fmt.Errorf("workspace %s: %w", items[i].WorkspaceID, err)
			}
			matched[i] = tag.RowsAffected() == 1
		}
		if last {
			if xid, err = checkTxID(tenantdb.ScanTxID(br.QueryRow())); err != nil {
				br.Close()
				return nil, xid, fmt.Errorf("transaction id: %w", err)
			}
		}
		if err := br.Close(); err != nil {
			return nil, xid, err
		}
	}
	return matched, xid, nil
}

func workspaceIDs(items []plan.Item) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.WorkspaceID
	}
	return ids
}

// commitJournaled commits a tenant's transaction, journaling the rows op
// wrote as committing just before COMMIT: if the process dies between the
// two, the journal still shows which rows op touched, and re-running op
// resolves an unknown commit outcome.
//
// facts, what the run learnt of earlier runs' transactions, are journaled
// first: they are true whether or not this transaction commits.
func (op *operation) commitJournaled(ctx context.Context, o Options, tx pgx.Tx, xid tenantdb.Tx, tr TenantReport, items []plan.Item, facts []evidence.Record) TenantReport {
	pending := facts
	for _, r := range tr.Results {
		if r.Outcome == op.wrote {
			pending = append(pending, committing(o, op.name, r, xid))
		}
	}
	if len(pending) > 0 {
		if err := o.Store.Append(ctx, pending...); err != nil {
			return failAll(tr.Tenant, items, "journal: "+err.Error()+"; nothing was committed")
		}
	}
	// COMMIT gets a round trip's bound of its own: the journal's write,
	// just made, may have waited on the store behind other tenants.
	commit, cancel := o.session(ctx, -1)
	defer cancel()
	if err := tx.Commit(commit); err != nil {
		reason := "commit: " + o.dbErr(commit, err) + "; the outcome of this tenant's writes is unknown: re-run " + op.name + " to resolve"
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
	return tenantdb.Options{LockTimeout: o.LockTimeout, StatementTimeout: o.StatementTimeout, ConnectAttempts: connectAttempts}
}

// connectAttempts: a tenant whose server is slow to accept a session is
// tried again before its rows are reported failed (nothing is sent before
// the session exists).
const connectAttempts = 3

// readOptions are for sessions that must never write (dry run, read-back).
func (o Options) readOptions() tenantdb.Options {
	so := o.sessionOptions()
	so.ReadOnly = true
	return so
}

func (o Options) redact(err error) string { return o.Redactor.Redact(err.Error()) }

// session bounds a tenant's session of n items on the client's side. The
// server bounds each statement (statement_timeout, lock_timeout), but a
// server or a network that stops answering never sees one, and the run
// would wait for it for ever, holding the store's lock. Past the bound the
// session is dropped: like a crash, before COMMIT the server rolls the
// transaction back, and at COMMIT the next run settles it.
func (o Options) session(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.sessionBound(n))
}

// sessionBound allows each round trip a session of n items makes (begin,
// identify, settle, a swap batch, re-read, commit) its statement and lock
// timeouts, and some slack for the network; n < 0 bounds one round trip.
func (o Options) sessionBound(n int) time.Duration {
	trips := 8 + (n+swapBatch-1)/swapBatch
	if n < 0 { // one round trip
		trips = 1
	}
	return time.Duration(trips)*(o.StatementTimeout+o.LockTimeout) + 5*time.Second
}

// dbErr is err's text, redacted, saying so when the session's bound cut it.
func (o Options) dbErr(db context.Context, err error) string {
	if errors.Is(db.Err(), context.DeadlineExceeded) {
		return o.redact(err) + " (the tenant's server stopped answering: the session's bound, --statement-timeout and --lock-timeout for each round trip, ran out)"
	}
	return o.redact(err)
}

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
	t, _ := o.Inventory.Tenant(tenant)
	target, planned := tenantdb.Target(t.DSN), o.Plan.DatabaseEntry(tenant)
	switch {
	case !ok:
		return fmt.Sprintf("the plan records no database for tenant %q (format %d), and its DSN now reaches %s; pass --allow-moved %s to write there anyway",
			tenant, o.Plan.FormatVersion, now, tenant), nil
	case !was.Same(now):
		return fmt.Sprintf("tenant %q's DSN now reaches %s, not %s that the plan read; refused (--allow-moved %s overrides)", tenant, now, was, tenant), nil
	case planned.Target != "" && target != planned.Target:
		return fmt.Sprintf("tenant %q's DSN now leads to %s, not %s where the plan read it: a copy of the database (a restore, a volume snapshot) "+
			"is the original in every other way, so where it runs is what tells them apart; refused (--allow-moved %s overrides)",
			tenant, target, planned.Target, tenant), nil
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
	db, cancel := o.session(ctx, len(items))
	defer cancel()
	err = tenantdb.ReadOnly(db, conn, func(tx pgx.Tx) error {
		rows, exists, err := tenantdb.CurrentRows(db, tx, workspaceIDs(items))
		if err != nil {
			return err
		}
		for i, it := range items {
			r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName, After: rows[i].Template, Outcome: "ok"}
			if !exists[i] || rows[i].Template != it.Action.SetTemplate {
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
