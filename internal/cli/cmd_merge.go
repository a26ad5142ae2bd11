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
		Action: func(c *cli.Context) error {
			return r.runMerge(c.Context, mergeOptions{out: c.Args().First(), inputs: c.Args().Slice()[1:]})
		},
	}
}

// mergeOptions are merge's arguments (argCounts guarantees OUT and one IN).
type mergeOptions struct {
	out    string
	inputs []string
}

func (r *runner) runMerge(ctx context.Context, o mergeOptions) error {
	sources, err := evidence.Merge(ctx, o.out, o.inputs, r.env.Now())
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
