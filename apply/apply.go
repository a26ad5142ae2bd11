package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	"backfill/apply/plan"

	"github.com/jackc/pgx/v5"

	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/secret"
	"backfill/internal/sshsig"
	"backfill/internal/tenantdb"
	"backfill/internal/workspace"
)

// Outcomes of apply and rollback, as journaled and printed.
const (
	Applied           = evidence.Applied
	AlreadyApplied    = evidence.AlreadyApplied
	SkippedChanged    = "skipped-changed"
	SkippedRemoved    = "skipped-removed"
	Failed            = "failed"
	Committing        = evidence.Committing // journaled just before COMMIT by apply and rollback; a crash leaves it as the trace of the write
	WouldWrite        = "would-write"
	RolledBack        = evidence.RolledBack
	AlreadyRolledBack = evidence.AlreadyRolledBack
	WouldRollBack     = "would-roll-back"
)

// Defaults of Options, which the command line's flags show as theirs.
const (
	DefaultConcurrency      = 16
	DefaultLockTimeout      = 2 * time.Second
	DefaultStatementTimeout = 30 * time.Second
)

// Options configure apply and rollback.
type Options struct {
	Plan      *plan.Plan
	Inventory *inventory.Inventory
	Store     *evidence.Store
	// Catalog is the plan's catalog (the same digest), against which every
	// agree item is derived again before any tenant is touched.
	Catalog *catalog.Catalog
	// CP, when set, are the plan's CP records given again: their digest and
	// every agree item's claim are checked too.
	CP *cp.Records
	// AllowMoved names tenants whose DSN may reach another database than
	// the one the plan read.
	AllowMoved map[string]bool
	// AllowedSigners, when set, makes --execute require an approval signed
	// by a listed principal other than the plan's author.
	AllowedSigners *sshsig.AllowedSigners
	Execute        bool
	Canary         int // apply to the first N tenants in plan order only, then read back
	// CanaryTenants names tenants to apply to (and read back) as the
	// canary, instead of the first Canary ones.
	CanaryTenants []string
	// Tenants, when set, limits the run to tenants matching one of these
	// glob patterns (path.Match); the journal records only the rows
	// touched, so a later run without them finishes the rest.
	Tenants          []string
	Concurrency      int           // tenants at once, default DefaultConcurrency
	LockTimeout      time.Duration // default DefaultLockTimeout
	StatementTimeout time.Duration // default DefaultStatementTimeout
	Operator         string
	Now              func() time.Time
	Logger           *slog.Logger
	Redactor         *secret.Redactor
}

// Result is what happened to one workspace.
type Result struct {
	Tenant      string `json:"tenant"`
	WorkspaceID string `json:"workspace_id"`
	Name        string `json:"name"`
	Before      string `json:"before"`
	After       string `json:"after"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason,omitempty"`
}

// TenantReport is one tenant's results.
type TenantReport struct {
	Tenant   string
	Results  []Result
	Err      string   // why the tenant failed as a whole, if it did
	Readback []Result // canary: every written row read back
}

// Report is the outcome of a run.
type Report struct {
	Execute bool
	Tenants []TenantReport
	Counts  map[string]int
	// EarlierRollbacks counts, for rollback, the plan's writes an earlier
	// rollback already undid; they are not touched again.
	EarlierRollbacks int
	// Superseded counts, for rollback, the plan's writes that were undone
	// and then written by another plan; they are that plan's to undo.
	Superseded int
}

