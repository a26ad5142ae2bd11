package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/termsafe"
	"backfill/snapshot"
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
			// Command line only, both: a snapshot's BACKFILL_INVENTORY or
			// BACKFILL_SHARD left in the environment must not change what
			// a publish counts.
			&cli.StringFlag{Name: "inventory", Usage: "count coverage over this inventory `FILE`'s tenants: one it lists that the store never listed counts as not listed, one the store holds that it does not list is not counted (command line only)"},
			&cli.StringFlag{Name: "shard", Usage: "with --inventory, only the tenants of shard `K/N`, as snapshot --shard selects them (command line only)"},
		},
		Action: func(c *cli.Context) error {
			return r.runPublish(c.Context, publishOptions{dest: c.Args().First(), force: c.Bool("force"), allowGone: c.Bool("allow-gone"), json: c.Bool("json"),
				inventory: c.String("inventory"), shard: c.String("shard")})
		},
	}
}

// publishOptions are publish's flags and DEST argument.
type publishOptions struct {
	dest                   string
	force, allowGone, json bool
	inventory, shard       string
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
	// With --inventory: its tenants the store has no listing of (counted
	// in TenantsNotListed too), and the store's tenants it does not list,
	// which are not counted at all.
	NeverListed    []string `json:"never_listed,omitempty"`
	NotInInventory []string `json:"not_in_inventory,omitempty"`
	// With --shard: the store's tenants the inventory lists in other
	// shards, not counted either.
	OtherShards []string `json:"other_shards,omitempty"`
}

// storeCoverage counts the store's coverage of its tenants, or with only
// set, of those tenants (an inventory's), whether the store has listed them
// or not.
func storeCoverage(ctx context.Context, s *evidence.Store, only, inventory []string) (coverage, error) {
	var cv coverage
	listings, err := s.LatestListings(ctx, false)
	if err != nil {
		return cv, err
	}
	counted := func(string) bool { return true }
	if only != nil {
		set := map[string]bool{}
		for _, t := range only {
			set[t] = true
			if _, ok := listings[t]; !ok {
				cv.NeverListed = append(cv.NeverListed, t)
			}
		}
		for t := range listings {
			switch {
			case set[t]:
			case slices.Contains(inventory, t):
				cv.OtherShards = append(cv.OtherShards, t)
			default:
				cv.NotInInventory = append(cv.NotInInventory, t)
			}
		}
		sort.Strings(cv.NeverListed)
		sort.Strings(cv.NotInInventory)
		sort.Strings(cv.OtherShards)
		counted = func(t string) bool { return set[t] }
		cv.Tenants, cv.TenantsNotListed = len(only), len(cv.NeverListed)
	} else {
		cv.Tenants = len(listings)
	}
	for t, l := range listings {
		if l.Outcome == evidence.Unreachable && counted(t) {
			cv.TenantsNotListed++
		}
	}
	ws, err := s.Workspaces(ctx)
	if err != nil {
		return cv, err
	}
	for _, w := range ws {
		if !w.Listed || !counted(w.Tenant) {
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
	only, inventory, err := r.publishTenants(o)
	if err != nil {
		return err
	}
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
	cv, err := storeCoverage(ctx, store, only, inventory)
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
		if only != nil {
			fmt.Fprintf(r.env.Stdout, "  counted over the %d tenants of %s%s\n", len(only), termsafe.String(o.inventory), shardText(o.shard))
		}
		if len(cv.NeverListed) > 0 {
			fmt.Fprintf(r.env.Stdout, "  never listed in this store: %s\n", someNames(cv.NeverListed))
		}
		if len(cv.OtherShards) > 0 {
			fmt.Fprintf(r.env.Stdout, "  in other shards, so not counted: %s\n", someNames(termsafe.Strings(cv.OtherShards)))
		}
		if len(cv.NotInInventory) > 0 {
			fmt.Fprintf(r.env.Stdout, "  not in the inventory, so not counted: %s\n", someNames(termsafe.Strings(cv.NotInInventory)))
		}
		if !complete {
			fmt.Fprintf(r.env.Stdout, "  incomplete: `backfill status --evidence %s` names them\n", dest)
		}
	}
	if !complete {
		return errPartial
	}
	return nil
}

// publishTenants is the tenants --inventory (and --shard) select, and all
// the inventory's, or nil without --inventory. Its names and DSNs are read
// (inventory.LoadDatabases), so that a broken one is refused before
// anything is written.
func (r *runner) publishTenants(o publishOptions) (only, all []string, err error) {
	if o.inventory == "" {
		if o.shard != "" {
			return nil, nil, &exitError{ExitUsage, errors.New("--shard needs --inventory: a shard is a part of an inventory's tenants")}
		}
		return nil, nil, nil
	}
	has := func(string) bool { return true }
	if o.shard != "" {
		shard, err := snapshot.ParseShard(o.shard)
		if err != nil {
			return nil, nil, &exitError{ExitUsage, err}
		}
		has = shard.Has
	}
	inv, err := inventory.LoadDatabases(o.inventory, r.env.LookupEnv)
	if err != nil {
		return nil, nil, fail("%v", err)
	}
	r.redactor.Add(inv.Secrets()...)
	only = []string{}
	for _, t := range inv.Tenants {
		all = append(all, t.Name)
		if has(t.Name) {
			only = append(only, t.Name)
		}
	}
	return only, all, nil
}

// shardText is " (shard K/N)", or "" without one.
func shardText(shard string) string {
	if shard == "" {
		return ""
	}
	return " (shard " + shard + ")"
}

// someNames lists names, the first ten of them when there are more.
func someNames(names []string) string {
	if len(names) <= 10 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:10], ", "), len(names)-10)
}
