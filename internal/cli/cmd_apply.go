package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/inputfile"
	"backfill/internal/inventory"
	"backfill/internal/secret"
	"backfill/internal/sshsig"
	"backfill/internal/termsafe"
)

// writeFlags are shared by apply and rollback.
func writeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "inventory", Required: true, EnvVars: envVar("inventory"), Usage: "inventory `FILE` (tenant names and DSNs; collectors are not read)"},
		&cli.StringFlag{Name: "plan", Required: true, EnvVars: envVar("plan"), Usage: "approved plan `FILE`, or a fingerprint (prefix) of a plan kept in the store"},
		// Deliberately no BACKFILL_EXECUTE: a variable left in a shell must
		// never turn a dry run into a production write.
		&cli.BoolFlag{Name: "execute", Usage: "write; without it, a read-only dry run (command line only)"},
		// Tenants, not captures: its own name and variable, so a
		// BACKFILL_CAPTURE_CONCURRENCY sized for snapshot never applies here.
		&cli.IntFlag{Name: "tenant-concurrency", Aliases: []string{"concurrency"}, Value: apply.DefaultConcurrency, EnvVars: envVar("tenant-concurrency"), Usage: "tenant transactions at once"},
		&cli.DurationFlag{Name: "lock-timeout", Value: apply.DefaultLockTimeout, EnvVars: envVar("lock-timeout"), Usage: "tenant session lock_timeout"},
		&cli.DurationFlag{Name: "statement-timeout", Value: apply.DefaultStatementTimeout, EnvVars: envVar("statement-timeout"), Usage: "tenant session statement_timeout"},
		&cli.StringFlag{Name: "operator", EnvVars: envVar("operator"), Usage: "who runs this, for the journal (default: $USER)"},
		// No environment variable: writing to a database the plan did not
		// read is decided on the command line, tenant by tenant.
		&cli.StringSliceFlag{Name: "tenant", EnvVars: envVar("tenant"), Usage: "only tenants matching this glob `PATTERN` (repeatable); a later run without it finishes the rest"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, EnvVars: envVar("verbose"), Usage: "also print one line per row"},
		&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout, every row included"},
		&cli.StringFlag{Name: "allowed-signers", EnvVars: envVar("allowed-signers"), Usage: "OpenSSH allowed_signers `FILE`: --execute then needs the author's signature and an approval signed by a listed principal other than the author"},
		&cli.StringSliceFlag{Name: "allow-moved", Usage: "write to `TENANT` even if its DSN now reaches another database than the plan read (repeatable; command line only)"},
	}
}

// maxKeyBytes bounds a key or allowed signers file read.
const maxKeyBytes = 1 << 20

func (r *runner) applyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apply",
		Usage: "write an approved plan's agreed values with compare-and-swap (dry run unless --execute)",
		Flags: append(writeFlags(),
			// Command line only: a canary is one step, and one left in the
			// environment would make every later apply a canary that
			// exits 0 having written to part of the plan.
			&cli.IntFlag{Name: "canary", Usage: "apply to the first `N` tenants only, read back, and stop (command line only)"},
			&cli.StringSliceFlag{Name: "canary-tenant", Usage: "apply to this `TENANT` as the canary (repeatable), read back, and stop (command line only)"},
			&cli.StringFlag{Name: "catalog", EnvVars: envVar("catalog"), Usage: "the plan's template catalog `DIR` (default: the path the plan records)"},
			&cli.StringFlag{Name: "manifest", EnvVars: envVar("manifest"), Usage: "the plan's template manifest `FILE` (default: the one the plan records)"},
			&cli.StringFlag{Name: "cp", EnvVars: envVar("cp"), Usage: "the plan's CP records (`SOURCE`: a file or DSN, default: the file the plan records), to check every agree item's claim again"},
			&cli.StringFlag{Name: "cp-query", EnvVars: envVar("cp-query"), Usage: "the plan's CP query, for a DSN --cp"},
		),
		Action: func(c *cli.Context) error {
			return r.runApply(c.Context, applyOptions{writeOptions: readWriteOptions(c), canary: c.Int("canary"), canaryTenants: c.StringSlice("canary-tenant"),
				inputs: readPlanInputs(c)})
		},
	}
}

// writeOptions are the flags apply and rollback share.
type writeOptions struct {
	inventory, plan, operator     string
	execute                       bool
	concurrency                   int
	lockTimeout, statementTimeout time.Duration
	tenants, allowMoved           []string
	verbose, json                 bool
	allowedSigners                string // an allowed_signers file; "": any approval counts
}