// Complete reports whether every action ended applied or already applied
// (rolled back or already rolled back, for rollback), every outcome was
// journaled, and every canary row read back as planned.
func (r *Report) Complete() bool {
	for _, t := range r.Tenants {
		if t.Err != "" {
			return false
		}
		for _, rb := range t.Readback {
			if rb.Outcome != "ok" {
				return false
			}
		}
	}
	for k, n := range r.Counts {
		switch k {
		case Applied, AlreadyApplied, RolledBack, AlreadyRolledBack, WouldWrite, WouldRollBack:
		default:
			if n > 0 {
				return false
			}
		}
	}
	return true
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = DefaultStatementTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// GateError is a refusal before any tenant is touched.
type GateError = plan.Refusal

// Gate checks, without opening any tenant connection, everything that must
// hold before apply --execute may write: the plan is approved, the evidence
// store verifies, it is the store the plan was made from, every capture the
// plan cites is present with the same sha256, and every tenant to write is
// in the inventory. (That the plan is unedited was checked when it loaded.)
func Gate(ctx context.Context, o Options) error {
	h, err := loadHistory(ctx, o.Store, o.Plan.Fingerprint)
	if err != nil {
		return err
	}
	return gate(ctx, o, h)
}

// gate is Gate with the plan's history already read.
func gate(ctx context.Context, o Options, h *history) error {
	p := o.Plan
	if err := checkApprovals(ctx, o); err != nil {
		return err
	}
	if err := h.refusal(p.Fingerprint); err != nil {
		return err
	}
	if err := verifyEvidence(ctx, o); err != nil {
		return err
	}
	keys, shas, err := o.Store.CaptureHashes(ctx)
	if err != nil {
		return err
	}
	for _, it := range p.Items {
		if it.Evidence == nil {
			continue
		}
		id := it.Evidence.CaptureID
		k, ok := keys[id]
		switch {
		case !ok:
			return &GateError{Reason: fmt.Sprintf("capture %d cited by %s is not in the evidence store", id, it.Key())}
		case k.Tenant != it.Tenant || k.WorkspaceID != it.WorkspaceID || shas[id] != it.Evidence.SHA256:
			return &GateError{Reason: fmt.Sprintf("capture %d cited by %s does not match the evidence store (sha256 %s, plan says %s)",
				id, it.Key(), shas[id], it.Evidence.SHA256)}
		}
	}
	return checkTenants(o)
}

// verifyEvidence runs verify and checks the plan's chain head is in the store.
func verifyEvidence(ctx context.Context, o Options) error {
	rep, err := o.Store.Verify(ctx)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return &GateError{Reason: fmt.Sprintf("the evidence store does not verify: %s", rep.Problems[0])}
	}
	if head := o.Plan.Inputs.Evidence.ChainHead; head != "" {
		ok, err := o.Store.HasCaptureHash(ctx, head)
		if err != nil {
			return err
		}
		if !ok {
			return &GateError{Reason: fmt.Sprintf("the plan was made from other evidence: its chain head %s is not in %s", head, o.Store.Path())}
		}
	}
	return nil
}

func checkTenants(o Options) error {
	for _, it := range o.Plan.Agreed() {
		if _, ok := o.Inventory.Tenant(it.Tenant); !ok {
			return &GateError{Reason: fmt.Sprintf("tenant %q has writes in the plan but is not in the inventory %s", it.Tenant, o.Inventory.Path)}
		}
	}
	return nil
}

// selected keeps the tenant groups the run is limited to.
func (o Options) selected(groups [][]plan.Item) [][]plan.Item {
	if len(o.Tenants) == 0 {
		return groups
	}
	return filterGroups(groups, o.Tenants)
}

// filterGroups keeps the groups whose tenant matches a pattern.
func filterGroups(groups [][]plan.Item, patterns []string) [][]plan.Item {
	var out [][]plan.Item
	for _, g := range groups {
		if MatchTenant(g[0].Tenant, patterns) {
			out = append(out, g)
		}
	}
	return out
}

// MatchTenant reports whether tenant matches one of the glob patterns
// (path.Match: *, ?, [a-z]); a malformed pattern matches nothing (the CLI
// checks patterns before a run).
func MatchTenant(tenant string, patterns []string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, tenant); err == nil && ok {
			return true
		}
	}
	return false
}

