package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply/plan"
	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/termsafe"
)

func (r *runner) exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "one record per workspace: tenant, workspace, DB row, latest outcome, earliest capture",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "json", EnvVars: envVar("format"), Usage: "json or csv"},
			&cli.StringSliceFlag{Name: "tenant", EnvVars: envVar("tenant"), Usage: "only tenants matching this glob `PATTERN` (repeatable)"},
			&cli.StringFlag{Name: "plan", EnvVars: envVar("plan"), Usage: "add each workspace's verdict in this plan (`FILE` or fingerprint prefix)"},
			&cli.StringSliceFlag{Name: "verdict", EnvVars: envVar("verdict"), Usage: "only workspaces with this `VERDICT` in --plan (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			return r.runExport(c.Context, exportOptions{format: c.String("format"), tenants: c.StringSlice("tenant"),
				plan: c.String("plan"), verdicts: c.StringSlice("verdict")})
		},
	}
}

// exportOptions are export's flags.
type exportOptions struct {
	format   string
	tenants  []string
	plan     string // a plan file or fingerprint prefix; "": no verdicts
	verdicts []string
}

// exportRecord is one workspace in `export`; field names are part of the
// contract scripts rely on.
type exportRecord struct {
	Tenant         string `json:"tenant"`
	WorkspaceID    string `json:"workspace_id"`
	Name           string `json:"name"`
	Runtime        string `json:"runtime"`
	DBTemplate     string `json:"db_template"`
	Status         string `json:"status"`
	LatestOutcome  string `json:"latest_outcome"`
	LatestReason   string `json:"latest_reason"`
	Attempts       int    `json:"attempts"`
	EarliestID     int64  `json:"earliest_capture_id,omitempty"`
	EarliestSHA256 string `json:"earliest_sha256"`
	CapturedAt     string `json:"captured_at"`
	ApplyOutcome   string `json:"apply_outcome"`
	AppliedValue   string `json:"applied_value"`
	Verdict        string `json:"verdict,omitempty"` // in --plan
}

var exportColumns = []string{"tenant", "workspace_id", "name", "runtime", "db_template", "status", "latest_outcome",
	"latest_reason", "attempts", "earliest_capture_id", "earliest_sha256", "captured_at", "apply_outcome", "applied_value"}

func (r *runner) runExport(ctx context.Context, o exportOptions) error {
	format := o.format
	if format != "json" && format != "csv" {
		return &exitError{ExitUsage, fmt.Errorf("--format must be json or csv, not %q", format)}
	}
	if err := checkPatterns(o.tenants); err != nil {
		return err
	}
	wantVerdict := map[plan.Verdict]bool{}
	for _, v := range o.verdicts {
		if o.plan == "" {
			return &exitError{ExitUsage, errors.New("--verdict needs --plan: verdicts are a plan's")}
		}
		if !slices.Contains(plan.Verdicts, plan.Verdict(v)) {
			return &exitError{ExitUsage, fmt.Errorf("--verdict %q: not a verdict (%v)", v, plan.Verdicts)}
		}
		wantVerdict[plan.Verdict(v)] = true
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
	latest, err := latestJournal(ctx, store)
	if err != nil {
		return err
	}
	recs := make([]exportRecord, 0, len(ws))
	patterns := o.tenants
	verdicts := map[evidence.Key]plan.Verdict{}
	if o.plan != "" {
		p, _, err := r.loadPlan(ctx, o.plan)
		if err != nil {
			return err
		}
		for _, it := range p.Items {
			verdicts[evidence.Key{Tenant: it.Tenant, WorkspaceID: it.WorkspaceID}] = it.Verdict
		}
	}
	for _, w := range ws {
		if len(patterns) > 0 && !inventory.MatchTenant(w.Tenant, patterns) {
			continue
		}
		v := verdicts[w.Key]
		if len(wantVerdict) > 0 && !wantVerdict[v] {
			continue
		}
		e := exportRecord{
			Tenant: w.Tenant, WorkspaceID: w.WorkspaceID, Name: w.Row.Name, Runtime: w.Row.Runtime,
			DBTemplate: w.Row.Template, Status: w.Row.Status, LatestOutcome: w.LatestOutcome, Verdict: string(v),
			LatestReason: w.LatestReason, Attempts: w.Attempts,
		}
		if j, ok := latest[w.Key]; ok {
			e.ApplyOutcome, e.AppliedValue = j.Outcome, j.After
		}
		if e.LatestOutcome == "" {
			e.LatestOutcome = "not attempted"
		}
		if w.Earliest != nil {
			e.EarliestID, e.EarliestSHA256 = w.Earliest.ID, w.Earliest.SHA256
			e.CapturedAt = w.Earliest.EndedAt.UTC().Format(time.RFC3339Nano)
		}
		recs = append(recs, e)
	}
	if len(patterns) > 0 {
		// A mistyped pattern is not an empty tenant: a tenant listed with
		// no workspaces, or never listed, is still in the store.
		tenants, err := store.Tenants(ctx)
		if err != nil {
			return fail("read %s: %v", store.Path(), err)
		}
		if !slices.ContainsFunc(tenants, func(t string) bool { return inventory.MatchTenant(t, patterns) }) {
			r.log.Warn("no tenant in the store matches --tenant", "patterns", strings.Join(patterns, ", "), "store", store.Path())
		}
	}
	if format == "json" {
		enc := json.NewEncoder(r.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(recs)
	}
	cw := csv.NewWriter(r.env.Stdout)
	withVerdict := o.plan != ""
	if withVerdict {
		cw.Write(append(slices.Clone(exportColumns), "verdict"))
	} else {
		cw.Write(exportColumns)
	}
	for _, e := range recs {
		id := ""
		if e.EarliestID != 0 {
			id = strconv.FormatInt(e.EarliestID, 10)
		}
		// Control characters are escaped here as on every other text
		// output: a CSV is read on terminals too. JSON escapes its own.
		row := []string{e.Tenant, e.WorkspaceID, e.Name, e.Runtime, e.DBTemplate, e.Status, e.LatestOutcome,
			e.LatestReason, strconv.Itoa(e.Attempts), id, e.EarliestSHA256, e.CapturedAt, e.ApplyOutcome, e.AppliedValue}
		if withVerdict {
			row = append(row, e.Verdict)
		}
		cw.Write(spreadsheetSafe(termsafe.Strings(row)))
	}
	cw.Flush()
	return cw.Error()
}

// spreadsheetSafe prefixes with ' every cell a spreadsheet would read as a
// formula (one starting with =, +, -, @, a tab or a carriage return): a
// workspace name or a reason is whatever a tenant or a server wrote, and
// the CSV is opened in spreadsheets.
func spreadsheetSafe(row []string) []string {
	for i, c := range row {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			row[i] = "'" + c
		}
	}
	return row
}