func readWriteOptions(c *cli.Context) writeOptions {
	return writeOptions{
		inventory: c.String("inventory"), plan: c.String("plan"), operator: c.String("operator"), execute: c.Bool("execute"),
		concurrency: c.Int("tenant-concurrency"), lockTimeout: c.Duration("lock-timeout"), statementTimeout: c.Duration("statement-timeout"),
		tenants: c.StringSlice("tenant"), allowMoved: c.StringSlice("allow-moved"), verbose: c.Bool("verbose"), json: c.Bool("json"),
		allowedSigners: c.String("allowed-signers"),
	}
}

// applyOptions are apply's flags: writeFlags and its own.
type applyOptions struct {
	writeOptions
	canary        int
	canaryTenants []string
	inputs        planInputs
}

// planInputs are the flags naming a plan's inputs again, for checking its
// writes before approving or applying it.
type planInputs struct {
	catalogDir, manifest string // "": the ones the plan records
	cp, cpQuery          string // "": the CP file the plan records
}

func readPlanInputs(c *cli.Context) planInputs {
	return planInputs{catalogDir: c.String("catalog"), manifest: c.String("manifest"), cp: c.String("cp"), cpQuery: c.String("cp-query")}
}

// writeSetup loads and checks everything apply and rollback share, and for
// apply (a non-nil) its own flags; the returned store is locked against
// other snapshot and apply runs.
func (r *runner) writeSetup(ctx context.Context, w writeOptions, a *applyOptions) (apply.Options, *evidence.Store, error) {
	var o apply.Options
	canary := 0
	if a != nil {
		canary = a.canary
	}
	if w.concurrency < 1 || w.lockTimeout <= 0 || w.statementTimeout <= 0 || canary < 0 {
		return o, nil, &exitError{ExitUsage, errors.New("--tenant-concurrency, --lock-timeout and --statement-timeout must be positive, --canary not negative")}
	}
	if a != nil {
		// The canary flags were read from these variables once; a runbook
		// that still sets one means a canary, and must not get the whole
		// plan written instead.
		for _, name := range []string{"BACKFILL_CANARY", "BACKFILL_CANARY_TENANT"} {
			if v, ok := r.env.LookupEnv(name); ok && v != "" {
				return o, nil, &exitError{ExitUsage, fmt.Errorf("%s is set, but the canary is chosen on the command line only (--canary, --canary-tenant): "+
					"pass it there, or unset %s", name, name)}
			}
		}
	}
	inv, err := inventory.LoadDatabases(w.inventory, r.env.LookupEnv)
	if err != nil {
		return o, nil, fail("%v", err)
	}
	r.redactor.Add(inv.Secrets()...)
	p, _, err := r.loadPlan(ctx, w.plan)
	if err != nil {
		return o, nil, err
	}
	operator := w.operator
	if operator == "" {
		operator, _ = r.env.LookupEnv("USER")
	}
	if strings.TrimSpace(operator) == "" {
		return o, nil, &exitError{ExitUsage, errors.New("no operator: pass --operator or set USER")}
	}
	tenants, err := tenantPatterns(inv, w.tenants, "--tenant")
	if err != nil {
		return o, nil, err
	}
	var canaries []string
	if a != nil {
		if canaries, err = tenantPatterns(inv, a.canaryTenants, "--canary-tenant"); err != nil {
			return o, nil, err
		}
		if len(canaries) > 0 && canary > 0 {
			return o, nil, &exitError{ExitUsage, errors.New("--canary and --canary-tenant choose the canary two ways: give one")}
		}
	}
	allowMoved := map[string]bool{}
	for _, t := range w.allowMoved {
		if _, ok := inv.Tenant(t); !ok {
			return o, nil, &exitError{ExitUsage, fmt.Errorf("--allow-moved %s: no such tenant in %s", t, inv.Path)}
		}
		allowMoved[t] = true
	}
	var cat *catalog.Catalog
	var records *cp.Records
	var signers *sshsig.AllowedSigners
	if sp := w.allowedSigners; sp != "" {
		b, err := inputfile.Read(sp, maxKeyBytes)
		if err != nil {
			return o, nil, fail("--allowed-signers: %v", err)
		}
		if signers, err = sshsig.ParseAllowedSigners(sp, b); err != nil {
			return o, nil, fail("--allowed-signers: %v", err)
		}
	} else if w.execute && a != nil {
		// Said every time: an empty or unset BACKFILL_ALLOWED_SIGNERS
		// must not pass for signatures checked.
		r.log.Warn("no --allowed-signers: signatures are not checked, and any recorded approval of the plan counts")
	} else if w.execute {
		r.log.Warn("no --allowed-signers: neither signatures nor approvals are checked; rollback undoes what the journal says the plan wrote")
	}
	if a != nil {
		if cat, err = a.inputs.catalog(p); err != nil {
			return o, nil, err
		}
		if records, err = r.records(ctx, a.inputs, p); err != nil {
			return o, nil, err
		}
	}
	store, err := r.openStore(ctx, false)
	if err != nil {
		return o, nil, err
	}
	if err := store.Lock(); err != nil {
		store.Close()
		return o, nil, fail("%v", err)
	}
	o = apply.Options{
		Plan: p, Inventory: inv, Store: store, Catalog: cat, CP: records, AllowMoved: allowMoved, AllowedSigners: signers,
		Tenants: tenants, CanaryTenants: canaries,
		Execute: w.execute, Canary: canary,
		Concurrency: w.concurrency, LockTimeout: w.lockTimeout, StatementTimeout: w.statementTimeout,
		Operator: operator, Now: r.env.Now, Logger: r.log, Redactor: r.redactor,
	}
	if sc := r.writeScope(w, o); sc != nil {
		// A --tenant left in the environment (BACKFILL_TENANT) must not
		// pass for the whole plan: the run says so before it starts.
		r.log.Warn("covering part of the plan", "scope", sc.String())
	}
	return o, store, nil
}

