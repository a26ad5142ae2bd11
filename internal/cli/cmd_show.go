package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply/plan"
	"backfill/internal/inventory"
	"backfill/internal/termsafe"
)

func (r *runner) showCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "summarise a plan: counts per verdict, then the items that need a person",
		ArgsUsage: "PLAN",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "machine-readable summary"},
			&cli.BoolFlag{Name: "writes", EnvVars: envVar("writes"), Usage: "list every write, not only the tenant × template rollup"},
			&cli.StringSliceFlag{Name: "tenant", EnvVars: envVar("tenant"), Usage: "only items of tenants matching this glob `PATTERN` (repeatable)"},
			&cli.StringSliceFlag{Name: "verdict", EnvVars: envVar("verdict"), Usage: "only items with this `VERDICT` (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			return r.runShow(c.Context, showOptions{plan: c.Args().First(), json: c.Bool("json"), writes: c.Bool("writes"),
				tenants: c.StringSlice("tenant"), verdicts: c.StringSlice("verdict")})
		},
	}
}

// showOptions are show's flags and PLAN argument.
type showOptions struct {
	plan              string
	json, writes      bool
	tenants, verdicts []string
}

// showJSON is `show --json`'s shape.
type showJSON struct {
	SchemaVersion int              `json:"schema_version"`
	Fingerprint   string           `json:"fingerprint"`
	Author        string           `json:"author"`
	CreatedAt     string           `json:"created_at"`
	Counts        map[string]int   `json:"counts"`
	Writes        int              `json:"writes"`
	Rollup        []plan.RollupRow `json:"rollup"`
	RollupDigest  string           `json:"rollup_digest"`
	Approval      approvalStatus   `json:"approval"`
	WriteItems    []plan.Item      `json:"write_items,omitempty"`
	NeedsReview   []plan.Item      `json:"needs_review"`
}

// approvalStatus is what the evidence store says of a plan's approval.
type approvalStatus struct {
	Approved bool           `json:"approved"`
	By       []approvalJSON `json:"by"`
	// Unknown is why the store could not be read, when it could not.
	Unknown string `json:"unknown,omitempty"`
}

type approvalJSON struct {
	By     string `json:"by"`
	At     string `json:"at"`
	Signed bool   `json:"signed"`
	// Checked: it derived the plan again from the plan's own catalog and CP
	// records; apply counts no other approval.
	Checked bool `json:"checked"`
}

// loadPlan loads a plan from a file, or, when no such file exists and arg
// looks like a fingerprint, the plan kept in the evidence store under that
// fingerprint or a prefix of it.
func (r *runner) loadPlan(ctx context.Context, arg string) (*plan.Plan, string, error) {
	if _, err := os.Stat(arg); err != nil && looksLikeFingerprint(arg) {
		store, err := r.openStoreReadOnly(ctx)
		if err != nil {
			return nil, "", err
		}
		defer store.Close()
		p, err := plan.LoadKept(ctx, store, arg)
		if err != nil {
			return nil, "", fail("%v", err)
		}
		return p, "kept in " + store.Path(), nil
	}
	p, err := plan.LoadPlan(arg)
	if err != nil {
		return nil, "", fail("%v", err)
	}
	if looksLikeFingerprint(arg) && !strings.HasPrefix(strings.TrimPrefix(p.Fingerprint, "sha256:"), strings.ToLower(strings.TrimPrefix(arg, "sha256:"))) {
		// A file named like a fingerprint must not stand in for the plan kept under it.
		return nil, "", fail("%s is a file holding plan %s, not the plan whose fingerprint starts so: pass ./%s for the file", arg, p.Fingerprint, arg)
	}
	return p, arg, nil
}

func looksLikeFingerprint(s string) bool {
	h := strings.TrimPrefix(s, "sha256:")
	return len(h) >= 8 && strings.Trim(strings.ToLower(h), "0123456789abcdef") == ""
}

