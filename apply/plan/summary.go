package plan

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// summaryBudget is the most characters WriteSummary writes: under the
// 65,536 of a GitHub comment (and near a Jira field's 32,767 with the
// details folded), so the review fits in the ticket it is pasted into.
const summaryBudget = 60000

// summaryExamples is how many items a group of items that need a person
// shows; the CSV has every one.
const summaryExamples = 3

// writeSummary writes the review report a ticket can hold: the inputs, the
// counts, the writes as a tenant × template rollup, and the items that need
// a person grouped by verdict and tenant with a few examples each, under
// 60,000 characters whatever the plan's size. The full report (or the
// CSV) carries every row.
func (t *tally) writeSummary(w io.Writer, p *Plan, planPath, fullPath string, warnings []string) error {
	b := &strings.Builder{}
	writeHeader(b, p, planPath, warnings)
	t.writeCounts(b, p)

	rollup := rollupRows(t.rollup)
	fmt.Fprintf(b, "\n## Writes (%d, in %d tenant × template rows; rollup `%s`)\n", t.writes, len(rollup), RollupDigest(rollup))
	if len(rollup) > 0 {
		open, closeTag := fold(len(rollup) > 20, "the rollup")
		b.WriteString(open)
		fmt.Fprintf(b, "| tenant | set template | writes |\n|---|---|---:|\n")
		shown := 0
		for _, r := range rollup {
			if b.Len() > summaryBudget/2 {
				break
			}
			fmt.Fprintf(b, "| %s | %s | %d |\n", cell(r.Tenant), cell(r.Template), r.Writes)
			shown++
		}
		if shown < len(rollup) {
			fmt.Fprintf(b, "\n%d more rows: `backfill show %s --writes`.\n", len(rollup)-shown, planPath)
		}
		b.WriteString(closeTag)
	}

	fmt.Fprintf(b, "\n## Needs a person (%d)\n", t.review)
	if t.review == 0 {
		fmt.Fprintf(b, "\nNothing.\n")
	}
	// The footer and the note on what was left out must still fit.
	budget := summaryBudget - 2000
	omitted := 0
	for _, group := range reviewGroups() {
		g := t.groups[group]
		if g == nil {
			continue
		}
		tenants := slices.Sorted(maps.Keys(g.byTenant))
		fmt.Fprintf(b, "\n### %s (%d in %d tenants)\n", group, g.n, len(tenants))
		open, closeTag := fold(len(tenants) > 10, group)
		b.WriteString(open)
		fmt.Fprintf(b, "| tenant | workspaces | for example |\n|---|---:|---|\n")
		for _, tn := range tenants {
			tr := g.byTenant[tn]
			row := fmt.Sprintf("| %s | %d | %s |\n", cell(tn), tr.n, strings.Join(tr.examples, "<br>"))
			if b.Len()+len(row) > budget {
				omitted += tr.n
				continue
			}
			b.WriteString(row)
		}
		b.WriteString(closeTag)
	}
	if omitted > 0 {
		fmt.Fprintf(b, "\n**%d more items that need a person did not fit in this summary**: see the full report or the CSV.\n", omitted)
	}
	if fullPath != "" {
		fmt.Fprintf(b, "\nEvery item, with its evidence, CP claim and reason: `%s`.\n", fullPath)
	}
	writeFooter(b, p)
	out := b.String()
	if len(out) > summaryBudget {
		// A backstop: the parts above are bounded, but a summary that does
		// not fit its ticket is no summary.
		cut := strings.LastIndex(out[:summaryBudget-300], "\n")
		out = out[:cut+1] + fmt.Sprintf("\n**The summary was cut at %d characters**: see the full report or the CSV.\n", summaryBudget)
	}
	_, err := io.WriteString(w, out)
	return err
}

// fold wraps a long table in a <details> block, which GitHub and GitLab
// render collapsed.
func fold(long bool, what string) (string, string) {
	if !long {
		return "\n", ""
	}
	return fmt.Sprintf("\n<details><summary>%s</summary>\n\n", what), "\n</details>\n"
}
