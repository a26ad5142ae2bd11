package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"backfill/apply"
)

func (r *runner) showCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "summarise a plan: counts per verdict, then the items that need a person",
		ArgsUsage: "PLAN",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "machine-readable summary"},
		},
		Action: r.show,
	}
}

// showJSON is `show --json`'s shape.
type showJSON struct {
	Fingerprint string         `json:"fingerprint"`
	Author      string         `json:"author"`
	CreatedAt   string         `json:"created_at"`
	Counts      map[string]int `json:"counts"`
	Writes      int            `json:"writes"`
	NeedsReview []apply.Item   `json:"needs_review"`
}

func (r *runner) loadPlanArg(c *cli.Context) (*apply.Plan, string, error) {
	if c.NArg() != 1 {
		return nil, "", &exitError{ExitUsage, fmt.Errorf("%s needs exactly one PLAN argument", c.Command.Name)}
	}
	path := c.Args().First()
	p, err := apply.LoadPlan(path)
	if err != nil {
		return nil, "", fail("%v", err)
	}
	return p, path, nil
}

func (r *runner) show(c *cli.Context) error {
	p, _, err := r.loadPlanArg(c)
	if err != nil {
		return err
	}
	review := apply.NeedsReview(p)
	if c.Bool("json") {
		if review == nil {
			review = []apply.Item{}
		}
		enc := json.NewEncoder(r.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(showJSON{p.Fingerprint, p.Author, p.CreatedAt, p.Counts, len(p.Agreed()), review})
	}
	w := r.env.Stdout
	fmt.Fprintf(w, "plan %s by %s at %s\n", p.Fingerprint, p.Author, p.CreatedAt)
	printCounts(w, p)
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v, it.Tenant, it.WorkspaceID, it.WorkspaceName, it.Reason)
	}
	return tw.Flush()
}

// printCounts prints the verdict counts in table order, zeros included.
func printCounts(w io.Writer, p *apply.Plan) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range apply.Verdicts {
		note := ""
		if v == apply.Agree {
			note = "\t(writes)"
		}
		fmt.Fprintf(tw, "  %s\t%d%s\n", v, p.Counts[string(v)], note)
	}
	fmt.Fprintf(tw, "  drift\t%d\t(already-set, differs)\n", p.Counts["drift"])
	tw.Flush()
}
