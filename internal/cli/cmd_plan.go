package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/approver"
	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/inputfile"
	"backfill/internal/inventory"
	"backfill/internal/secret"
	"backfill/internal/termsafe"
)

func (r *runner) planCommand() *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "reconcile evidence, CP records and the databases as they are now into a plan (phase two)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "inventory", Required: true, EnvVars: envVar("inventory"), Usage: "inventory `FILE` (tenant names and DSNs; collectors are not read)"},
			&cli.StringFlag{Name: "cp", Required: true, EnvVars: envVar("cp"), Usage: "CP records: FILE.csv, FILE.json, FILE.yaml, or a postgres://… or host=… dbname=… DSN with --cp-query"},
			&cli.StringFlag{Name: "cp-query", EnvVars: envVar("cp-query"), Usage: "one SELECT returning tenant, workspace_id, template (for a DSN --cp), run read-only"},
			&cli.StringFlag{Name: "catalog", Required: true, EnvVars: envVar("catalog"), Usage: "template catalog `DIR`: the platform's template cache, a folder per template"},
			&cli.StringFlag{Name: "manifest", EnvVars: envVar("manifest"), Usage: "the platform's template manifest `FILE` (workspace_templates[].runtime), when it is not DIR/manifest.json"},
			&cli.StringFlag{Name: "out", Required: true, EnvVars: envVar("out"), Usage: "plan `FILE` to write"},
			&cli.StringFlag{Name: "report", EnvVars: envVar("report"), Usage: "also write a Markdown review summary that fits a ticket (under 60,000 characters) to `FILE`"},
			&cli.StringFlag{Name: "report-full", EnvVars: envVar("report-full"), Usage: "also write the full Markdown review, every item and write, to `FILE`"},
			&cli.StringFlag{Name: "report-csv", EnvVars: envVar("report-csv"), Usage: "also write every item as CSV to `FILE`"},
			&cli.StringFlag{Name: "author", EnvVars: envVar("author"), Usage: "plan author (default: $USER)"},
			&cli.StringFlag{Name: "sign-key", EnvVars: envVar("sign-key"), Usage: "sign the plan as its author with this unencrypted OpenSSH private key `FILE` (needed by apply --allowed-signers)"},
			// No environment variable: replacing an approved plan's file is
			// decided on the command line.
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout"},
			&cli.StringSliceFlag{Name: "tenant", EnvVars: envVar("tenant"), Usage: "plan only tenants matching this glob `PATTERN` (repeatable)"},
			&cli.IntFlag{Name: "tenant-concurrency", Value: plan.DefaultConcurrency, EnvVars: envVar("tenant-concurrency"), Usage: "tenant databases read at once"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out even if it holds another plan that is approved or applied (command line only)"},
			&cli.StringSliceFlag{Name: "allow-moved", Usage: "plan `TENANT` even if its DSN now reaches another database than the one its evidence was listed from; the plan records it (repeatable; command line only)"},
		},
		Action: func(c *cli.Context) error {
			return r.runPlan(c.Context, planOptions{
				inventory: c.String("inventory"), cp: c.String("cp"), cpQuery: c.String("cp-query"), catalog: c.String("catalog"),
				manifest: c.String("manifest"), out: c.String("out"), report: c.String("report"), reportFull: c.String("report-full"),
				reportCSV: c.String("report-csv"), author: c.String("author"), signKey: c.String("sign-key"), json: c.Bool("json"),
				tenants: c.StringSlice("tenant"), concurrency: c.Int("tenant-concurrency"), force: c.Bool("force"),
				allowMoved: c.StringSlice("allow-moved"),
			})
		},
	}
}

// planOptions are plan's flags.
type planOptions struct {
	inventory, cp, cpQuery, catalog, manifest string
	out, report, reportFull, reportCSV        string
	author, signKey                           string
	json                                      bool
	tenants                                   []string
	concurrency                               int
	force                                     bool
	allowMoved                                []string
}

