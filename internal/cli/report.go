package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"backfill/apply"
	"backfill/internal/termsafe"
)

// writeReportJSON is the --json document of apply and rollback.
type writeReportJSON struct {
	SchemaVersion int                `json:"schema_version"`
	Command       string             `json:"command"`
	Fingerprint   string             `json:"fingerprint"`
	Execute       bool               `json:"execute"`
	Complete      bool               `json:"complete"` // every action ended as intended: exit 0
	Counts        map[string]int     `json:"counts"`
	Tenants       []tenantReportJSON `json:"tenants"`
	Failures      []apply.Result     `json:"failures"` // every row not done, with its reason
	Rows          []apply.Result     `json:"rows"`
	Readback      []apply.Result     `json:"readback,omitempty"`
	// EarlierRollbacks and Superseded are rollback's rows not touched again.
	EarlierRollbacks int `json:"earlier_rollbacks,omitempty"`
	Superseded       int `json:"superseded,omitempty"`
	// Scope is set when the run covered part of the plan (--tenant, a
	// canary): complete then speaks for that part only.
	Scope *writeScope `json:"scope,omitempty"`
}

type tenantReportJSON struct {
	Tenant string         `json:"tenant"`
	Counts map[string]int `json:"counts"`
	Error  string         `json:"error,omitempty"` // why the tenant failed as a whole
}

func reportJSON(command, fingerprint string, rep *apply.Report) writeReportJSON {
	out := writeReportJSON{SchemaVersion: 1, Command: command, Fingerprint: fingerprint, Execute: rep.Execute,
		Complete: rep.Complete(), Counts: rep.Counts, Tenants: []tenantReportJSON{}, Failures: []apply.Result{}, Rows: []apply.Result{},
		EarlierRollbacks: rep.EarlierRollbacks, Superseded: rep.Superseded}
	for _, t := range rep.Tenants {
		tj := tenantReportJSON{Tenant: t.Tenant, Counts: map[string]int{}, Error: t.Err}
		for _, res := range t.Results {
			tj.Counts[res.Outcome]++
			out.Rows = append(out.Rows, res)
			if !done(res.Outcome) {
				out.Failures = append(out.Failures, res)
			}
		}
		out.Tenants = append(out.Tenants, tj)
		out.Readback = append(out.Readback, t.Readback...)
	}
	return out
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// done reports whether an outcome is what the run meant to do.
func done(outcome string) bool {
	switch outcome {
	case apply.Applied, apply.AlreadyApplied, apply.RolledBack, apply.AlreadyRolledBack, apply.WouldWrite, apply.WouldRollBack:
		return true
	}
	return false
}

// printReport prints one line per tenant with its counts, then every row
// that was not done with its reason (a failed tenant's rows once, as the
// tenant's failure), then the totals. verbose adds every row.
func printReport(w io.Writer, rep *apply.Report, verbose bool) {
	for _, t := range rep.Tenants {
		n := map[string]int{}
		for _, res := range t.Results {
			n[res.Outcome]++
		}
		fmt.Fprintf(w, "tenant %s: %s\n", termsafe.String(t.Tenant), countLine(n))
		if !verbose {
			continue
		}
		for _, res := range t.Results {
			fmt.Fprintf(w, "  %-19s %s %s: %q -> %q", res.Outcome, termsafe.String(res.WorkspaceID), termsafe.String(res.Name), res.Before, res.After)
			if res.Reason != "" && res.Outcome != apply.Applied {
				fmt.Fprintf(w, " (%s)", oneLine(res.Reason))
			}
			fmt.Fprintln(w)
		}
	}
	var notDone int
	for _, t := range rep.Tenants {
		for _, res := range t.Results {
			if !done(res.Outcome) {
				notDone++
			}
		}
	}
	if notDone > 0 {
		fmt.Fprintf(w, "not done (%d):\n", notDone)
		for _, t := range rep.Tenants {
			if t.Err != "" {
				fmt.Fprintf(w, "  tenant %s failed, %d rows not written: %s\n", termsafe.String(t.Tenant), len(t.Results), oneLine(t.Err))
				continue
			}
			for _, res := range t.Results {
				if done(res.Outcome) {
					continue
				}
				fmt.Fprintf(w, "  %s %s/%s %s: %s\n", res.Outcome, termsafe.String(t.Tenant), termsafe.String(res.WorkspaceID),
					termsafe.String(res.Name), oneLine(res.Reason))
			}
		}
	}
	fmt.Fprintf(w, "summary: %s\n", countLine(rep.Counts))
}
