package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"backfill/internal/termsafe"
)

func (r *runner) verifyCommand() *cli.Command {
	return &cli.Command{
		Name:   "verify",
		Usage:  "recompute the evidence store's hash chains and content hashes; exit 1 on any mismatch",
		Action: r.verify,
	}
}

func (r *runner) verify(c *cli.Context) error {
	store, err := r.openStoreReadOnly(c)
	if err != nil {
		return err
	}
	defer store.Close()
	rep, err := store.Verify(c.Context)
	if err != nil {
		return fail("verify %s: %v", store.Path(), err)
	}
	if !rep.OK() {
		fmt.Fprintf(r.env.Stdout, "verify FAILED: %s: %d problems\n", store.Path(), len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintf(r.env.Stdout, "  %s\n", termsafe.String(p))
		}
		return fail("evidence store %s does not verify: %s", store.Path(), rep.Problems[0])
	}
	fmt.Fprintf(r.env.Stdout, "verify ok: %s: %d captures, %d listings, %d distinct contents; chain head %s\n",
		store.Path(), rep.Captures, rep.Listings, rep.Contents, rep.ChainHead)
	return nil
}
