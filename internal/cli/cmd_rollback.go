package cli

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"backfill/apply"
)

func (r *runner) rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:   "rollback",
		Usage:  "undo a plan's applied writes where the value is still the one written (dry run unless --execute)",
		Flags:  writeFlags(),
		Action: r.rollback,
	}
}

func (r *runner) rollback(c *cli.Context) error {
	o, store, err := r.writeSetup(c)
	if err != nil {
		return err
	}
	defer store.Close()
	rep, err := apply.Rollback(c.Context, o)
	if errors.Is(err, apply.ErrNothingApplied) {
		fmt.Fprintf(r.env.Stdout, "rollback of plan %s: %v\n", o.Plan.Fingerprint, err)
		return nil
	}
	if err != nil {
		return fail("rollback %s: %v", c.String("plan"), err)
	}
	mode := "dry run, nothing written"
	if o.Execute {
		mode = "executed"
	}
	fmt.Fprintf(r.env.Stdout, "rollback of plan %s (%s)\n", o.Plan.Fingerprint, mode)
	printReport(r.env.Stdout, rep)
	if rep.EarlierRollbacks > 0 {
		fmt.Fprintf(r.env.Stdout, "not touched again: %d writes of this plan an earlier rollback already undid\n", rep.EarlierRollbacks)
	}
	if rep.Superseded > 0 {
		fmt.Fprintf(r.env.Stdout, "not touched: %d rows another plan wrote after this plan's write was undone (roll back that plan instead)\n", rep.Superseded)
	}
	// A dry run that finds skips or failures exits 3 too, so a pre-flight
	// script can stop before --execute.
	if !rep.Complete() {
		return errPartial
	}
	return nil
}
