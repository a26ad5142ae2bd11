package plan

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strings"

	"backfill/internal/source"
	"backfill/internal/termsafe"
)

// tally is what a plan's reports show of its items, gathered one item at a
// time in plan order: a plan written as it is made is reported without its
// items ever being held together.
type tally struct {
	full               bool // keep the full report's rows
	items, writes      int
	review             int // items that need a person
	hosted, selfHosted int // writes by provisioning class
	sources            map[string]int
	rollup             map[[2]string]int
	groups             map[string]*reviewTally // by review group
	writesByTenant     []*tenantRows           // full report only
}

// reviewTally is one review group's items: the full report's rows and, per
// tenant, the summary's count and first examples.
type reviewTally struct {
	n        int
	rows     strings.Builder
	byTenant map[string]*tenantReview
}

type tenantReview struct {
	n        int
	examples []string
}

// tenantRows are one tenant's writes in the full report.
type tenantRows struct {
	tenant string
	n      int
	rows   strings.Builder
}

func newTally(full bool) *tally {
	return &tally{full: full, sources: map[string]int{}, rollup: map[[2]string]int{}, groups: map[string]*reviewTally{}}
}

// add tallies the next item in plan order.
func (t *tally) add(it *Item) {
	t.items++
	if it.Verdict == Agree {
		t.writes++
		switch it.Provisioning {
		case hosted:
			t.hosted++
		case selfHosted:
			t.selfHosted++
		}
		src := "not recorded"
		if it.Evidence != nil && it.Evidence.Source != "" {
			src = it.Evidence.Source
		}
		t.sources[src]++
		if t.full {
			if n := len(t.writesByTenant); n == 0 || t.writesByTenant[n-1].tenant != it.Tenant {
				t.writesByTenant = append(t.writesByTenant, &tenantRows{tenant: it.Tenant})
			}
			tr := t.writesByTenant[len(t.writesByTenant)-1]
			tr.n++
			fmt.Fprintf(&tr.rows, "| `%s` | %s | %s | **%s** | %s | %s | %s |\n", it.WorkspaceID, cell(it.WorkspaceName), cell(it.Runtime),
				cell(it.Action.SetTemplate), cell(evidenceCell(*it)), cell(cpCell(*it)), cell(strings.Join(it.Notes, "; ")))
		}
	}
	if it.Action != nil {
		t.rollup[[2]string{it.Tenant, it.Action.SetTemplate}]++
	}
	if !it.Verdict.needsPerson() && !it.Drift {
		return
	}
	t.review++
	g := t.groups[reviewGroup(*it)]
	if g == nil {
		g = &reviewTally{byTenant: map[string]*tenantReview{}}
		t.groups[reviewGroup(*it)] = g
	}
	g.n++
	if t.full {
		fmt.Fprintf(&g.rows, "| %s | `%s` | %s | %s | %s | %s | %s | %s |\n", cell(it.Tenant), it.WorkspaceID, cell(it.WorkspaceName),
			cell(it.Runtime), cell(orDash(it.DBTemplate)), cell(evidenceCell(*it)), cell(cpCell(*it)), cell(it.Reason))
	}
	tr := g.byTenant[it.Tenant]
	if tr == nil {
		tr = &tenantReview{}
		g.byTenant[it.Tenant] = tr
	}
	tr.n++
	if len(tr.examples) < summaryExamples {
		tr.examples = append(tr.examples, fmt.Sprintf("`%s` %s: %s", it.WorkspaceID, cell(it.WorkspaceName), cell(it.Reason)))
	}
}