// writeScope is what an apply or rollback was limited to, or nil when it
// covers the whole plan.
type writeScope struct {
	Canary        int      `json:"canary,omitempty"`         // the first N tenants
	CanaryTenants []string `json:"canary_tenants,omitempty"` // --canary-tenant
	Tenants       []string `json:"tenants,omitempty"`        // --tenant patterns
	// TenantsFrom says where Tenants came from: --tenant, or the variable
	// BACKFILL_TENANT when it holds the patterns in effect.
	TenantsFrom string `json:"tenants_from,omitempty"`
}

func (r *runner) writeScope(w writeOptions, o apply.Options) *writeScope {
	if o.Canary == 0 && len(o.CanaryTenants) == 0 && len(w.tenants) == 0 {
		return nil
	}
	sc := &writeScope{Canary: o.Canary, CanaryTenants: o.CanaryTenants, Tenants: w.tenants}
	if len(w.tenants) > 0 {
		sc.TenantsFrom = "--tenant"
		name := envVar("tenant")[0]
		if v, ok := r.env.LookupEnv(name); ok && v != "" && slices.Equal(splitList(v), w.tenants) {
			sc.TenantsFrom = name
		}
	}
	return sc
}

func (sc *writeScope) String() string {
	var parts []string
	if sc.Canary > 0 {
		parts = append(parts, fmt.Sprintf("canary: the first %d tenants (--canary)", sc.Canary))
	}
	if len(sc.CanaryTenants) > 0 {
		parts = append(parts, fmt.Sprintf("canary: %s (--canary-tenant)", strings.Join(sc.CanaryTenants, ", ")))
	}
	if len(sc.Tenants) > 0 {
		parts = append(parts, fmt.Sprintf("tenants %s (%s)", strings.Join(sc.Tenants, ", "), sc.TenantsFrom))
	}
	return strings.Join(parts, "; ")
}

// splitList splits a list flag's environment value as urfave/cli does:
// on commas, each part trimmed.
func splitList(v string) []string {
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// checkPatterns refuses a malformed glob pattern, for commands that filter
// what a store holds rather than an inventory's tenants.
func checkPatterns(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return &exitError{ExitUsage, fmt.Errorf("--tenant %q: %v", p, err)}
		}
	}
	return nil
}

// tenantPatterns checks glob patterns naming tenants (inventory.CheckPatterns);
// a bad one is a usage error naming flag.
func tenantPatterns(inv *inventory.Inventory, patterns []string, flag string) ([]string, error) {
	if err := inv.CheckPatterns(patterns); err != nil {
		return nil, &exitError{ExitUsage, fmt.Errorf("%s %v", flag, err)}
	}
	return patterns, nil
}

// catalog loads the catalog a plan was made with: --catalog, else the
// path the plan records. Rederive refuses another digest.
func (in planInputs) catalog(p *plan.Plan) (*catalog.Catalog, error) {
	dir, man := in.catalogDir, in.manifest
	if dir == "" {
		dir = p.Inputs.Catalog.Path
	}
	if man == "" {
		man = p.Inputs.Catalog.Manifest
	}
	cat, err := catalog.LoadWith(dir, man)
	if err != nil {
		return nil, fail("the plan's catalog (pass --catalog DIR if it moved): %v", err)
	}
	return cat, nil
}

