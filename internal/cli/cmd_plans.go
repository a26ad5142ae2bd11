package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply/plan"
	"backfill/internal/termsafe"
)

func (r *runner) plansCommand() *cli.Command {
	return &cli.Command{
		Name:  "plans",
		Usage: "list every plan kept in the evidence store: fingerprint, author, time, writes, approvals, applied, rolled back",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout"},
		},
		Action: func(c *cli.Context) error { return r.runPlans(c.Context, plansOptions{json: c.Bool("json")}) },
	}
}

// plansOptions are plans's flags.
type plansOptions struct{ json bool }

// plansJSON is `plans --json`'s shape.
type plansJSON struct {
	SchemaVersion int             `json:"schema_version"`
	Evidence      string          `json:"evidence"`
	Plans         []plan.KeptPlan `json:"plans"`
}

func (r *runner) runPlans(ctx context.Context, o plansOptions) error {
	store, err := r.openStoreReadOnly(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	kept, err := plan.Kept(ctx, store)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	if o.json {
		enc := json.NewEncoder(r.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(plansJSON{SchemaVersion: 1, Evidence: store.Path(), Plans: kept})
	}
	if len(kept) == 0 {
		fmt.Fprintf(r.env.Stdout, "no plans kept in %s\n", store.Path())
		return nil
	}
	tw := tabwriter.NewWriter(r.env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tAUTHOR\tCREATED\tWRITES\tAPPROVED BY\tAPPLIED\tROLLED BACK")
	for _, k := range kept {
		by := "-"
		if len(k.ApprovedBy) > 0 {
			by = termsafe.String(strings.Join(k.ApprovedBy, ","))
			if k.Signed > 0 {
				by += fmt.Sprintf(" (%d signed)", k.Signed)
			}
		}
		if len(k.NotCounted) > 0 {
			by += fmt.Sprintf("; not counted: %s", termsafe.String(strings.Join(k.NotCounted, ",")))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\n", k.Fingerprint, termsafe.String(k.Author), k.CreatedAt.UTC().Format(time.RFC3339),
			k.Writes, by, k.Applied, k.RolledBack)
	}
	return tw.Flush()
}
