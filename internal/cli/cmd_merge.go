package cli

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"backfill/internal/evidence"
)

func (r *runner) mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "combine the evidence stores of snapshot shards (or their published copies) into one new store",
		ArgsUsage: "OUT IN...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "allow-overlap", Usage: "let a tenant be in more than one input (a shard run again for its failed tenants): both inputs' evidence is kept, ordered by their hosts' clocks"},
		},
		Action: func(c *cli.Context) error {
			return r.runMerge(c.Context, mergeOptions{out: c.Args().First(), inputs: c.Args().Slice()[1:], allowOverlap: c.Bool("allow-overlap")})
		},
	}
}

// mergeOptions are merge's arguments (argCounts guarantees OUT and one IN).
type mergeOptions struct {
	out          string
	inputs       []string
	allowOverlap bool
}

func (r *runner) runMerge(ctx context.Context, o mergeOptions) error {
	sources, err := evidence.Merge(ctx, o.out, o.inputs, r.env.Now(), evidence.MergeOptions{AllowOverlap: o.allowOverlap})
	if err != nil {
		return fail("%v", err)
	}
	total := 0
	for _, s := range sources {
		fmt.Fprintf(r.env.Stdout, "  %s: %d captures, %d listings, chain head %s\n", s.Path, s.Captures, s.Listings, s.ChainHead)
		total += s.Captures
	}
	fmt.Fprintf(r.env.Stdout, "merged %d stores, %d captures, into %s; run `backfill verify --evidence %s`\n", len(sources), total, o.out, o.out)
	return nil
}
