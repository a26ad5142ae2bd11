package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/tenantdb"
	"backfill/internal/termsafe"
	"backfill/internal/workspace"
	"backfill/snapshot"
)

// audit is the standing check. The platform still creates workspaces with
// an empty template (org and bundle import), and each one's identity lasts only
// until its next restart: run on a schedule, audit captures every such
// workspace that has no evidence yet, with the snapshot engine itself (the
// same listing, collector chains, rate limits and 404 rules), and says
// whether every one now has evidence.
func (r *runner) auditCommand() *cli.Command {
	return &cli.Command{
		Name: "audit",
		Usage: "the standing check: capture every workspace with template = '' that has no evidence yet, " +
			"report coverage by tenant and what appeared since the last audit; exit 3 unless every one has evidence",
		Flags: append(captureFlags(),
			&cli.DurationFlag{Name: "max-evidence-age", EnvVars: envVar("max-evidence-age"),
				Usage: "capture again workspaces whose latest evidence is older than `DURATION` (appended; the old evidence stays); 0: never"},
			&cli.BoolFlag{Name: "allow-gone", EnvVars: envVar("allow-gone"), Usage: "exit 0 also when the only workspaces without evidence were answered gone"},
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout instead of the report"},
		),
		Action: func(c *cli.Context) error {
			return r.runAudit(c.Context, auditOptions{capture: readCaptureOptions(c), maxEvidenceAge: c.Duration("max-evidence-age"),
				allowGone: c.Bool("allow-gone"), json: c.Bool("json")})
		},
	}
}

// auditOptions are audit's flags.
type auditOptions struct {
	capture         captureOptions
	maxEvidenceAge  time.Duration
	allowGone, json bool
}

func (r *runner) runAudit(ctx context.Context, o auditOptions) error {
	if err := o.capture.check(); err != nil {
		return err
	}
	maxAge := o.maxEvidenceAge
	// Stored in whole seconds; a sub-second limit would re-capture
	// everything on every run anyway.
	if maxAge < 0 || (maxAge > 0 && maxAge < time.Second) {
		return &exitError{ExitUsage, fmt.Errorf("--max-evidence-age must be at least 1s, or 0 for never, not %s", maxAge)}
	}
	inv, store, err := r.captureSetup(ctx, o.capture, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	prev, _, err := store.Audits(ctx, 1)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}

	start := r.env.Now()
	var mu sync.Mutex
	listed := map[string]listedTenant{}
	opts := o.capture.engine()
	opts.Inventory, opts.Store = inv, store
	opts.Rows = func(_ string, w workspace.Row) bool { return w.Template == "" }
	opts.OnListed = func(tenant string, db tenantdb.Database, rows []workspace.Row) {
		mu.Lock()
		defer mu.Unlock()
		listed[tenant] = listedTenant{rows, db.Ident()}
	}
	opts.Logger, opts.Redactor, opts.Now = r.log, r.redactor, r.env.Now
	if maxAge > 0 {
		opts.RecaptureBefore = start.Add(-maxAge)
	}
	sum, runErr := r.runCapture(ctx, opts, o.capture.progressEvery)
	if sum == nil {
		return fail("%v", runErr)
	}
	// An interrupted audit is reported and recorded as one (Ctrl-C has
	// cancelled the context, not the work of writing down what was done).
	// After a store failure it is reported and not recorded: the store is
	// what failed.
	ctx = context.WithoutCancel(ctx)
	var last *evidence.Audit
	if len(prev) > 0 {
		last = prev[0]
	}
	rep, err := buildAudit(ctx, store, inv, sum, listed, last, start, r.env.Now(), maxAge)
	if err != nil {
		return fail("audit report from %s: %v", store.Path(), err)
	}
	if runErr == nil {
		if err := store.Append(ctx, rep.record); err != nil {
			rep.record.ID = 0 // set by the insert, rolled back with it
			runErr = fmt.Errorf("record the audit in %s: %w", store.Path(), err)
		}
	}
	if o.json {
		if err := printJSON(r.env.Stdout, rep.json(store.Path())); err != nil {
			return err
		}
	} else {
		rep.print(r.env.Stdout, store.Path())
	}
	if runErr != nil {
		return fail("%v", runErr)
	}
	if rep.record.Reason == "complete" || o.allowGone && rep.record.Reason == "gone" {
		return nil
	}
	return errPartial
}