// Apply writes the plan's agreed values (or, without Execute, reports what
// it would write). With Execute it runs Gate first, whatever the caller did.
func Apply(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	h, err := loadHistory(ctx, o.Store, o.Plan.Fingerprint)
	if err != nil {
		return nil, err
	}
	if o.Execute {
		err = gate(ctx, o, h)
	} else {
		// The dry run refuses a rolled-back plan as --execute would, not
		// just its rows.
		err = h.refusal(o.Plan.Fingerprint)
	}
	if err != nil {
		return nil, err
	}
	// Dry run or not: a dry run of a forged plan must not show its writes
	// as what would happen.
	if err := plan.Rederive(ctx, o.Plan, o.Store, o.Catalog, o.CP); err != nil {
		return nil, err
	}
	if o.Execute {
		// The plan executed is kept in the store it journals to, whatever
		// store it was made from, so that its undo never depends on a file.
		if err := plan.Keep(ctx, o.Store, o.Plan, ""); err != nil {
			return nil, fmt.Errorf("keep the plan in %s: %w", o.Store.Path(), err)
		}
	}
	if err := checkTenants(o); err != nil {
		return nil, err
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
		return nil, &GateError{Reason: fmt.Sprintf("the tenants selected (--tenant %v, --canary-tenant %v) have no writes in plan %s",
			o.Tenants, o.CanaryTenants, o.Plan.Fingerprint)}
	}
	rep := runTenants(ctx, o, groups, func(ctx context.Context, t inventory.Tenant, items []plan.Item) TenantReport {
		if !o.Execute {
			return dryRun(ctx, o, t, items, false, h)
		}
		tr := applyTenant(ctx, o, t, items, h)
		if o.Canary > 0 || len(o.CanaryTenants) > 0 {
			tr.Readback = readBack(ctx, o, t, items, tr.Results)
		}
		return tr
	})
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
					reports[i] = failAll(o, t.Name, items, "not started: interrupted")
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

func failAll(o Options, tenant string, items []plan.Item, reason string) TenantReport {
	tr := TenantReport{Tenant: tenant, Err: reason}
	for _, it := range items {
		tr.Results = append(tr.Results, Result{Tenant: tenant, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName,
			After: it.DBTemplate, Outcome: Failed, Reason: reason})
	}
	return tr
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

// applyTenant writes one tenant's items in one transaction. A row this plan
// wrote in an earlier run is never written again, whatever it holds now.
func applyTenant(ctx context.Context, o Options, t inventory.Tenant, items []plan.Item, h *history) TenantReport {
	return writeTenant(ctx, o, t, items, evidence.OpApply, Applied, func(ctx context.Context, tx pgx.Tx, st *settler) ([]Result, string) {
		var results []Result
		for _, it := range items {
			set := it.Action.SetTemplate
			r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName}
			wroteBefore, why, err := earlierWrite(ctx, st, h, it)
			if err != nil {
				return nil, fmt.Sprintf("workspace %s: %s; the tenant's transaction was rolled back", it.WorkspaceID, err)
			}
			if !wroteBefore {
				tag, err := tx.Exec(ctx, tenantdb.SetTemplateSQL, it.WorkspaceID, set, it.Runtime, it.Kind)
				if err != nil {
					return nil, fmt.Sprintf("workspace %s: %s; the tenant's transaction was rolled back", it.WorkspaceID, o.redact(err))
				}
				if tag.RowsAffected() == 1 {
					r.Before, r.After, r.Outcome = "", set, Applied
					results = append(results, r)
					continue
				}
			}
			row, exists, err := tenantdb.CurrentRow(ctx, tx, it.WorkspaceID)
			if err != nil {
				return nil, fmt.Sprintf("workspace %s: re-read: %s; the tenant's transaction was rolled back", it.WorkspaceID, o.redact(err))
			}
			r.Before, r.After = row.Template, row.Template
			r.Outcome, r.Reason = applyOutcome(row, exists, it, wroteBefore)
			if r.Outcome == SkippedChanged && why != "" {
				r.Reason = why + "; not written"
			}
			if r.Outcome == WouldWrite {
				// Only a concurrent change between the UPDATE and the read.
				r.Outcome, r.Reason = SkippedChanged, "the row changed while being written; re-run apply"
			}
			results = append(results, r)
		}
		return results, ""
	})
}

// writeTenant runs one tenant's writes for op (apply or rollback) in one
// transaction. rows returns the results, or why the tenant failed; any
// failure is journaled for every item, and a success is committed by
// commitJournaled, journaling results with outcome wrote first.
func writeTenant(ctx context.Context, o Options, t inventory.Tenant, items []plan.Item, op, wrote string,
	rows func(context.Context, pgx.Tx, *settler) ([]Result, string)) TenantReport {
	// Work already begun is not abandoned half-way on Ctrl-C: the tenant's
	// transaction either commits or rolls back, bounded by the timeouts.
	ctx = context.WithoutCancel(ctx)
	fail := func(reason string) TenantReport { return journalOp(ctx, o, failAll(o, t.Name, items, reason), op) }
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
	results, failed := rows(ctx, tx, st)
	if failed != "" {
		return fail(failed)
	}
	return commitJournaled(ctx, o, tx, op, wrote, TenantReport{Tenant: t.Name, Results: results}, items, st.facts)
}

// earlierWrite reports whether this plan wrote the item's row in an earlier
// run, asking the server when that run died at its COMMIT. When the server
// cannot say, the answer is yes (never risk a second write) and why says so.
func earlierWrite(ctx context.Context, st *settler, h *history, it plan.Item) (wrote bool, why string, err error) {
	k := itemKey(it)
	xid, pending := h.Pending[k]
	if h.Applied[k] || !pending {
		return h.Applied[k], "", nil
	}
	outcome, err := st.settle(ctx, evidence.OpApply, it.WorkspaceID, xid)
	switch {
	case err != nil:
		return false, "", err
	case outcome == Committed:
		return true, "", nil
	case outcome == NotCommitted:
		return false, "", nil
	default:
		return true, outcome, nil
	}
}

// commitJournaled commits a tenant's transaction, journaling its writes
// (results with outcome wrote) as committing just before COMMIT: if the
// process dies between the two, the journal still shows which rows op
// touched, and re-running op resolves an unknown commit outcome.
//
// facts, what the run learnt of earlier runs' transactions, are journaled
// first: they are true whether or not this transaction commits.
func commitJournaled(ctx context.Context, o Options, tx pgx.Tx, op, wrote string, tr TenantReport, items []plan.Item, facts []evidence.Record) TenantReport {
	pending := facts
	var xid tenantdb.Tx
	for _, r := range tr.Results {
		if r.Outcome != wrote {
			continue
		}
		if xid.ID == 0 {
			var err error
			if xid, err = txID(ctx, tx); err != nil {
				return journalOp(ctx, o, failAll(o, tr.Tenant, items, "transaction id: "+o.redact(err)+"; the tenant's transaction was rolled back"), op)
			}
		}
		pending = append(pending, committing(o, op, r, xid))
	}
	if len(pending) > 0 {
		if err := o.Store.Append(ctx, pending...); err != nil {
			return failAll(o, tr.Tenant, items, "journal: "+err.Error()+"; nothing was committed")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		reason := "commit: " + o.redact(err) + "; the outcome of this tenant's writes is unknown: re-run " + op + " to resolve"
		return journalOp(ctx, o, failAll(o, tr.Tenant, items, reason), op)
	}
	return journalOp(ctx, o, tr, op)
}

// nullStatus explains an empty-template row that the compare-and-swap
// cannot match: SQL's NULL <> 'removed' is not true.
const nullStatus = "status is NULL, which the compare-and-swap (status <> 'removed') never matches; not written"

// applyOutcome is what apply's compare-and-swap makes of a row as it is now:
// WouldWrite, or why it is not written. wroteBefore: this plan's journal
// shows the row already written once.
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

// rollbackOutcome is what rollback's inverse compare-and-swap makes of a row
// as it is now: WouldRollBack, or why it is not touched.
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

func (o Options) entry(op string, r Result) *evidence.Entry {
	return &evidence.Entry{Fingerprint: o.Plan.Fingerprint, Operation: op, Operator: o.Operator, Tenant: r.Tenant,
		WorkspaceID: r.WorkspaceID, Before: r.Before, After: r.After, Outcome: r.Outcome, Reason: r.Reason, At: o.Now()}
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

// dryRun compares items with the rows as they are now, read-only, using
// the same rules as the writes it stands in for. What it learns of earlier
// runs' transactions is not journaled: a dry run records nothing.
func dryRun(ctx context.Context, o Options, t inventory.Tenant, items []plan.Item, rollback bool, h *history) TenantReport {
	tr := TenantReport{Tenant: t.Name}
	conn, err := tenantdb.Connect(ctx, t.DSN, o.readOptions())
	if err != nil {
		return failAll(o, t.Name, items, "connect: "+o.redact(err))
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
			set := it.Action.SetTemplate
			r := Result{Tenant: t.Name, WorkspaceID: it.WorkspaceID, Name: it.WorkspaceName}
			row, exists, err := tenantdb.CurrentRow(ctx, tx, it.WorkspaceID)
			if err != nil {
				return err
			}
			cur := row.Template
			r.Before, r.After = cur, cur
			if rollback {
				if r.Outcome, r.Reason, err = earlierRollback(ctx, st, h, it); err == nil && r.Outcome == "" {
					r.Outcome, r.Reason = rollbackOutcome(cur, exists, set)
				}
			} else {
				var wrote bool
				var why string
				if wrote, why, err = earlierWrite(ctx, st, h, it); err == nil {
					r.Outcome, r.Reason = applyOutcome(row, exists, it, wrote)
					if r.Outcome == SkippedChanged && why != "" {
						r.Reason = why + "; not written"
					}
				}
			}
			if err != nil {
				return fmt.Errorf("workspace %s: %w", it.WorkspaceID, err)
			}
			switch r.Outcome {
			case WouldWrite:
				r.After = set
			case WouldRollBack:
				r.After = ""
			}
			tr.Results = append(tr.Results, r)
		}
		return nil
	})
	if moved != "" {
		return failAll(o, t.Name, items, moved)
	}
	if err != nil {
		return failAll(o, t.Name, items, o.redact(err))
	}
	return tr
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

// ErrNothingApplied is returned by Rollback when the journal leaves it
// nothing to undo: the plan wrote nothing, or all it wrote was rolled back
// already or written over by another plan since.
var ErrNothingApplied = errors.New("nothing left to roll back")
