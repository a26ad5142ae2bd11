package cli

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"backfill/internal/termsafe"
)

func (r *runner) verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "recompute the evidence store's hash chains and content hashes; exit 1 on any mismatch",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout"},
		},
		Action: func(c *cli.Context) error { return r.runVerify(c.Context, verifyOptions{json: c.Bool("json")}) },
	}
}

// verifyOptions are verify's flags.
type verifyOptions struct{ json bool }

func (r *runner) runVerify(ctx context.Context, o verifyOptions) error {
	store, err := r.openStoreReadOnly(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	rep, err := store.Verify(ctx)
	if err != nil {
		return fail("verify %s: %v", store.Path(), err)
	}
	if o.json {
		problems := rep.Problems
		if problems == nil {
			problems = []string{}
		}
		err := printJSON(r.env.Stdout, verifyJSON{SchemaVersion: 1, Evidence: store.Path(), OK: rep.OK(), Captures: rep.Captures,
			Listings: rep.Listings, Contents: rep.Contents, Approvals: rep.Approvals, Journal: rep.Journal, Plans: rep.Plans,
			Audits: rep.Audits, ChainHead: rep.ChainHead, Heads: rep.Heads, StoreHead: rep.StoreHead(), Problems: problems})
		if err != nil {
			return err
		}
		if !rep.OK() {
			return &exitError{ExitError, fmt.Errorf("evidence store %s does not verify: %s", store.Path(), rep.Problems[0])}
		}
		return nil
	}
	if !rep.OK() {
		fmt.Fprintf(r.env.Stdout, "verify FAILED: %s: %d problems\n", store.Path(), len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintf(r.env.Stdout, "  %s\n", termsafe.String(p))
		}
		return fail("evidence store %s does not verify: %s", store.Path(), rep.Problems[0])
	}
	fmt.Fprintf(r.env.Stdout, "verify ok: %s: %d captures, %d listings, %d distinct contents; chain head %s; store head %s\n",
		store.Path(), rep.Captures, rep.Listings, rep.Contents, rep.ChainHead, rep.StoreHead())
	return nil
}

// verifyJSON is `verify --json`'s document.
type verifyJSON struct {
	SchemaVersion int    `json:"schema_version"`
	Evidence      string `json:"evidence"`
	OK            bool   `json:"ok"`
	Captures      int    `json:"captures"`
	Listings      int    `json:"listings"`
	Contents      int    `json:"contents"`
	Approvals     int    `json:"approvals"`
	Journal       int    `json:"journal"`
	Plans         int    `json:"plans"`
	Audits        int    `json:"audits"`
	ChainHead     string `json:"chain_head"`
	// Heads is every chain's last hash; StoreHead one digest over them and
	// their counts, which changes when any chain's tail is deleted.
	Heads     map[string]string `json:"heads"`
	StoreHead string            `json:"store_head"`
	Problems  []string          `json:"problems"`
}