func (r *runner) runPlan(ctx context.Context, o planOptions) error {
	b, signKey, err := r.planInputs(ctx, o)
	if err != nil {
		return err
	}
	store, err := r.openStore(ctx, false)
	if err != nil {
		return err
	}
	defer store.Close()
	// A snapshot still appending would add evidence the plan's digest does
	// not cover.
	if err := store.Lock(); err != nil {
		return fail("%v", err)
	}
	b.Store = store
	// The plan is written as it is made: each item is encoded into a spool
	// beside --out, tallied for the reports and spooled as a CSV row, so
	// no plan's items are ever held together. Nothing is at any path the
	// command writes until the plan is sealed over a store that verified.
	w, err := plan.NewWriter(o.out, o.reportFull != "", o.reportCSV != "")
	if err != nil {
		return fail("write plan: %v", err)
	}
	defer w.Close()
	p, warnings, err := plan.Stream(ctx, b, w.Add)
	if err == nil {
		err = w.Seal(p)
	}
	if err != nil {
		return fail("plan: %v", err)
	}
	for _, wn := range warnings {
		r.log.Warn(wn)
	}
	if err := r.writePlan(ctx, o, store, p, w, signKey, warnings); err != nil {
		return err
	}
	t := planTotals{writes: w.Writes(), review: w.NeedsReview()}
	if o.json {
		return r.printPlanJSON(o.out, p, t, warnings)
	}
	return r.printPlan(o.out, p, t)
}

// planTotals are what a plan written as it was made counted of its items.
type planTotals struct{ writes, review int }

// planInputs reads what a plan is built from (author, inventory, catalog,
// CP records) into plan.BuildOptions, without the store, and the author's
// signing key if one is given.
func (r *runner) planInputs(ctx context.Context, o planOptions) (plan.BuildOptions, []byte, error) {
	var b plan.BuildOptions
	author := o.author
	if author == "" {
		author, _ = r.env.LookupEnv("USER")
	}
	if strings.TrimSpace(author) == "" {
		return b, nil, &exitError{ExitUsage, errors.New("no author: pass --author or set USER")}
	}
	// The two-person rule compares names: they must be plain identifiers
	// that cannot look like one another.
	if err := approver.CheckName(author); err != nil {
		return b, nil, &exitError{ExitUsage, fmt.Errorf("--author: %v", err)}
	}
	var signKey []byte
	if kp := o.signKey; kp != "" {
		var err error
		if signKey, err = inputfile.Read(kp, maxKeyBytes); err != nil {
			return b, nil, fail("--sign-key: %v", err)
		}
	}
	invBytes, err := inputfile.Read(o.inventory, inventory.MaxBytes)
	if err != nil {
		return b, nil, fail("inventory: %v", err)
	}
	inv, err := inventory.ParseDatabases(o.inventory, invBytes, r.env.LookupEnv)
	if err != nil {
		return b, nil, fail("%v", err)
	}
	r.redactor.Add(inv.Secrets()...)
	patterns, err := tenantPatterns(inv, o.tenants, "--tenant")
	if err != nil {
		return b, nil, err
	}
	allowMoved := map[string]bool{}
	for _, t := range o.allowMoved {
		if _, ok := inv.Tenant(t); !ok {
			return b, nil, &exitError{ExitUsage, fmt.Errorf("--allow-moved %s: no such tenant in %s", t, inv.Path)}
		}
		allowMoved[t] = true
	}
	// The plan records the catalog's path as given; approve and apply load
	// it from there (or --catalog) and refuse another digest.
	cat, err := catalog.LoadWith(o.catalog, o.manifest)
	if err != nil {
		return b, nil, fail("catalog: %v", err)
	}
	// Any --cp value may be a connection string, whatever its form, and an
	// error may echo it: register its password before anything can fail.
	cpSource := cpLabel(o.cp)
	if pws, err := secret.DSNPasswords(o.cp); err == nil {
		r.redactor.Add(pws...)
	}
	records, err := cp.Load(ctx, o.cp, o.cpQuery)
	if err != nil {
		return b, nil, fail("CP records: %v", err)
	}
	// A plan over part of the fleet reads and plans only these tenants;
	// its digest is still the whole inventory's.
	return plan.BuildOptions{
		Inventory: inv.Select(patterns), CP: records, CPSource: cpSource,
		Concurrency: max(1, o.concurrency), Catalog: cat, CatalogDir: o.catalog, Manifest: o.manifest, Author: author,
		Now: r.env.Now, Logger: r.log, Redact: r.redactor.Redact, AllowMoved: allowMoved,
	}, signKey, nil
}

