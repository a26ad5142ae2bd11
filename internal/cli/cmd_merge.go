package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"

	"backfill/internal/evidence"
)

func (r *runner) mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "combine the evidence stores of snapshot shards (or their published copies) into one new store",
		ArgsUsage: "OUT IN...",
		Action:    r.merge,
	}
}

func (r *runner) merge(c *cli.Context) error {
	if c.NArg() < 2 {
		return &exitError{ExitUsage, errors.New("merge needs OUT and at least one IN store")}
	}
	outPath := c.Args().First()
	if _, err := os.Stat(outPath); err == nil {
		return fail("%s already exists: merge writes a new store", outPath)
	}
	var inputs []*evidence.Store
	defer func() {
		for _, s := range inputs {
			s.Close()
		}
	}()
	var seen []os.FileInfo
	for _, p := range c.Args().Slice()[1:] {
		if fi, err := os.Stat(p); err == nil {
			for _, prev := range seen {
				if os.SameFile(fi, prev) {
					return fail("%s is given twice: a store cannot be merged with itself", p)
				}
			}
			seen = append(seen, fi)
		}
		// Inputs are only read: a published copy on a shared or read-only
		// volume must not be migrated or switched to WAL mode by merging it.
		s, err := evidence.OpenReadOnly(c.Context, p)
		if err != nil {
			return fail("%v", err)
		}
		inputs = append(inputs, s)
		// A published copy (not in WAL mode) is complete and nothing
		// writes it: backfill writes a store only in WAL mode. It needs no
		// lock, which NFS could not give on a file opened read-only.
		wal, err := evidence.IsWAL(p)
		if err != nil {
			return fail("%v", err)
		}
		if !wal {
			continue
		}
		// A shard whose snapshot is still running would merge partially.
		if err := s.Lock(); err != nil && !errors.Is(err, evidence.ErrLocked) {
			return fail("%v", err)
		} else if err != nil {
			return fail("%v: is a snapshot still writing it? merge it when it has finished", err)
		}
	}
	// Build the store under a temporary name and link it into place only
	// when complete, so a merge killed half-way never leaves an OUT that
	// verifies while missing captures.
	tmpPath := fmt.Sprintf("%s.partial-%d", outPath, os.Getpid())
	removeTmp := func() {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(tmpPath + suffix)
		}
	}
	defer removeTmp()
	out, err := evidence.Open(c.Context, tmpPath)
	if err != nil {
		return fail("%v", err)
	}
	sources, err := evidence.Merge(c.Context, out, r.env.Now(), inputs...)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fail("merge: %v", err)
	}
	if err := publish(tmpPath, outPath); err != nil {
		return fail("merge: %v", err)
	}
	total := 0
	for _, s := range sources {
		fmt.Fprintf(r.env.Stdout, "  %s: %d captures, %d listings, chain head %s\n", s.Path, s.Captures, s.Listings, s.ChainHead)
		total += s.Captures
	}
	fmt.Fprintf(r.env.Stdout, "merged %d stores, %d captures, into %s; run `backfill verify --evidence %s`\n", len(sources), total, outPath, outPath)
	return nil
}

// publish moves the finished store at tmp to out without ever replacing an
// out created meanwhile: a hard link fails if out exists. Where the
// filesystem has no hard links, an exclusive create claims the name first
// and a rename then fills it.
func publish(tmp, out string) error {
	err := os.Link(tmp, out)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	f, cerr := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if cerr != nil {
		return cerr
	}
	f.Close()
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(out) // the placeholder we made, nothing else
		return err
	}
	return nil
}