func (r *runner) runShow(ctx context.Context, o showOptions) error {
	p, _, err := r.loadPlan(ctx, o.plan)
	if err != nil {
		return err
	}
	if p, err = filterPlan(p, o.tenants, o.verdicts); err != nil {
		return err
	}
	review := plan.NeedsReview(p)
	approval := r.approvalStatus(ctx, p)
	rollup := p.Rollup()
	if o.json {
		if review == nil {
			review = []plan.Item{}
		}
		out := showJSON{SchemaVersion: 1, Fingerprint: p.Fingerprint, Author: p.Author, CreatedAt: p.CreatedAt, Counts: p.Counts,
			Writes: p.Writes(), Rollup: rollup, RollupDigest: plan.RollupDigest(rollup), Approval: approval, NeedsReview: review}
		if o.writes {
			out.WriteItems = p.Agreed()
		}
		enc := json.NewEncoder(r.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	w := r.env.Stdout
	fmt.Fprintf(w, "plan %s by %s at %s\n", p.Fingerprint, termsafe.String(p.Author), p.CreatedAt)
	printApproval(w, approval, r.gopts.evidence)
	if ts, vs := o.tenants, o.verdicts; len(ts)+len(vs) > 0 {
		fmt.Fprintf(w, "filtered: %d items of tenants %v with verdicts %v (counts below are the whole plan's)\n", len(p.Items), ts, vs)
	}
	printCounts(w, p)
	printRollup(w, p, rollup)
	if o.writes {
		printWrites(w, p)
	}
	if len(review) == 0 {
		fmt.Fprintln(w, "nothing needs a person")
		return nil
	}
	fmt.Fprintf(w, "\n%d items need a person:\n", len(review))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERDICT\tTENANT\tWORKSPACE\tNAME\tREASON")
	for _, it := range review {
		v := string(it.Verdict)
		if it.Drift {
			v += " (drift)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v, termsafe.String(it.Tenant), termsafe.String(it.WorkspaceID),
			termsafe.String(it.WorkspaceName), termsafe.String(it.Reason))
	}
	return tw.Flush()
}

// printCounts prints the verdict counts in table order, zeros included.
func printCounts(w io.Writer, p *plan.Plan) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range plan.Verdicts {
		note := ""
		if v == plan.Agree {
			note = "\t(writes)"
		}
		fmt.Fprintf(tw, "  %s\t%d%s\n", v, p.Counts[string(v)], note)
	}
	fmt.Fprintf(tw, "  drift\t%d\t(already-set, differs)\n", p.Counts["drift"])
	tw.Flush()
}

// approvalStatus reads the plan's approvals from the evidence store, if
// there is one to read.
func (r *runner) approvalStatus(ctx context.Context, p *plan.Plan) approvalStatus {
	st := approvalStatus{By: []approvalJSON{}}
	store, err := r.openStoreReadOnly(ctx)
	if err != nil {
		st.Unknown = err.Error()
		return st
	}
	defer store.Close()
	as, err := store.Approvals(ctx, p.Fingerprint)
	if err != nil {
		st.Unknown = err.Error()
		return st
	}
	for _, a := range as {
		checked := plan.ApprovalChecked(a, p)
		st.By = append(st.By, approvalJSON{By: a.By, At: a.At.UTC().Format(time.RFC3339), Signed: a.Signature != "", Checked: checked})
		st.Approved = st.Approved || checked
	}
	return st
}

func printApproval(w io.Writer, st approvalStatus, path string) {
	switch {
	case st.Unknown != "":
		fmt.Fprintf(w, "approval: unknown (%s)\n", termsafe.String(st.Unknown))
	case len(st.By) == 0:
		fmt.Fprintf(w, "approval: NOT APPROVED in %s\n", path)
	default:
		for _, a := range st.By {
			signed := "unsigned"
			if a.Signed {
				signed = "signed"
			}
			if !a.Checked {
				signed += "; not checked against this plan's catalog and CP records: apply does not count it"
			}
			fmt.Fprintf(w, "approval: approved by %s at %s (%s)\n", termsafe.String(a.By), a.At, signed)
		}
		if !st.Approved {
			fmt.Fprintf(w, "approval: NOT APPROVED in %s: no approval apply counts\n", path)
		}
	}
}

// printRollup prints the plan's writes by tenant and template: what the
// approval of this fingerprint lets apply write.
func printRollup(w io.Writer, p *plan.Plan, rollup []plan.RollupRow) {
	fmt.Fprintf(w, "\nwrites: %d (rollup %s)\n", p.Writes(), plan.RollupDigest(rollup))
	if len(rollup) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TENANT\tSET TEMPLATE\tWRITES")
	for _, row := range rollup {
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", termsafe.String(row.Tenant), termsafe.String(row.Template), row.Writes)
	}
	tw.Flush()
}

// printWrites lists every write of the plan.
func printWrites(w io.Writer, p *plan.Plan) {
	agreed := p.Agreed()
	if len(agreed) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tWORKSPACE\tNAME\tSET TEMPLATE\tEVIDENCE")
	for _, it := range agreed {
		src := ""
		if it.Evidence.Source != "" {
			src = ", from " + termsafe.String(it.Evidence.Source)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tcapture %d (%s%s)\n", termsafe.String(it.Tenant), termsafe.String(it.WorkspaceID),
			termsafe.String(it.WorkspaceName), termsafe.String(it.Action.SetTemplate), it.Evidence.CaptureID, termsafe.String(it.Evidence.Rule), src)
	}
	tw.Flush()
}

// filterPlan keeps the items of the tenants and verdicts asked for, for
// showing only: the fingerprint and counts stay the whole plan's.
func filterPlan(p *plan.Plan, tenants, verdicts []string) (*plan.Plan, error) {
	if len(tenants) == 0 && len(verdicts) == 0 {
		return p, nil
	}
	want := map[plan.Verdict]bool{}
	for _, v := range verdicts {
		if !slices.Contains(plan.Verdicts, plan.Verdict(v)) {
			return nil, &exitError{ExitUsage, fmt.Errorf("--verdict %q: not a verdict (%v)", v, plan.Verdicts)}
		}
		want[plan.Verdict(v)] = true
	}
	for _, t := range tenants {
		if _, err := path.Match(t, ""); err != nil {
			return nil, &exitError{ExitUsage, fmt.Errorf("--tenant %q: %v", t, err)}
		}
	}
	q := *p
	q.Items = nil
	for _, it := range p.Items {
		if (len(tenants) == 0 || inventory.MatchTenant(it.Tenant, tenants)) && (len(want) == 0 || want[it.Verdict]) {
			q.Items = append(q.Items, it)
		}
	}
	return &q, nil
}
