package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"backfill/apply"
	"backfill/apply/plan"
)

func (r *runner) rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:   "rollback",
		Usage:  "undo a plan's applied writes where the value is still the one written (dry run unless --execute)",
		Flags:  writeFlags(),
		Action: func(c *cli.Context) error { return r.runRollback(c.Context, readWriteOptions(c)) },
	}
}

func (r *runner) runRollback(ctx context.Context, w writeOptions) error {
	o, store, err := r.writeSetup(ctx, w, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	rep, err := apply.Rollback(ctx, o)
	if errors.Is(err, apply.ErrNothingApplied) {
		fmt.Fprintf(r.env.Stdout, "rollback of plan %s: %v\n", o.Plan.Fingerprint, err)
		return r.nameWriters(ctx, o)
	}
	if err != nil {
		return fail("rollback %s: %v", w.plan, err)
	}
	r.logRun("rollback", o, rep)
	if w.json {
		if err := printJSON(r.env.Stdout, reportJSON("rollback", o.Plan.Fingerprint, rep)); err != nil {
			return err
		}
		if !rep.Complete() {
			return errPartial
		}
		return nil
	}
	mode := "dry run, nothing written"
	if o.Execute {
		mode = "executed"
	}
	if len(o.Tenants) > 0 {
		mode += ", tenants " + strings.Join(o.Tenants, ", ") + " only"
	}
	fmt.Fprintf(r.env.Stdout, "rollback of plan %s (%s)\n", o.Plan.Fingerprint, mode)
	printReport(r.env.Stdout, rep, w.verbose)
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

// nameWriters says, for a plan that never wrote to this store's tenants,
// which plans did: the undo an operator is looking for is probably one of
// those.
func (r *runner) nameWriters(ctx context.Context, o apply.Options) error {
	fps, rows, err := plan.Writers(ctx, o.Store)
	if err != nil {
		return fail("read the journal: %v", err)
	}
	for _, fp := range fps {
		if fp == o.Plan.Fingerprint {
			return nil
		}
	}
	if len(fps) == 0 {
		fmt.Fprintf(r.env.Stdout, "plan %s never wrote anything; no plan has written through %s\n", o.Plan.Fingerprint, o.Store.Path())
		return nil
	}
	fmt.Fprintf(r.env.Stdout, "plan %s never wrote anything; plans that wrote through %s (roll back by fingerprint with --plan):\n", o.Plan.Fingerprint, o.Store.Path())
	for _, fp := range fps {
		fmt.Fprintf(r.env.Stdout, "  %s  %d rows\n", fp, rows[fp])
	}
	return nil
}