// records loads the CP records a plan's claims are checked against again:
// --cp (with --cp-query for a database), else the file the plan records.
// There is no going without: a plan's claims are only as true as its file,
// so an item edited to claim what the CP never said must meet the records.
// A database is read only when named again (the plan keeps no password or
// query); if its rows changed since, the digest refuses and the plan is
// made again.
func (r *runner) records(ctx context.Context, in planInputs, p *plan.Plan) (*cp.Records, error) {
	src := in.cp
	if src == "" {
		src = p.Inputs.CP.Source
		switch {
		case src == "":
			return nil, fail("the plan records no CP source: pass its CP records with --cp")
		case cp.IsDatabase(src):
			return nil, fail("the plan's CP records are a database (%s): pass --cp DSN and --cp-query QUERY to read them again", src)
		}
	}
	if pws, err := secret.DSNPasswords(src); err == nil {
		r.redactor.Add(pws...)
	}
	records, err := cp.Load(ctx, src, in.cpQuery)
	if err != nil {
		if in.cp == "" {
			return nil, fail("the plan's CP records (pass --cp SOURCE if they moved): %v", err)
		}
		return nil, fail("CP records: %v", err)
	}
	return records, nil
}

func (r *runner) runApply(ctx context.Context, a applyOptions) error {
	o, store, err := r.writeSetup(ctx, a.writeOptions, &a)
	if err != nil {
		return err
	}
	defer store.Close()
	if !o.Execute {
		if as, err := store.Approvals(ctx, o.Plan.Fingerprint); err != nil {
			return fail("read %s: %v", store.Path(), err)
		} else if !slices.ContainsFunc(as, func(a evidence.Approval) bool { return plan.ApprovalChecked(a, o.Plan) }) {
			r.log.Warn("this plan has no approval apply counts yet; apply --execute will refuse it", "fingerprint", o.Plan.Fingerprint, "approvals", len(as))
		}
	}
	// With --execute, Apply checks everything before the first tenant
	// connection and refuses the plan if anything is off.
	rep, err := apply.Apply(ctx, o)
	if err != nil {
		return fail("apply %s: %v", a.plan, err)
	}
	r.logRun("apply", o, rep)
	if a.json {
		doc := reportJSON("apply", o.Plan.Fingerprint, rep)
		doc.Scope = r.writeScope(a.writeOptions, o)
		if err := printJSON(r.env.Stdout, doc); err != nil {
			return err
		}
	} else {
		mode := "dry run, nothing written"
		if o.Execute {
			mode = "executed"
		}
		if o.Canary > 0 {
			mode += fmt.Sprintf(", canary: first %d tenants", o.Canary)
		}
		if len(o.CanaryTenants) > 0 {
			mode += ", canary: " + strings.Join(o.CanaryTenants, ", ")
		}
		if len(o.Tenants) > 0 {
			mode += ", tenants " + strings.Join(o.Tenants, ", ") + " only"
		}
		fmt.Fprintf(r.env.Stdout, "apply of plan %s (%s)\n", o.Plan.Fingerprint, mode)
		printReport(r.env.Stdout, rep, a.verbose)
		if (o.Canary > 0 || len(o.CanaryTenants) > 0) && o.Execute {
			printReadback(r.env.Stdout, rep)
		}
	}
	// A dry run that finds skips or failures exits 3 too, so a pre-flight
	// script can stop before --execute.
	if !rep.Complete() {
		return errPartial
	}
	return nil
}

// logRun logs each tenant transaction's outcome, and each row at debug.
func (r *runner) logRun(op string, o apply.Options, rep *apply.Report) {
	for _, t := range rep.Tenants {
		n := map[string]int{}
		for _, res := range t.Results {
			n[res.Outcome]++
			r.log.Debug(op+" row", "tenant", t.Tenant, "workspace_id", res.WorkspaceID, "outcome", res.Outcome,
				"before", res.Before, "after", res.After, "reason", res.Reason)
		}
		if t.Err != "" {
			continue // apply logs a failed tenant as it happens
		}
		r.log.Info(op+" tenant done", "tenant", t.Tenant, "execute", o.Execute, "outcomes", countLine(n))
	}
	r.log.Info(op+" finished", "fingerprint", o.Plan.Fingerprint, "execute", o.Execute, "outcomes", countLine(rep.Counts), "complete", rep.Complete())
}

func printReadback(w io.Writer, rep *apply.Report) {
	fmt.Fprintln(w, "canary read-back:")
	for _, t := range rep.Tenants {
		for _, res := range t.Readback {
			fmt.Fprintf(w, "  %-8s %s/%s template=%q %s\n", res.Outcome, termsafe.String(res.Tenant), termsafe.String(res.WorkspaceID), res.After, oneLine(res.Reason))
		}
	}
}

// oneLine keeps multi-line driver errors from breaking line-oriented output,
// and control characters from acting on the terminal.
func oneLine(s string) string {
	return termsafe.String(strings.Join(strings.Fields(s), " "))
}

func countLine(counts map[string]int) string {
	if len(counts) == 0 {
		return "nothing to do"
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, counts[k])
	}
	return strings.Join(parts, ", ")
}
