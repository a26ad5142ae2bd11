package plan

import (
	"io"
	"sort"
)

// The reports of a plan held in memory (Build's), which the tests compare
// with what a Writer streams.

// WriteReport writes the full Markdown review report: the inputs, the
// counts, every item that needs a person, then every write grouped by
// tenant. WriteSummary is the one sized for a ticket.
func WriteReport(w io.Writer, p *Plan, planPath string, warnings []string) error {
	return tallyOf(p, true).writeReport(w, p, planPath, warnings)
}

// WriteItemsCSV writes every item of the plan as one CSV row, for the
// reviewer who needs every row the summary leaves out.
func WriteItemsCSV(w io.Writer, p *Plan) error {
	c := newItemsCSV(w)
	for i := range p.Items {
		c.add(&p.Items[i])
	}
	return c.flush()
}

// WriteSummary writes the review report a ticket can hold: the inputs, the
// counts, the writes as a tenant × template rollup, and the items that need
// a person grouped by verdict and tenant with a few examples each, under
// 60,000 characters whatever the plan's size. WriteReport (or the
// CSV, WriteItemsCSV) carries every row.
func WriteSummary(w io.Writer, p *Plan, planPath, fullPath string, warnings []string) error {
	return tallyOf(p, false).writeSummary(w, p, planPath, fullPath, warnings)
}

// tallyOf tallies every item of p.
func tallyOf(p *Plan, full bool) *tally {
	t := newTally(full)
	for i := range p.Items {
		t.add(&p.Items[i])
	}
	return t
}

func sortItems(items []Item) {
	sort.Slice(items, func(i, j int) bool { return itemLess(&items[i], &items[j]) })
}
