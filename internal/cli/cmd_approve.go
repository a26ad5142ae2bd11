package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/catalog"
	"backfill/internal/inputfile"
	"backfill/internal/termsafe"
)

func (r *runner) approveCommand() *cli.Command {
	return &cli.Command{
		Name:      "approve",
		Usage:     "record the approval of a plan's fingerprint in the evidence store",
		ArgsUsage: "PLAN",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "by", Required: true, EnvVars: envVar("by"), Usage: "who approves: letters, digits, '.', '_', '-', '@'"},
			// No environment variable: the two-person rule is waived only
			// on the command line, where the reviewer sees it.
			&cli.BoolFlag{Name: "allow-self-approval", Usage: "let the plan's author approve it (command line only)"},
			// No environment variables for the inputs an approval vouches
			// for: plan reads the same ones, and an environment someone
			// else set up must not choose what the approver checks.
			&cli.StringFlag{Name: "catalog", Usage: "the template catalog `DIR` you vouch for (required; command line only: a plan's own record of it is the author's word)"},
			&cli.StringFlag{Name: "manifest", Usage: "its template manifest `FILE`, when not DIR/manifest.json (command line only)"},
			&cli.StringFlag{Name: "cp", Usage: "the CP records you vouch for (`SOURCE`: a file, or a DSN with --cp-query; required; command line only), to check every agree item's claim again"},
			&cli.StringFlag{Name: "cp-query", Usage: "the plan's CP query, for a DSN --cp (command line only)"},
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout"},
			&cli.StringFlag{Name: "sign-key", EnvVars: envVar("sign-key"), Usage: "sign the approval with this unencrypted OpenSSH private key `FILE` (SSHSIG, namespace backfill-approval, over the fingerprint and the digests it checked)"},
		},
		Action: func(c *cli.Context) error {
			return r.runApprove(c.Context, approveOptions{plan: c.Args().First(), by: c.String("by"), allowSelf: c.Bool("allow-self-approval"),
				inputs: readPlanInputs(c), json: c.Bool("json"), signKey: c.String("sign-key")})
		},
	}
}

// approveOptions are approve's flags and PLAN argument.
type approveOptions struct {
	plan, by  string
	allowSelf bool
	inputs    planInputs
	json      bool
	signKey   string // a private key file; "": unsigned
}