// writePlan writes the plan file and the reports asked for and keeps the
// sealed plan in the store, all or none of them.
func (r *runner) writePlan(ctx context.Context, o planOptions, store *evidence.Store, p *plan.Plan, w *plan.Writer, signKey []byte, warnings []string) error {
	if !o.force {
		if err := plan.CheckReplace(ctx, store, o.out, p.Fingerprint); err != nil {
			return fail("plan --out: %v", err)
		}
	}
	sig := ""
	if signKey != nil {
		var err error
		if sig, err = apply.SignPlan(signKey, p); err != nil {
			return fail("--sign-key: %v", err)
		}
	}
	// Every file is written to its temporary name first, so that a report
	// that cannot be written leaves no plan behind, kept or on disk; then
	// the plan is kept in the store (the file can be lost or replaced, the
	// undo handle cannot), then the files are renamed into place. All are
	// copied from the spool, never held whole.
	outs := []plan.Output{{What: "plan", Path: o.out, Write: w.Encode}}
	for _, rp := range []plan.Output{
		{What: "report", Path: o.reportFull, Write: func(f io.Writer) error { return w.WriteReport(f, o.out, warnings) }},
		{What: "report", Path: o.reportCSV, Write: w.EncodeCSV},
		{What: "report", Path: o.report, Write: func(f io.Writer) error {
			ref := o.reportFull
			if ref == "" {
				ref = o.reportCSV
			}
			return w.WriteSummary(f, o.out, ref, warnings)
		}},
	} {
		if rp.Path != "" {
			outs = append(outs, rp)
		}
	}
	err := plan.WriteFilesAtomic(outs, func() error {
		if err := plan.KeepWith(ctx, store, p, w.Encode, sig); err != nil {
			return fmt.Errorf("keep the plan in %s: %w", store.Path(), err)
		}
		return nil
	})
	if err != nil {
		return fail("%v", err)
	}
	r.log.Info("plan written", "path", o.out, "fingerprint", p.Fingerprint, "items", w.Items(), "writes", w.Writes(),
		"needs_review", w.NeedsReview(), "unreachable_tenants", len(p.Unreachable()))
	return nil
}

// printPlanJSON prints `plan --json`'s document; exit 3 when a tenant was
// unreachable.
func (r *runner) printPlanJSON(out string, p *plan.Plan, t planTotals, warnings []string) error {
	un := p.Unreachable()
	doc := planJSON{SchemaVersion: 1, Path: out, Fingerprint: p.Fingerprint, Counts: p.Counts, Writes: t.writes,
		NeedsReview: t.review, Unreachable: []plan.TenantDatabase{}, Warnings: warnings}
	if un != nil {
		doc.Unreachable = un
	}
	if doc.Warnings == nil {
		doc.Warnings = []string{}
	}
	if err := printJSON(r.env.Stdout, doc); err != nil {
		return err
	}
	if len(un) > 0 {
		return errPartial
	}
	return nil
}

// printPlan prints what plan wrote and what to do next; exit 3 when a
// tenant was unreachable.
func (r *runner) printPlan(out string, p *plan.Plan, t planTotals) error {
	fmt.Fprintf(r.env.Stdout, "plan written to %s\nfingerprint %s\n", out, p.Fingerprint)
	printCounts(r.env.Stdout, p)
	fmt.Fprintf(r.env.Stdout, "%d items need a person; review with `backfill show %s`, then `backfill approve %s --by NAME`\n",
		t.review, out, out)
	if un := p.Unreachable(); len(un) > 0 {
		for _, d := range un {
			fmt.Fprintf(r.env.Stdout, "tenant %s unreachable: %s\n", termsafe.String(d.Tenant), oneLine(d.Unreachable))
		}
		fmt.Fprintf(r.env.Stdout, "%d tenants could not be read; their workspaces are planned unreachable (no write); plan again when they are back\n", len(un))
		return errPartial
	}
	return nil
}

// planJSON is `plan --json`'s document.
type planJSON struct {
	SchemaVersion int                   `json:"schema_version"`
	Path          string                `json:"path"`
	Fingerprint   string                `json:"fingerprint"`
	Counts        map[string]int        `json:"counts"`
	Writes        int                   `json:"writes"`
	NeedsReview   int                   `json:"needs_review"`
	Unreachable   []plan.TenantDatabase `json:"unreachable"` // exit 3 when any
	Warnings      []string              `json:"warnings"`
}

// cpLabel names a CP source without its password: a file as given, a
// database by its DSN with the password masked.
func cpLabel(src string) string {
	if cp.IsDatabase(src) {
		return secret.RedactDSN(src)
	}
	return src
}
