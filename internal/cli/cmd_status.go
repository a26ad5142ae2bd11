package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply"
	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/termsafe"
)

func (r *runner) statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "coverage per tenant: live workspaces, captured, not live, not running, gone, failed, last capture time; then the latest audits",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "audits", Value: 10, EnvVars: envVar("audits"), Usage: "show the last `N` audits (0: every one)"},
			&cli.StringSliceFlag{Name: "tenant", EnvVars: envVar("tenant"), Usage: "only tenants matching this glob `PATTERN` (repeatable)"},
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout"},
		},
		Action: func(c *cli.Context) error {
			return r.runStatus(c.Context, statusOptions{audits: c.Int("audits"), tenants: c.StringSlice("tenant"), json: c.Bool("json")})
		},
	}
}

// statusOptions are status's flags.
type statusOptions struct {
	audits  int // the last N audits; 0: every one
	tenants []string
	json    bool
}

type tenantStatus struct {
	live, captured, notLive, notRunning int
	gone, failed, missing               int
	applied, skipped, applyFailed       int
	rolledBack                          int
	last                                time.Time
	unreachable                         string
}

func (r *runner) runStatus(ctx context.Context, o statusOptions) error {
	if o.audits < 0 {
		return &exitError{ExitUsage, fmt.Errorf("--audits must not be negative, not %d", o.audits)}
	}
	store, err := r.openStoreReadOnly(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	ws, err := store.Workspaces(ctx)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	listings, err := store.LatestListings(ctx, false)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	byTenant := map[string]*tenantStatus{}
	get := func(t string) *tenantStatus {
		if byTenant[t] == nil {
			byTenant[t] = &tenantStatus{}
		}
		return byTenant[t]
	}
	for t, l := range listings {
		if l.Outcome == evidence.Unreachable {
			get(t).unreachable = l.Reason
		}
	}
	latest, err := latestJournal(ctx, store)
	if err != nil {
		return err
	}
	var total tenantStatus
	for k, e := range latest {
		for _, s := range []*tenantStatus{get(k.Tenant), &total} {
			switch e.Outcome {
			case apply.Applied, apply.AlreadyApplied:
				s.applied++
			case apply.Failed, apply.Committing:
				s.applyFailed++
			case evidence.RolledBack, evidence.AlreadyRolledBack:
				s.rolledBack++
			default:
				s.skipped++
			}
		}
	}
	for _, w := range ws {
		ts := get(w.Tenant)
		for _, s := range []*tenantStatus{ts, &total} {
			if w.Listed {
				s.live++
			}
			switch {
			case w.Earliest != nil:
				s.captured++
			case w.LatestOutcome == evidence.NotLive:
				// Its bytes came from elsewhere (a template folder): kept, but
				// no evidence, so not captured.
				s.notLive++
			case w.LatestOutcome == evidence.NotRunning:
				s.notRunning++
			case w.LatestOutcome == evidence.Gone:
				s.gone++
			case w.LatestOutcome == evidence.Failed:
				s.failed++
			default:
				s.missing++
			}
			if w.LatestAt.After(s.last) {
				s.last = w.LatestAt
			}
		}
	}
	patterns := o.tenants
	if err := checkPatterns(patterns); err != nil {
		return err
	}
	names := make([]string, 0, len(byTenant))
	for t := range byTenant {
		if len(patterns) == 0 || inventory.MatchTenant(t, patterns) {
			names = append(names, t)
		}
	}
	sort.Strings(names)
	audits, recorded, err := store.Audits(ctx, o.audits)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	if o.json {
		doc := statusJSON{SchemaVersion: 1, Evidence: store.Path(), Tenants: []tenantStatusJSON{}, AuditsRecorded: recorded, Audits: []statusAuditJSON{}}
		for _, n := range names {
			doc.Tenants = append(doc.Tenants, byTenant[n].json(n))
		}
		doc.Total = total.json("")
		for _, a := range audits {
			doc.Audits = append(doc.Audits, auditHistoryJSON(a))
		}
		return printJSON(r.env.Stdout, doc)
	}
	tw := tabwriter.NewWriter(r.env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tLIVE\tCAPTURED\tNOT LIVE\tNOT RUNNING\tGONE\tFAILED\tNOT ATTEMPTED\tLAST CAPTURE\tAPPLIED\tSKIPPED\tAPPLY FAILED\tROLLED BACK\tNOTE")
	row := func(name string, s *tenantStatus) {
		last := "-"
		if !s.last.IsZero() {
			last = s.last.UTC().Format(time.RFC3339)
		}
		note := ""
		if s.unreachable != "" {
			note = "last listing failed: " + oneLine(s.unreachable)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%s\n", termsafe.String(name), s.live, s.captured, s.notLive, s.notRunning,
			s.gone, s.failed, s.missing, last,
			s.applied, s.skipped, s.applyFailed, s.rolledBack, note)
	}
	for _, n := range names {
		row(n, byTenant[n])
	}
	row("TOTAL", &total)
	if err := tw.Flush(); err != nil {
		return err
	}
	printAuditHistory(r.env.Stdout, audits, recorded)
	return nil
}

// printAuditHistory is status's audit section: the latest audits, newest
// first, with their counts of workspaces with an empty template.
func printAuditHistory(w io.Writer, audits []*evidence.Audit, recorded int) {
	if recorded == 0 {
		fmt.Fprintln(w, "\nno audits recorded (backfill audit)")
		return
	}
	fmt.Fprintf(w, "\n%d audits recorded; the last %d, newest first (counts of workspaces with template = ''):\n", recorded, len(audits))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AUDIT\tAT\tREASON\tTENANTS\tFAILED\tTEMPLATE=''\tWITH EVIDENCE\tWITHOUT\tAPPEARED\tCAPTURED\tOLDEST EVIDENCE")
	for _, a := range audits {
		var oldest *time.Time
		for _, t := range a.Tenants {
			if t.OldestEvidence != nil && (oldest == nil || t.OldestEvidence.Before(*oldest)) {
				oldest = t.OldestEvidence
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", a.ID, a.At.UTC().Format(time.RFC3339), termsafe.String(a.Reason),
			len(a.Tenants), a.TenantsFailed, a.TemplateEmpty, a.WithEvidence, a.WithoutEvidence, a.Appeared, a.Captured, age(a.EndedAt, oldest))
	}
	tw.Flush()
}

// statusJSON is `status --json`'s document.
type statusJSON struct {
	SchemaVersion int                `json:"schema_version"`
	Evidence      string             `json:"evidence"`
	Tenants       []tenantStatusJSON `json:"tenants"`
	Total         tenantStatusJSON   `json:"total"`
	// AuditsRecorded is how many audits the store holds; Audits the
	// latest of them (--audits), newest first.
	AuditsRecorded int               `json:"audits_recorded"`
	Audits         []statusAuditJSON `json:"audits"`
}

type tenantStatusJSON struct {
	Tenant       string  `json:"tenant,omitempty"`
	Live         int     `json:"live"`
	Captured     int     `json:"captured"`
	NotLive      int     `json:"not_live"`
	NotRunning   int     `json:"not_running"`
	Gone         int     `json:"gone"`
	Failed       int     `json:"failed"`
	NotAttempted int     `json:"not_attempted"`
	LastCapture  *string `json:"last_capture"`
	Applied      int     `json:"applied"`
	Skipped      int     `json:"skipped"`
	ApplyFailed  int     `json:"apply_failed"`
	RolledBack   int     `json:"rolled_back"`
	// LastListingFailed is why the tenant's latest listing failed; "" when
	// it did not.
	LastListingFailed string `json:"last_listing_failed,omitempty"`
}

func (s *tenantStatus) json(name string) tenantStatusJSON {
	j := tenantStatusJSON{Tenant: name, Live: s.live, Captured: s.captured, NotLive: s.notLive, NotRunning: s.notRunning,
		Gone: s.gone, Failed: s.failed, NotAttempted: s.missing, Applied: s.applied, Skipped: s.skipped, ApplyFailed: s.applyFailed, RolledBack: s.rolledBack,
		LastListingFailed: s.unreachable}
	if !s.last.IsZero() {
		j.LastCapture = rfc3339(&s.last)
	}
	return j
}

// statusAuditJSON is one audit as status shows it.
type statusAuditJSON struct {
	ID                    int64               `json:"id"`
	At                    string              `json:"at"`
	EndedAt               string              `json:"ended_at"`
	Reason                string              `json:"reason"`
	MaxEvidenceAgeSeconds int64               `json:"max_evidence_age_seconds"`
	Tenants               int                 `json:"tenants"`
	TenantsFailed         int                 `json:"tenants_failed"`
	TemplateEmpty         int                 `json:"template_empty"`
	WithEvidence          int                 `json:"with_evidence"`
	WithoutEvidence       int                 `json:"without_evidence"`
	Appeared              int                 `json:"appeared"`
	Captured              int                 `json:"captured"`
	ByTenant              []statusAuditTenant `json:"by_tenant"`
}

type statusAuditTenant struct {
	Tenant           string  `json:"tenant"`
	Status           string  `json:"status"`
	Reason           string  `json:"reason"`
	TemplateEmpty    int     `json:"template_empty"`
	WithEvidence     int     `json:"with_evidence"`
	WithoutEvidence  int     `json:"without_evidence"`
	Appeared         int     `json:"appeared"`
	Captured         int     `json:"captured"`
	Recaptured       int     `json:"recaptured"`
	Stale            int     `json:"stale"`
	OldestEvidenceAt *string `json:"oldest_evidence_at"`
	NewestEvidenceAt *string `json:"newest_evidence_at"`
}

func auditHistoryJSON(a *evidence.Audit) statusAuditJSON {
	j := statusAuditJSON{ID: a.ID, At: a.At.UTC().Format(time.RFC3339), EndedAt: a.EndedAt.UTC().Format(time.RFC3339), Reason: a.Reason,
		MaxEvidenceAgeSeconds: int64(a.MaxEvidenceAge / time.Second), Tenants: len(a.Tenants), TenantsFailed: a.TenantsFailed,
		TemplateEmpty: a.TemplateEmpty, WithEvidence: a.WithEvidence, WithoutEvidence: a.WithoutEvidence, Appeared: a.Appeared,
		Captured: a.Captured, ByTenant: []statusAuditTenant{}}
	for _, t := range a.Tenants {
		j.ByTenant = append(j.ByTenant, statusAuditTenant{Tenant: t.Tenant, Status: t.Outcome, Reason: t.Reason,
			TemplateEmpty: t.TemplateEmpty, WithEvidence: t.WithEvidence, WithoutEvidence: t.WithoutEvidence, Appeared: t.Appeared,
			Captured: t.Captured, Recaptured: t.Recaptured, Stale: t.Stale,
			OldestEvidenceAt: rfc3339(t.OldestEvidence), NewestEvidenceAt: rfc3339(t.NewestEvidence)})
	}
	return j
}

// latestJournal is each workspace's most recent standing apply outcome,
// as evidence.History reads the journal (a rolled-back write reads as
// rolled back).
func latestJournal(ctx context.Context, store *evidence.Store) (map[evidence.Key]evidence.Entry, error) {
	h, err := store.History(ctx, "")
	if err != nil {
		return nil, fail("read %s: %v", store.Path(), err)
	}
	return h.Latest, nil
}