func (r *runner) runApprove(ctx context.Context, o approveOptions) error {
	p, path, err := r.loadPlan(ctx, o.plan)
	if err != nil {
		return err
	}
	var key []byte
	if o.signKey != "" {
		if key, err = inputfile.Read(o.signKey, maxKeyBytes); err != nil {
			return fail("--sign-key: %v", err)
		}
	}
	// The approver names the inputs: a plan records where its own came
	// from, but whoever can edit a plan can point those at doctored copies
	// whose digests it then records. (apply may take them from the plan: an
	// approval binds the digests the approver's inputs had.)
	if o.inputs.catalogDir == "" || o.inputs.cp == "" {
		return &exitError{ExitUsage, fmt.Errorf("approve needs --catalog DIR and --cp SOURCE, the inputs you vouch for (the plan says it was made from %s and %s, but anyone who edits a plan can change that)",
			termsafe.String(p.Inputs.Catalog.Path), termsafe.String(p.Inputs.CP.Source))}
	}
	cat, err := catalog.LoadWith(o.inputs.catalogDir, o.inputs.manifest)
	if err != nil {
		return fail("--catalog: %v", err)
	}
	records, err := r.records(ctx, o.inputs, p)
	if err != nil {
		return err
	}
	store, err := r.openStore(ctx, false)
	if err != nil {
		return err
	}
	defer store.Close()
	// The approver sees exactly what the approval lets apply write.
	rollup := p.Rollup()
	if !o.json {
		printRollup(r.env.Stdout, p, rollup)
	}
	a, err := apply.Approve(ctx, apply.ApproveOptions{Plan: p, Store: store, Catalog: cat, CP: records,
		By: o.by, AllowSelf: o.allowSelf, SignKey: key, Now: r.env.Now})
	if err != nil {
		return fail("%v", err)
	}
	signed := "unsigned"
	if a.Signature != "" {
		signed = "signed"
	}
	r.log.Info("approval recorded", "fingerprint", p.Fingerprint, "by", a.By, "writes", a.Writes, "rollup", a.RollupSHA256, "signed", a.Signature != "")
	if o.json {
		return printJSON(r.env.Stdout, approveJSON{SchemaVersion: 1, Fingerprint: p.Fingerprint, By: a.By, At: a.At.UTC().Format(time.RFC3339),
			Signed: a.Signature != "", Writes: a.Writes, RollupSHA256: a.RollupSHA256, Rollup: rollup,
			Checked: checkedJSON{Catalog: o.inputs.catalogDir, Manifest: o.inputs.manifest, CatalogSHA256: cat.Digest(), CP: r.redactor.Redact(cpLabel(o.inputs.cp)), CPSHA256: records.Digest()},
			Moved:   movedTenants(p)})
	}
	fmt.Fprintf(r.env.Stdout, "approved %s (%s) by %s, %s; %d writes, rollup %s\n", p.Fingerprint, path, a.By, signed, a.Writes, a.RollupSHA256)
	fmt.Fprintf(r.env.Stdout, "checked against the catalog %s (%s) and the CP records %s (%s, %d claims)\n",
		termsafe.String(catalogLabel(o.inputs.catalogDir, o.inputs.manifest)), cat.Digest(), termsafe.String(r.redactor.Redact(cpLabel(o.inputs.cp))), records.Digest(), records.Len())
	// What the approval lets apply write includes where: a tenant planned
	// in another database than its evidence was listed from is named.
	for _, m := range movedTenants(p) {
		fmt.Fprintf(r.env.Stdout, "  moved tenant %s: its writes go to %s; its evidence was listed from %s (plan --allow-moved)\n",
			termsafe.String(m.Tenant), termsafe.String(m.Database), termsafe.String(strings.Join(m.ListedFrom, "; and ")))
	}
	return nil
}

// approveJSON is `approve --json`'s document.
type approveJSON struct {
	SchemaVersion int              `json:"schema_version"`
	Fingerprint   string           `json:"fingerprint"`
	By            string           `json:"by"`
	At            string           `json:"at"`
	Signed        bool             `json:"signed"`
	Writes        int              `json:"writes"`
	RollupSHA256  string           `json:"rollup_sha256"`
	Rollup        []plan.RollupRow `json:"rollup"`
	Checked       checkedJSON      `json:"checked"`
	// Moved names each tenant planned in another database than its
	// evidence was listed from (plan --allow-moved).
	Moved []movedJSON `json:"moved,omitempty"`
}

// movedJSON is one moved tenant: the database its writes go to and those
// its evidence was listed from.
type movedJSON struct {
	Tenant     string   `json:"tenant"`
	Database   string   `json:"database"`
	ListedFrom []string `json:"listed_from"`
}

// movedTenants are the plan's tenants planned where their evidence was not
// listed from.
func movedTenants(p *plan.Plan) []movedJSON {
	var out []movedJSON
	for _, d := range p.Databases {
		if len(d.MovedFrom) > 0 {
			out = append(out, movedJSON{d.Tenant, d.Ident(), d.MovedFrom})
		}
	}
	return out
}

// checkedJSON names the inputs an approval re-derived the plan against.
type checkedJSON struct {
	Catalog       string `json:"catalog"`
	Manifest      string `json:"manifest,omitempty"` // "": the catalog's own manifest.json
	CatalogSHA256 string `json:"catalog_sha256"`
	CP            string `json:"cp"`
	CPSHA256      string `json:"cp_sha256"`
}

// catalogLabel names a catalog folder and, when given, its manifest.
func catalogLabel(dir, manifest string) string {
	if manifest == "" {
		return dir
	}
	return dir + " with manifest " + manifest
}
