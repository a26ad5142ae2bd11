package cli

import (
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply"
	"backfill/internal/evidence"
	"backfill/internal/termsafe"
)

func (r *runner) statusCommand() *cli.Command {
	return &cli.Command{
		Name:   "status",
		Usage:  "coverage per tenant: live workspaces, captured, not live, not running, gone, failed, last capture time",
		Action: r.status,
	}
}

type tenantStatus struct {
	live, captured, notLive, notRunning int
	gone, failed, missing               int
	applied, skipped, applyFailed       int
	last                                time.Time
	unreachable                         string
}

func (r *runner) status(c *cli.Context) error {
	store, err := r.openStoreReadOnly(c)
	if err != nil {
		return err
	}
	defer store.Close()
	ws, err := store.Workspaces(c.Context)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	listings, err := store.LatestListings(c.Context, false)
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
	latest, err := latestJournal(c, store)
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
	names := make([]string, 0, len(byTenant))
	for t := range byTenant {
		names = append(names, t)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(r.env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tLIVE\tCAPTURED\tNOT LIVE\tNOT RUNNING\tGONE\tFAILED\tNOT ATTEMPTED\tLAST CAPTURE\tAPPLIED\tSKIPPED\tAPPLY FAILED\tNOTE")
	row := func(name string, s *tenantStatus) {
		last := "-"
		if !s.last.IsZero() {
			last = s.last.UTC().Format(time.RFC3339)
		}
		note := ""
		if s.unreachable != "" {
			note = "last listing failed: " + oneLine(s.unreachable)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%s\n", termsafe.String(name), s.live, s.captured, s.notLive, s.notRunning,
			s.gone, s.failed, s.missing, last,
			s.applied, s.skipped, s.applyFailed, note)
	}
	for _, n := range names {
		row(n, byTenant[n])
	}
	row("TOTAL", &total)
	return tw.Flush()
}

// latestJournal is each workspace's most recent standing apply outcome,
// as evidence.History reads the journal (a rolled-back write reads as
// rolled back).
func latestJournal(c *cli.Context, store *evidence.Store) (map[evidence.Key]evidence.Entry, error) {
	h, err := store.History(c.Context, "")
	if err != nil {
		return nil, fail("read %s: %v", store.Path(), err)
	}
	return h.Latest, nil
}
