package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"backfill/internal/evidence"
)

func (r *runner) publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "write a consistent, verified copy of the evidence store to DEST, not in WAL mode: for a shared volume, merge or another host",
		ArgsUsage: "DEST",
		Flags: []cli.Flag{
			// Command line only: a variable left in an environment must
			// never replace a published copy, perhaps the only one left of
			// a shard's evidence.
			&cli.BoolFlag{Name: "force", Usage: "replace an existing DEST (command line only)"},
			&cli.BoolFlag{Name: "allow-gone", EnvVars: envVar("allow-gone"), Usage: "a live workspace whose latest capture found it gone does not count as lacking evidence"},
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout"},
		},
		Action: func(c *cli.Context) error {
			return r.runPublish(c.Context, publishOptions{dest: c.Args().First(), force: c.Bool("force"), allowGone: c.Bool("allow-gone"), json: c.Bool("json")})
		},
	}
}

// publishOptions are publish's flags and DEST argument.
type publishOptions struct {
	dest                   string
	force, allowGone, json bool
}

// coverage is what a store holds of its tenants' live workspaces, counted
// as `status` counts them.
type coverage struct {
	Tenants          int `json:"tenants"`
	TenantsNotListed int `json:"tenants_not_listed"` // the latest listing failed
	Live             int `json:"live"`
	WithEvidence     int `json:"with_evidence"`
	Gone             int `json:"gone"`
	WithoutEvidence  int `json:"without_evidence"` // failed or never attempted
}

func storeCoverage(ctx context.Context, s *evidence.Store) (coverage, error) {
	var cv coverage
	listings, err := s.LatestListings(ctx, false)
	if err != nil {
		return cv, err
	}
	cv.Tenants = len(listings)
	for _, l := range listings {
		if l.Outcome == evidence.Unreachable {
			cv.TenantsNotListed++
		}
	}
	ws, err := s.Workspaces(ctx)
	if err != nil {
		return cv, err
	}
	for _, w := range ws {
		if !w.Listed {
			continue
		}
		cv.Live++
		switch {
		case w.Earliest != nil:
			cv.WithEvidence++
		case w.LatestOutcome == evidence.Gone:
			cv.Gone++
		default:
			cv.WithoutEvidence++
		}
	}
	return cv, nil
}

func (c coverage) complete(allowGone bool) bool {
	return c.TenantsNotListed == 0 && c.WithoutEvidence == 0 && (allowGone || c.Gone == 0)
}

// publishJSON is `publish --json`'s document.
type publishJSON struct {
	SchemaVersion int    `json:"schema_version"`
	Evidence      string `json:"evidence"`
	Dest          string `json:"dest"`
	Captures      int    `json:"captures"`
	Listings      int    `json:"listings"`
	Contents      int    `json:"contents"`
	ChainHead     string `json:"chain_head"`
	Complete      bool   `json:"complete"`
	coverage
}

// publishStore copies the store to DEST for readers on other hosts. It
// exits 3 when the copy lacks evidence for some live workspace, after the
// copy is in place: in a Kubernetes pod that is the step that reports a
// shard's shortfall, once its evidence is safe on the shared volume.
func (r *runner) runPublish(ctx context.Context, o publishOptions) error {
	dest := o.dest
	store, err := r.openStoreReadOnly(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	// A store a snapshot is still writing would be published part-way.
	if err := store.Lock(); errors.Is(err, evidence.ErrLocked) {
		return fail("%v: is a snapshot still writing it? publish it when it has finished", err)
	} else if err != nil {
		return fail("%v", err)
	}
	rep, err := store.PublishCopy(ctx, dest, evidence.PublishOptions{Replace: o.force})
	if err != nil {
		return fail("%v", err)
	}
	cv, err := storeCoverage(ctx, store)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	complete := cv.complete(o.allowGone)
	if o.json {
		err := printJSON(r.env.Stdout, publishJSON{SchemaVersion: 1, Evidence: store.Path(), Dest: dest, Captures: rep.Captures,
			Listings: rep.Listings, Contents: rep.Contents, ChainHead: rep.ChainHead, Complete: complete, coverage: cv})
		if err != nil {
			return err
		}
	} else {
		fmt.Fprintf(r.env.Stdout, "published %s to %s: %d captures, %d listings, %d distinct contents; chain head %s; the copy verifies\n",
			store.Path(), dest, rep.Captures, rep.Listings, rep.Contents, rep.ChainHead)
		fmt.Fprintf(r.env.Stdout, "  %d tenants (%d not listed), %d live workspaces: %d with evidence, %d gone, %d without evidence\n",
			cv.Tenants, cv.TenantsNotListed, cv.Live, cv.WithEvidence, cv.Gone, cv.WithoutEvidence)
		if !complete {
			fmt.Fprintf(r.env.Stdout, "  incomplete: `backfill status --evidence %s` names them\n", dest)
		}
	}
	if !complete {
		return errPartial
	}
	return nil
}