// listedTenant is what an audit's listing of a tenant read: its live rows
// and the identity of the database they came from.
type listedTenant struct {
	rows     []workspace.Row
	database string // tenantdb.Database.Ident
}

// auditWorkspace is one workspace a report names.
type auditWorkspace struct {
	Tenant      string `json:"tenant"`
	WorkspaceID string `json:"workspace_id"`
	Name        string `json:"name"`
	// Outcome says why it has no evidence (or why evidence older than the
	// limit was not captured again): not-live, not-running, gone, failed,
	// not attempted, not recorded, as snapshot says them; tenant
	// unreachable, tenant stopped, tenant not listed for its tenant's
	// failure. Empty for an appeared workspace.
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Outcomes a report adds to snapshot's for a workspace whose tenant failed.
const (
	outcomeTenantUnreachable = "tenant unreachable"
	outcomeTenantStopped     = "tenant stopped"
	outcomeTenantNotListed   = "tenant not listed"
)

// auditReport is one audit's findings: the record kept in the store and
// what the report names.
type auditReport struct {
	record   *evidence.Audit
	prev     *evidence.Audit // the latest audit before this one; nil for the first
	since    map[string]*evidence.Seen
	maxAge   time.Duration
	failed   []snapshot.TenantFailure
	leftOut  []snapshot.LeftOut // collectors refused for a whole tenant, its chain going on
	missing  []auditWorkspace   // without evidence
	stale    []auditWorkspace   // evidence older than the limit, not captured again
	appeared []auditWorkspace
	oldest   *time.Time // over every workspace's latest evidence
	newest   *time.Time
	listedAt map[string]time.Time // a tenant not listed now: when its counted rows were
}

// buildAudit works out what the audit found, from the rows listed in this
// run (those with an empty template), the run's summary, and the store as the
// run left it. A tenant not listed now is reported from its latest
// successful listing, if any, so that its workspaces without evidence are
// still named. A tenant of the audit before (prev, nil for the first) that
// the inventory no longer names is reported as left, and fails this audit;
// so does a tenant listed from another database than the audit before knew.
func buildAudit(ctx context.Context, store *evidence.Store, inv *inventory.Inventory, sum *snapshot.Summary,
	listed map[string]listedTenant, prev *evidence.Audit, start, end time.Time, maxAge time.Duration) (*auditReport, error) {
	spans, err := store.EvidenceTimes(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range inv.Tenants {
		names = append(names, t.Name)
	}
	since, err := store.LastSeen(ctx, names)
	if err != nil {
		return nil, err
	}
	var earlier map[string]*evidence.Listing
	failures := map[evidence.Key]snapshot.WorkspaceFailure{}
	for _, f := range sum.Failures {
		failures[evidence.Key{Tenant: f.Tenant, WorkspaceID: f.WorkspaceID}] = f
	}
	tenantFailures := map[string]snapshot.TenantFailure{}
	for _, f := range sum.TenantsFailed {
		tenantFailures[f.Tenant] = f
	}
	var cutoff time.Time
	if maxAge > 0 {
		cutoff = start.Add(-maxAge)
	}
	rep := &auditReport{
		prev:   prev,
		record: &evidence.Audit{At: start, EndedAt: end, MaxEvidenceAge: maxAge},
		since:  since, maxAge: maxAge, failed: sum.TenantsFailed, leftOut: sum.CollectorsLeftOut, listedAt: map[string]time.Time{},
	}
	if rep.failed == nil {
		rep.failed = []snapshot.TenantFailure{}
	}
	// The database each tenant was last known at: the audit before's (it
	// carries the last one known for a tenant it did not list), else, for
	// a tenant that audit did not name (back in the inventory after it
	// left), the latest audit that listed it.
	type knownAt struct {
		database string
		audit    int64
	}
	known := map[string]knownAt{}
	for name, s := range since {
		known[name] = knownAt{s.Database, s.AuditID}
	}
	if prev != nil {
		for _, t := range prev.Tenants {
			if t.Database != "" {
				known[t.Tenant] = knownAt{t.Database, prev.ID}
			}
		}
	}
	sort.Strings(names)
	for _, name := range names {
		at := evidence.AuditTenant{Tenant: name, Database: known[name].database}
		lt, ok := listed[name]
		rows := lt.rows
		tf := tenantFailures[name]
		notListed := ""
		switch {
		case ok && tf.Stopped:
			at.Outcome, at.Reason = evidence.AuditStopped, tf.Reason
		case ok:
			at.Outcome = evidence.AuditListed
		case tf.Reason == "not listed: run interrupted" || tf.Reason == "":
			at.Outcome, at.Reason, notListed = evidence.AuditNotListed, tf.Reason, outcomeTenantNotListed
		default:
			at.Outcome, at.Reason, notListed = evidence.AuditUnreachable, tf.Reason, outcomeTenantUnreachable
		}
		if ok && lt.database != "" {
			if was := known[name]; was.database != "" && was.database != lt.database {
				// Its workspaces are counted from the database listed now;
				// whatever the other one holds is no longer audited.
				why := fmt.Sprintf("listed from another database than audit %d knew: was %s; now %s", was.audit, was.database, lt.database)
				if at.Outcome == evidence.AuditListed {
					at.Outcome, at.Reason = evidence.AuditDatabaseChanged, why
					rep.failed = append(rep.failed, snapshot.TenantFailure{Tenant: name, Reason: why})
				} else {
					// Stopped: already among the failed.
					at.Reason += "; " + why
				}
			}
			at.Database = lt.database
		}
		if !ok {
			if earlier == nil {
				if earlier, err = store.LatestListings(ctx, true); err != nil {
					return nil, err
				}
			}
			if l := earlier[name]; l != nil {
				rows = l.Rows
				rep.listedAt[name] = l.At
			}
		}
		seen := []string{}
		for _, w := range rows {
			if w.Template != "" {
				continue
			}
			seen = append(seen, w.ID)
			at.TemplateEmpty++
			k := evidence.Key{Tenant: name, WorkspaceID: w.ID}
			why := auditWorkspace{Tenant: name, WorkspaceID: w.ID, Name: w.Name}
			if f, ok := failures[k]; ok {
				why.Outcome, why.Reason = f.Outcome, f.Reason
				if tf.Stopped && f.Outcome == "not attempted" {
					why.Outcome, why.Reason = outcomeTenantStopped, tf.Reason
				}
			} else if notListed != "" {
				why.Outcome, why.Reason = notListed, at.Reason
			}
			if ok && (since[name] == nil || !since[name].IDs[w.ID]) {
				at.Appeared++
				rep.appeared = append(rep.appeared, auditWorkspace{Tenant: name, WorkspaceID: w.ID, Name: w.Name})
			}
			sp, has := spans[k]
			if !has {
				at.WithoutEvidence++
				if why.Outcome == "" {
					// Listed and selected, yet neither captured nor
					// failed: the run cannot leave one so, but the
					// report must still name it.
					why.Outcome, why.Reason = "not attempted", "no capture recorded"
				}
				rep.missing = append(rep.missing, why)
				continue
			}
			at.WithEvidence++
			switch {
			case !sp.First.Before(start):
				at.Captured++
			case !sp.Last.Before(start):
				at.Recaptured++
			case !cutoff.IsZero() && sp.Last.Before(cutoff):
				at.Stale++
				if why.Outcome == "" {
					why.Outcome, why.Reason = "not attempted", "no capture recorded"
				}
				rep.stale = append(rep.stale, why)
			}
			last := sp.Last
			if at.OldestEvidence == nil || last.Before(*at.OldestEvidence) {
				at.OldestEvidence = &last
			}
			if at.NewestEvidence == nil || last.After(*at.NewestEvidence) {
				at.NewestEvidence = &last
			}
		}
		if ok {
			at.SeenIDs = seen
		}
		a := rep.record
		a.TemplateEmpty += at.TemplateEmpty
		a.WithEvidence += at.WithEvidence
		a.WithoutEvidence += at.WithoutEvidence
		a.Appeared += at.Appeared
		a.Captured += at.Captured
		if at.Outcome != evidence.AuditListed {
			a.TenantsFailed++
		}
		if at.OldestEvidence != nil && (rep.oldest == nil || at.OldestEvidence.Before(*rep.oldest)) {
			rep.oldest = at.OldestEvidence
		}
		if at.NewestEvidence != nil && (rep.newest == nil || at.NewestEvidence.After(*rep.newest)) {
			rep.newest = at.NewestEvidence
		}
		a.Tenants = append(a.Tenants, at)
	}
	if prev != nil {
		for _, t := range prev.Tenants {
			if _, ok := inv.Tenant(t.Tenant); ok || t.Outcome == evidence.AuditLeft {
				continue
			}
			why := fmt.Sprintf("in audit %d, not in the inventory now: its %d workspaces with template = '' (%d without evidence then) are no longer audited",
				prev.ID, t.TemplateEmpty, t.WithoutEvidence)
			rep.record.Tenants = append(rep.record.Tenants, evidence.AuditTenant{Tenant: t.Tenant, Outcome: evidence.AuditLeft, Reason: why, Database: t.Database})
			rep.record.TenantsFailed++
			// Named where every tenant that failed the audit is.
			rep.failed = append(rep.failed, snapshot.TenantFailure{Tenant: t.Tenant, Reason: why})
		}
	}
	rep.record.Reason = auditReason(sum.Interrupted, rep.record, rep.missing)
	return rep, nil
}

// auditReason names how an audit ended, in the words snapshot uses:
// interrupted, tenants-failed (one could not be listed, or was stopped),
// complete (every workspace with an empty template has evidence), gone (only
// workspaces answered gone lack it), incomplete.
func auditReason(interrupted bool, a *evidence.Audit, missing []auditWorkspace) string {
	switch {
	case interrupted:
		return "interrupted"
	case a.TenantsFailed > 0:
		return "tenants-failed"
	case len(missing) == 0:
		return "complete"
	}
	for _, m := range missing {
		if m.Outcome != evidence.Gone {
			return "incomplete"
		}
	}
	return "gone"
}

// ageSeconds is how long before the audit ended t was, in whole seconds.
func ageSeconds(end time.Time, t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	s := int64(end.Sub(*t) / time.Second)
	return &s
}

func rfc3339(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

// auditJSON is `audit --json`'s document: for alerting, everything the
// text report says.
type auditJSON struct {
	SchemaVersion int    `json:"schema_version"`
	Evidence      string `json:"evidence"`
	// AuditID is the audit's record in the store; 0 when it could not be
	// recorded (the store failed).
	AuditID               int64  `json:"audit_id"`
	At                    string `json:"at"`
	EndedAt               string `json:"ended_at"`
	Reason                string `json:"reason"` // complete, gone, tenants-failed, interrupted, incomplete
	Complete              bool   `json:"complete"`
	MaxEvidenceAgeSeconds int64  `json:"max_evidence_age_seconds"` // 0: not set
	// PreviousAudit is the latest audit before this one; null for the
	// first. Appeared counts, per tenant, against the latest audit that
	// listed it (by_tenant[].appeared_since).
	PreviousAudit            *auditRefJSON            `json:"previous_audit"`
	Tenants                  int                      `json:"tenants"`
	TemplateEmpty            int                      `json:"template_empty"`
	WithEvidence             int                      `json:"with_evidence"`
	WithoutEvidence          int                      `json:"without_evidence"`
	Appeared                 int                      `json:"appeared"`
	Captured                 int                      `json:"captured"`
	Recaptured               int                      `json:"recaptured"`
	Stale                    int                      `json:"stale"`
	OldestEvidenceAt         *string                  `json:"oldest_evidence_at"`
	NewestEvidenceAt         *string                  `json:"newest_evidence_at"`
	OldestEvidenceAgeSeconds *int64                   `json:"oldest_evidence_age_seconds"`
	NewestEvidenceAgeSeconds *int64                   `json:"newest_evidence_age_seconds"`
	ElapsedSeconds           float64                  `json:"elapsed_seconds"`
	TenantsFailed            []snapshot.TenantFailure `json:"tenants_failed"`
	CollectorsLeftOut        []snapshot.LeftOut       `json:"collectors_left_out,omitempty"`
	ByTenant                 []auditTenantJSON        `json:"by_tenant"`
	WithoutEvidenceList      []auditWorkspace         `json:"without_evidence_workspaces"`
	StaleList                []auditWorkspace         `json:"stale_workspaces"`
	AppearedList             []auditWorkspace         `json:"appeared_workspaces"`
}

type auditRefJSON struct {
	ID int64  `json:"id"`
	At string `json:"at"`
}

type auditTenantJSON struct {
	Tenant string `json:"tenant"`
	// Status: listed; stopped (listed, then its collector was found
	// misconfigured); unreachable; not-listed (interrupted first);
	// left-inventory (in the audit before, not in the inventory now);
	// database-changed (listed, from another database than the audit
	// before knew: the reason names both).
	Status string `json:"status"`
	Reason string `json:"reason"`
	// RowsListedAt: for a tenant not listed now, when the rows counted
	// were (its latest successful listing); null when listed now, or never.
	RowsListedAt             *string       `json:"rows_listed_at"`
	TemplateEmpty            int           `json:"template_empty"`
	WithEvidence             int           `json:"with_evidence"`
	WithoutEvidence          int           `json:"without_evidence"`
	Appeared                 int           `json:"appeared"`
	AppearedSince            *auditRefJSON `json:"appeared_since"` // null: no audit had listed the tenant
	Captured                 int           `json:"captured"`
	Recaptured               int           `json:"recaptured"`
	Stale                    int           `json:"stale"`
	OldestEvidenceAt         *string       `json:"oldest_evidence_at"`
	NewestEvidenceAt         *string       `json:"newest_evidence_at"`
	OldestEvidenceAgeSeconds *int64        `json:"oldest_evidence_age_seconds"`
	NewestEvidenceAgeSeconds *int64        `json:"newest_evidence_age_seconds"`
}

func (rep *auditReport) json(path string) auditJSON {
	a := rep.record
	end := a.EndedAt
	doc := auditJSON{SchemaVersion: 1, Evidence: path, AuditID: a.ID,
		At: a.At.UTC().Format(time.RFC3339), EndedAt: end.UTC().Format(time.RFC3339),
		Reason: a.Reason, Complete: a.Reason == "complete", MaxEvidenceAgeSeconds: int64(rep.maxAge / time.Second),
		Tenants: len(a.Tenants), TemplateEmpty: a.TemplateEmpty, WithEvidence: a.WithEvidence, WithoutEvidence: a.WithoutEvidence,
		Appeared: a.Appeared, Captured: a.Captured,
		OldestEvidenceAt: rfc3339(rep.oldest), NewestEvidenceAt: rfc3339(rep.newest),
		OldestEvidenceAgeSeconds: ageSeconds(end, rep.oldest), NewestEvidenceAgeSeconds: ageSeconds(end, rep.newest),
		ElapsedSeconds: end.Sub(a.At).Seconds(), TenantsFailed: rep.failed, CollectorsLeftOut: rep.leftOut,
		ByTenant:            []auditTenantJSON{},
		WithoutEvidenceList: nonNil(rep.missing), StaleList: nonNil(rep.stale), AppearedList: nonNil(rep.appeared)}
	if rep.prev != nil {
		doc.PreviousAudit = &auditRefJSON{ID: rep.prev.ID, At: rep.prev.At.UTC().Format(time.RFC3339)}
	}
	for _, t := range a.Tenants {
		doc.Recaptured += t.Recaptured
		doc.Stale += t.Stale
		tj := auditTenantJSON{Tenant: t.Tenant, Status: t.Outcome, Reason: t.Reason,
			TemplateEmpty: t.TemplateEmpty, WithEvidence: t.WithEvidence, WithoutEvidence: t.WithoutEvidence,
			Appeared: t.Appeared, Captured: t.Captured, Recaptured: t.Recaptured, Stale: t.Stale,
			OldestEvidenceAt: rfc3339(t.OldestEvidence), NewestEvidenceAt: rfc3339(t.NewestEvidence),
			OldestEvidenceAgeSeconds: ageSeconds(end, t.OldestEvidence), NewestEvidenceAgeSeconds: ageSeconds(end, t.NewestEvidence)}
		if at, ok := rep.listedAt[t.Tenant]; ok {
			tj.RowsListedAt = rfc3339(&at)
		}
		if s := rep.since[t.Tenant]; s != nil && t.Listed() {
			tj.AppearedSince = &auditRefJSON{ID: s.AuditID, At: s.At.UTC().Format(time.RFC3339)}
		}
		doc.ByTenant = append(doc.ByTenant, tj)
	}
	return doc
}

func nonNil(ws []auditWorkspace) []auditWorkspace {
	if ws == nil {
		return []auditWorkspace{}
	}
	return ws
}

// age is a duration for a person: whole seconds, or minutes past an hour.
func age(end time.Time, t *time.Time) string {
	if t == nil {
		return "-"
	}
	d := end.Sub(*t)
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}

func (rep *auditReport) print(w io.Writer, path string) {
	a := rep.record
	state := a.Reason
	if state == "gone" || state == "tenants-failed" {
		state = "incomplete"
	}
	fmt.Fprintf(w, "audit %s in %s: %d tenants (%d not listed, stopped, left the inventory or on another database), %d workspaces with template = ''\n",
		state, a.EndedAt.Sub(a.At).Round(time.Millisecond), len(a.Tenants), a.TenantsFailed, a.TemplateEmpty)
	recaptured, stale := 0, 0
	for _, t := range a.Tenants {
		recaptured += t.Recaptured
		stale += t.Stale
	}
	for _, l := range rep.leftOut {
		fmt.Fprintf(w, "  tenant %s: collector %d (%s) left out, the chain's others went on: %s\n", termsafe.String(l.Tenant), l.Position, l.Method, oneLine(l.Reason))
	}
	fmt.Fprintf(w, "  with evidence %d (captured now %d, captured again %d), without evidence %d", a.WithEvidence, a.Captured, recaptured, a.WithoutEvidence)
	if rep.maxAge > 0 {
		fmt.Fprintf(w, ", evidence older than %s not captured again %d", rep.maxAge, stale)
	}
	fmt.Fprintln(w)
	if rep.prev == nil {
		fmt.Fprintf(w, "  appeared: %d (the first audit of this store: every one is new to it)\n", a.Appeared)
	} else {
		fmt.Fprintf(w, "  appeared since the last audit (%d, %s): %d\n", rep.prev.ID, rep.prev.At.UTC().Format(time.RFC3339), a.Appeared)
	}
	if rep.oldest != nil {
		fmt.Fprintf(w, "  latest evidence per workspace: oldest %s ago (%s), newest %s ago\n",
			age(a.EndedAt, rep.oldest), rep.oldest.UTC().Format(time.RFC3339), age(a.EndedAt, rep.newest))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TENANT\tTEMPLATE=''\tWITH EVIDENCE\tWITHOUT\tAPPEARED\tCAPTURED NOW\tOLDEST\tNEWEST\tNOTE")
	for _, t := range a.Tenants {
		note := ""
		if t.Outcome != evidence.AuditListed {
			note = t.Outcome
			if t.Reason != "" {
				note += ": " + oneLine(t.Reason)
			}
			if at, ok := rep.listedAt[t.Tenant]; ok {
				note += fmt.Sprintf(" (counts from its listing of %s)", at.UTC().Format(time.RFC3339))
			}
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", termsafe.String(t.Tenant), t.TemplateEmpty, t.WithEvidence, t.WithoutEvidence,
			t.Appeared, t.Captured, age(a.EndedAt, t.OldestEvidence), age(a.EndedAt, t.NewestEvidence), note)
	}
	tw.Flush()
	list := func(title string, ws []auditWorkspace) {
		if len(ws) == 0 {
			return
		}
		fmt.Fprintf(w, "  %s (%d):\n", title, len(ws))
		for i, x := range ws {
			if i == maxListed {
				fmt.Fprintf(w, "    ... and %d more (audit --json lists every one)\n", len(ws)-maxListed)
				break
			}
			// As snapshot's summary: the outcome first, then who, then why.
			if x.Outcome != "" {
				fmt.Fprintf(w, "    %s %s/%s (%s): %s\n", x.Outcome, termsafe.String(x.Tenant), termsafe.String(x.WorkspaceID), termsafe.String(x.Name), oneLine(x.Reason))
			} else {
				fmt.Fprintf(w, "    %s/%s (%s)\n", termsafe.String(x.Tenant), termsafe.String(x.WorkspaceID), termsafe.String(x.Name))
			}
		}
	}
	list("without evidence", rep.missing)
	list("evidence older than the limit, not captured again", rep.stale)
	list("appeared", rep.appeared)
	recorded := "not recorded: the store failed"
	if a.ID > 0 {
		recorded = fmt.Sprintf("audit %d recorded", a.ID)
	}
	fmt.Fprintf(w, "evidence: %s (%s)\n", path, recorded)
}
