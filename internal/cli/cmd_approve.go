package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"backfill/apply"
	"backfill/internal/cp"
	"backfill/internal/evidence"
)

func (r *runner) approveCommand() *cli.Command {
	return &cli.Command{
		Name:      "approve",
		Usage:     "record the approval of a plan's fingerprint in the evidence store",
		ArgsUsage: "PLAN",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "by", Required: true, EnvVars: envVar("by"), Usage: "who approves"},
			// No environment variable: the two-person rule is waived only
			// on the command line, where the reviewer sees it.
			&cli.BoolFlag{Name: "allow-self-approval", Usage: "let the plan's author approve it (command line only)"},
			&cli.StringFlag{Name: "catalog", EnvVars: envVar("catalog"), Usage: "the plan's template catalog `DIR` (default: the path the plan records)"},
			&cli.StringFlag{Name: "cp", EnvVars: envVar("cp"), Usage: "the plan's CP records `FILE`, to check every agree item's claim again"},
		},
		Action: r.approve,
	}
}

func (r *runner) approve(c *cli.Context) error {
	by := strings.TrimSpace(c.String("by"))
	if by == "" {
		return &exitError{ExitUsage, errors.New("--by must name the approver")}
	}
	p, path, err := r.loadPlanArg(c)
	if err != nil {
		return err
	}
	if strings.EqualFold(by, strings.TrimSpace(p.Author)) && !c.Bool("allow-self-approval") {
		return fail("%s is the plan's author; a second person must approve (or pass --allow-self-approval)", by)
	}
	store, err := r.openStore(c, false)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := planMatchesStore(c, store, p.Inputs.Evidence.ChainHead); err != nil {
		return err
	}
	cat, err := loadPlanCatalog(c, p)
	if err != nil {
		return err
	}
	// Approving a plan whose writes reconciliation would not produce would
	// lend a forged plan a person's name.
	var records *cp.Records
	if src := c.String("cp"); src != "" {
		if records, err = loadPlanCP(c, src); err != nil {
			return err
		}
	}
	if err := apply.Rederive(c.Context, p, store, cat, records); err != nil {
		return fail("%v", err)
	}
	// The approver sees exactly what the approval lets apply write.
	rollup := p.Rollup()
	printRollup(r.env.Stdout, p, rollup)
	a := &evidence.Approval{Fingerprint: p.Fingerprint, By: by, PlanAuthor: p.Author, At: r.env.Now()}
	if err := store.Append(c.Context, a); err != nil {
		return fail("record approval: %v", err)
	}
	fmt.Fprintf(r.env.Stdout, "approved %s (%s) by %s; %d writes, rollup %s\n", p.Fingerprint, path, by, len(p.Agreed()), apply.RollupDigest(rollup))
	return nil
}

// planMatchesStore refuses a plan made from another evidence store.
func planMatchesStore(c *cli.Context, store *evidence.Store, head string) error {
	if head == "" {
		return nil
	}
	ok, err := store.HasCaptureHash(c.Context, head)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	if !ok {
		return fail("the plan was made from other evidence: its chain head %s is not in %s", head, store.Path())
	}
	return nil
}