// writeReport writes the full Markdown review report: the inputs, the
// counts, every item that needs a person, then every write grouped by
// tenant. writeSummary is the one sized for a ticket.
func (t *tally) writeReport(w io.Writer, p *Plan, planPath string, warnings []string) error {
	b := &strings.Builder{}
	writeHeader(b, p, planPath, warnings)
	t.writeCounts(b, p)

	fmt.Fprintf(b, "\n## Needs a person (%d)\n", t.review)
	if t.review == 0 {
		fmt.Fprintf(b, "\nNothing.\n")
	}
	for _, group := range reviewGroups() {
		g := t.groups[group]
		if g == nil {
			continue
		}
		fmt.Fprintf(b, "\n### %s (%d)\n\n| tenant | workspace | name | runtime | DB | evidence | CP | reason |\n|---|---|---|---|---|---|---|---|\n", group, g.n)
		b.WriteString(g.rows.String())
	}

	fmt.Fprintf(b, "\n## Writes by tenant (%d)\n", t.writes)
	if t.writes == 0 {
		fmt.Fprintf(b, "\nNo writes.\n")
	}
	for _, tr := range t.writesByTenant {
		fmt.Fprintf(b, "\n### %s (%d)\n\n| workspace | name | runtime | set template | evidence | CP | notes |\n|---|---|---|---|---|---|---|\n", cell(tr.tenant), tr.n)
		b.WriteString(tr.rows.String())
	}
	writeFooter(b, p)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeHeader names the plan and its inputs. The evidence store is named
// by its chain head and capture count, which identify it wherever it is
// copied, not by a path relative to wherever plan ran.
func writeHeader(b *strings.Builder, p *Plan, planPath string, warnings []string) {
	fmt.Fprintf(b, "# backfill plan review\n\n")
	fmt.Fprintf(b, "- Plan: `%s`\n- Fingerprint: `%s`\n- Author: %s\n- Created: %s\n", planPath, p.Fingerprint, cell(p.Author), p.CreatedAt)
	if p.Backfill != "" {
		fmt.Fprintf(b, "- Made by: backfill %s\n", cell(p.Backfill))
	}
	in := p.Inputs
	fmt.Fprintf(b, "- Evidence: the store whose chain head is `%s` (%d captures)\n", in.Evidence.ChainHead, in.Evidence.Captures)
	fmt.Fprintf(b, "- Inventory: `%s` (sha256 `%s`)\n", in.Inventory.Path, in.Inventory.SHA256)
	fmt.Fprintf(b, "- CP records: `%s`, %d claims (sha256 `%s`)\n", in.CP.Source, in.CP.Claims, in.CP.SHA256)
	fmt.Fprintf(b, "- Catalog: `%s` (sha256 `%s`)\n", in.Catalog.Path, in.Catalog.SHA256)
	if in.Catalog.Manifest != "" {
		fmt.Fprintf(b, "- Manifest: `%s`\n", in.Catalog.Manifest)
	}
	// Bounded, so a plan made during a partition of a large fleet still
	// fits the summary's budget: the plan file names every tenant.
	un := p.Unreachable()
	for i, d := range un {
		if i == headerLines {
			fmt.Fprintf(b, "- … and %d more unreachable tenants (`backfill show` lists them; the plan's databases name each)\n", len(un)-headerLines)
			break
		}
		fmt.Fprintf(b, "- **Unreachable tenant** %s: %s\n", cell(clip(d.Tenant)), cell(clip(d.Unreachable)))
	}
	moved := 0
	for _, d := range p.Databases {
		if len(d.MovedFrom) == 0 {
			continue
		}
		if moved++; moved > headerLines {
			fmt.Fprintf(b, "- … and more moved tenants (the plan's databases name each, with `moved_from`)\n")
			break
		}
		fmt.Fprintf(b, "- **Moved tenant** %s: planned against %s, though its evidence was listed from %s (`plan --allow-moved`)\n",
			cell(clip(d.Tenant)), cell(clip(d.Ident())), cell(clip(strings.Join(d.MovedFrom, "; and "))))
	}
	for i, wn := range warnings {
		if i == headerLines {
			fmt.Fprintf(b, "- … and %d more warnings (see the plan's log)\n", len(warnings)-headerLines)
			break
		}
		fmt.Fprintf(b, "- **Warning:** %s\n", cell(clip(wn)))
	}
}

// headerLines bounds the unreachable tenants and the warnings the header
// lists, and clip each of their lines.
const headerLines = 20

func clip(s string) string {
	if r := []rune(s); len(r) > 300 {
		return string(r[:300]) + "…"
	}
	return s
}

// writeCounts writes the verdict counts, drift, provisioning classes and
// evidence sources of the writes.
func (t *tally) writeCounts(b *strings.Builder, p *Plan) {
	fmt.Fprintf(b, "\n## Counts\n\n| verdict | workspaces | writes |\n|---|---:|---:|\n")
	for _, v := range verdictsFor(p.FormatVersion) {
		writes := 0
		if v == Agree {
			writes = p.Counts[string(v)]
		}
		fmt.Fprintf(b, "| %s | %d | %d |\n", v, p.Counts[string(v)], writes)
	}
	fmt.Fprintf(b, "| **total** | **%d** | **%d** |\n", t.items, p.Counts[string(Agree)])
	fmt.Fprintf(b, "\n%d already-set workspaces show drift (their value differs from the evidence or the CP).\n", p.Counts["drift"])
	fmt.Fprintf(b, "\nWrites by provisioning class: %d hosted (instance_id set), %d self-hosted (instance_id NULL). "+
		"A write changes what the next provision of the workspace uses; a self-hosted workspace keeps its running config until someone restarts it.\n", t.hosted, t.selfHosted)
	t.writeSources(b)
}

func writeFooter(b *strings.Builder, p *Plan) {
	fmt.Fprintf(b, "\nEach write is `UPDATE public.workspaces SET template = <set template>, updated_at = now() WHERE id = <workspace> AND template = '' AND status <> 'removed'` "+
		"(and the runtime and kind the plan saw), applied only after `backfill approve` of fingerprint `%s`.\n", p.Fingerprint)
}

// itemsCSV writes items as CSV rows one at a time, after a header.
type itemsCSV struct{ cw *csv.Writer }

func newItemsCSV(w io.Writer) *itemsCSV {
	c := &itemsCSV{csv.NewWriter(w)}
	c.cw.Write([]string{"tenant", "workspace_id", "name", "runtime", "kind", "provisioning", "db_template", "db_status", "verdict", "drift",
		"set_template", "evidence_capture", "evidence_source", "evidence_template", "evidence_rule", "cp_templates", "cp_level", "reason"})
	return c
}

// add writes one item's row; a write error is kept by the csv.Writer for
// flush to return.
func (c *itemsCSV) add(it *Item) {
	var set, capID, src, tmpl, rule, cpT, cpL string
	if it.Action != nil {
		set = it.Action.SetTemplate
	}
	if e := it.Evidence; e != nil {
		capID, src, tmpl, rule = fmt.Sprint(e.CaptureID), e.Source, e.Template, e.Rule
	}
	if it.CP != nil {
		cpT, cpL = strings.Join(it.CP.Templates, " "), it.CP.Level
	}
	c.cw.Write(termsafe.Strings([]string{it.Tenant, it.WorkspaceID, it.WorkspaceName, it.Runtime, it.Kind, it.Provisioning, it.DBTemplate, it.DBStatus,
		string(it.Verdict), fmt.Sprint(it.Drift), set, capID, src, tmpl, rule, cpT, cpL, it.Reason}))
}

func (c *itemsCSV) flush() error {
	c.cw.Flush()
	return c.cw.Error()
}

// NeedsReview returns the items a person must look at, in plan order.
func NeedsReview(p *Plan) []Item {
	var out []Item
	for _, it := range p.Items {
		if it.Verdict.needsPerson() || it.Drift {
			out = append(out, it)
		}
	}
	return out
}

func reviewGroup(it Item) string {
	if it.Drift {
		return "drift"
	}
	return string(it.Verdict)
}

// reviewGroups orders the report's sections: disagreements first.
func reviewGroups() []string {
	return []string{string(Conflict), string(CPAmbiguous), string(CPMissing), string(UnknownTemplate), string(RuntimeMismatch),
		string(UnstableEvidence), string(StubEvidence), string(NoEvidence), "drift"}
}

// sourceNotes say what a write resting on each source class means.
var sourceNotes = map[string]string{
	source.Container:  "the workspace's running container",
	source.EIC:        "the workspace's EC2 instance",
	source.HostMirror: "the host's copy of /configs from the workspace's last provision, not the running workspace",
	source.Exec:       "the inventory's exec command",
	source.File:       "the inventory's file tree",
	source.Unverified: "a generic HTTP answer: nothing says whether the workspace or a template folder named like it answered",
}

// writeSources counts the writes per source class of their evidence.
func (t *tally) writeSources(b *strings.Builder) {
	if t.writes == 0 {
		return
	}
	by := t.sources
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(b, "\n| evidence source | writes | what answered |\n|---|---:|---|\n")
	for _, n := range names {
		fmt.Fprintf(b, "| %s | %d | %s |\n", cell(n), by[n], cell(sourceNotes[n]))
	}
	if n := by[source.Unverified]; n > 0 {
		fmt.Fprintf(b, "\n**%d writes rest on unverified sources**: captured by the generic http collector, which cannot tell the workspace's own config from a template folder's. Capture those tenants again with the files_api collector, or check each one.\n", n)
	}
	if n := by[source.HostMirror]; n > 0 {
		fmt.Fprintf(b, "\n%d writes rest on host-mirror captures: the config the workspace was last provisioned with.\n", n)
	}
}

func evidenceCell(it Item) string {
	if it.Evidence == nil {
		return "-"
	}
	e := it.Evidence
	s := fmt.Sprintf("capture %d: %s", e.CaptureID, e.Rule)
	if e.Source != "" {
		s = fmt.Sprintf("capture %d (%s): %s", e.CaptureID, e.Source, e.Rule)
	}
	if e.Template != "" {
		s += " → " + e.Template
	}
	return s
}

func cpCell(it Item) string {
	if it.CP == nil {
		return "-"
	}
	return strings.Join(it.CP.Templates, ", ") + " (" + it.CP.Level + ")"
}

func orDash(s string) string {
	if s == "" {
		return "''"
	}
	return s
}

// lineBreaks turns a cell's line breaks and tabs into spaces (built once:
// a report of 100,000 items calls cell for every column).
var lineBreaks = strings.NewReplacer("\r", " ", "\n", " ", "\t", " ")

// cell makes text safe inside a Markdown table cell, and on a terminal.
func cell(s string) string {
	s = lineBreaks.Replace(s)
	s = termsafe.String(s)
	s = strings.ReplaceAll(s, "\\", "\\\\")
	return strings.ReplaceAll(s, "|", "\\|")
}
