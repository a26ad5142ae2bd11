package plan

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Writer writes a plan as Stream makes it: each item is encoded once, into
// a spool file beside the plan file, and counted and tallied for the
// reports (and written to the CSV, if one is asked for) as it comes, so
// that a plan of any size is written without its items ever being held
// together. Add every item in plan order, then Seal the plan Stream
// returned; Encode, EncodeCSV, WriteReport and WriteSummary follow. Close
// always.
type Writer struct {
	spool  *os.File // unlinked once open: a crash leaves nothing behind
	bw     *bufio.Writer
	csv    *itemsCSV // nil when no CSV is asked for
	csvF   *os.File  // its spool, unlinked too
	ie     *itemEncoder
	last   *Item
	counts map[string]int // by verdict, and "drift"
	tally  *tally
	sealed *Plan
}

// NewWriter starts a plan whose file will be path: the spools are made in
// path's directory. full keeps the rows of the full report (WriteReport);
// csv spools every item as a CSV row too (EncodeCSV).
func NewWriter(path string, full, csv bool) (*Writer, error) {
	f, err := spool(path, "items")
	if err != nil {
		return nil, err
	}
	w := &Writer{spool: f, bw: bufio.NewWriterSize(f, 256<<10), ie: newItemEncoder(), counts: map[string]int{}, tally: newTally(full)}
	if csv {
		if w.csvF, err = spool(path, "csv"); err != nil {
			f.Close()
			return nil, err
		}
		w.csv = newItemsCSV(w.csvF)
	}
	return w, nil
}

// spool creates a file beside path and unlinks it: what is written to it
// exists only while it is open.
func spool(path, what string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*."+what)
	if err != nil {
		return nil, fmt.Errorf("spool the plan's %s: %w", what, err)
	}
	os.Remove(f.Name())
	return f, nil
}

// Add writes the next item. Items must come in plan order, each workspace
// once.
func (w *Writer) Add(it *Item) error {
	if w.sealed != nil {
		return errors.New("add to a sealed plan")
	}
	if w.last != nil && !itemLess(w.last, it) {
		return fmt.Errorf("item %s: items are not in plan order", it.Key())
	}
	w.ie.encode(w.bw, it, w.tally.items == 0)
	count(w.counts, it)
	w.tally.add(it)
	if w.csv != nil {
		w.csv.add(it)
	}
	last := Item{Tenant: it.Tenant, WorkspaceID: it.WorkspaceID}
	w.last = &last
	return nil
}

// Seal gives p, the plan Stream returned (no items), the counts and the
// fingerprint of the items added, and flushes the CSV.
func (w *Writer) Seal(p *Plan) error {
	if p.Items != nil {
		return errors.New("seal a plan that holds its items: use Plan.Seal")
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("spool the plan's items: %w", err)
	}
	counts := countsOf(p.FormatVersion, nil)
	for v, n := range w.counts {
		if _, ok := counts[v]; !ok {
			return fmt.Errorf("verdict %q is not one of format version %d", v, p.FormatVersion)
		}
		counts[v] = n
	}
	p.Counts, p.Fingerprint = counts, ""
	h := sha256.New()
	if err := w.encode(h, p); err != nil {
		return err
	}
	p.Fingerprint = "sha256:" + hex.EncodeToString(h.Sum(nil))
	w.sealed = p
	if w.csv != nil {
		return w.csv.flush()
	}
	return nil
}

// encode writes p's canonical form with the spooled items.
func (w *Writer) encode(dst io.Writer, p *Plan) error {
	bw := bufio.NewWriterSize(dst, 64<<10)
	p.encodeHead(bw)
	if err := bw.Flush(); err != nil {
		return err
	}
	if _, err := w.spool.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(dst, w.spool); err != nil {
		return fmt.Errorf("read the plan's spooled items: %w", err)
	}
	_, err := io.WriteString(dst, itemsEnd(w.tally.items))
	return err
}

// Encode writes the sealed plan's canonical form, its items copied from
// the spool (by the kernel, when dst is a file).
func (w *Writer) Encode(dst io.Writer) error {
	if w.sealed == nil {
		return errors.New("the plan is not sealed")
	}
	return w.encode(dst, w.sealed)
}

// EncodeCSV writes the sealed plan's items as CSV (the Writer must have
// been made with csv), copied from its spool.
func (w *Writer) EncodeCSV(dst io.Writer) error {
	if w.sealed == nil || w.csv == nil {
		return errors.New("the CSV needs a sealed plan whose writer spooled it")
	}
	if _, err := w.csvF.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(dst, w.csvF)
	return err
}

// Items counts the items added.
func (w *Writer) Items() int { return w.tally.items }

// Writes counts the agree items added.
func (w *Writer) Writes() int { return w.tally.writes }

// NeedsReview counts the items added that a person must look at.
func (w *Writer) NeedsReview() int { return w.tally.review }

// WriteReport is plan.WriteReport of the sealed plan; the Writer must have
// been made with full.
func (w *Writer) WriteReport(out io.Writer, planPath string, warnings []string) error {
	if w.sealed == nil || !w.tally.full {
		return errors.New("the full report needs a sealed plan whose writer keeps its rows")
	}
	return w.tally.writeReport(out, w.sealed, planPath, warnings)
}

// WriteSummary is plan.WriteSummary of the sealed plan.
func (w *Writer) WriteSummary(out io.Writer, planPath, fullPath string, warnings []string) error {
	if w.sealed == nil {
		return errors.New("the plan is not sealed")
	}
	return w.tally.writeSummary(out, w.sealed, planPath, fullPath, warnings)
}

// Close releases the spools.
func (w *Writer) Close() error {
	if w.csvF != nil {
		w.csvF.Close()
	}
	return w.spool.Close()
}
