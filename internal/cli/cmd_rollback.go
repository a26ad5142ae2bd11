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
		return r.nothingToRollBack(ctx, o, w.json, err)
	}
	if err != nil {
		return fail("rollback %s: %v", w.plan, err)
	}
	r.logRun("rollback", o, rep)
	if w.json {
		doc := reportJSON("rollback", o.Plan.Fingerprint, rep)
		doc.Scope = r.writeScope(w, o)
		if err := printJSON(r.env.Stdout, doc); err != nil {
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

// nothingToRollBack reports a rollback that had nothing to undo. A plan
// whose every write is undone already (a rollback run again) is done: exit
// 0. Anything else undid nothing the operator asked for (a plan that never
// wrote, or --tenant selecting none of its writes: likely the wrong plan or
// pattern): exit 3, naming the plans that did write through this store,
// since the undo the operator is looking for is probably one of those.
func (r *runner) nothingToRollBack(ctx context.Context, o apply.Options, asJSON bool, why error) error {
	fps, rows, err := plan.Writers(ctx, o.Store)
	if err != nil {
		return fail("read the journal: %v", err)
	}
	doc := nothingJSON{SchemaVersion: 1, Command: "rollback", Fingerprint: o.Plan.Fingerprint, Reason: "nothing-applied",
		Message: why.Error(), Writers: []writerJSON{}}
	wrote := false
	for _, fp := range fps {
		wrote = wrote || fp == o.Plan.Fingerprint
		if fp != o.Plan.Fingerprint {
			doc.Writers = append(doc.Writers, writerJSON{Fingerprint: fp, Rows: rows[fp]})
		}
	}
	switch {
	case errors.Is(why, apply.ErrAllUndone):
		doc.Reason = "all-undone"
	case len(o.Tenants) > 0:
		doc.Reason = "nothing-in-tenants"
	}
	if asJSON {
		if err := printJSON(r.env.Stdout, doc); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(r.env.Stdout, "rollback of plan %s: %v\n", o.Plan.Fingerprint, why)
		if !wrote {
			if len(doc.Writers) == 0 {
				fmt.Fprintf(r.env.Stdout, "plan %s never wrote anything; no plan has written through %s\n", o.Plan.Fingerprint, o.Store.Path())
			} else {
				fmt.Fprintf(r.env.Stdout, "plan %s never wrote anything; plans that wrote through %s (roll back by fingerprint with --plan):\n", o.Plan.Fingerprint, o.Store.Path())
				for _, w := range doc.Writers {
					fmt.Fprintf(r.env.Stdout, "  %s  %d rows\n", w.Fingerprint, w.Rows)
				}
			}
		}
	}
	if doc.Reason == "all-undone" {
		return nil
	}
	return errPartial
}

// nothingJSON is rollback --json's document when it had nothing to undo.
type nothingJSON struct {
	SchemaVersion int    `json:"schema_version"`
	Command       string `json:"command"`
	Fingerprint   string `json:"fingerprint"`
	// Reason: all-undone (exit 0), nothing-applied or nothing-in-tenants (exit 3).
	Reason  string       `json:"reason"`
	Message string       `json:"message"`
	Writers []writerJSON `json:"other_writers"` // other plans that wrote through this store
}

type writerJSON struct {
	Fingerprint string `json:"fingerprint"`
	Rows        int    `json:"rows"`
}
