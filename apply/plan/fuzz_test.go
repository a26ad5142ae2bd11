package plan

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"backfill/internal/fixture"
)

// parseBound is how long one ParsePlan may take. Fuzzed inputs are small and
// parse in microseconds; the slack covers fuzzing's instrumentation on a
// busy machine.
const parseBound = 2 * time.Second

// goldenPlan names the plan `backfill plan` writes for a fleet with every
// verdict (internal/fixture, kept current by internal/cli's golden test).
const goldenPlan = "the golden plan"

var (
	// A JSON error names the line it is on.
	jsonWhere = regexp.MustCompile(`^not a plan file: line ([1-9][0-9]*): `)
	// A semantic error names the item by its tenant/workspace key.
	itemWhere = regexp.MustCompile(`^item [^\n]*/[^\n]*: `)
)

// FuzzParsePlan checks that ParsePlan never panics or hangs, that every
// error says where the problem is, and that an accepted plan is exactly
// what WriteFile writes for it, fingerprint included. Besides the seeds in
// testdata/fuzz/FuzzParsePlan (run with every plain `go test`), it is seeded
// with a plan written here and with the golden plan.
func FuzzParsePlan(f *testing.F) {
	for _, seed := range planSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		p, d, err := timedParse(b)
		if d > parseBound {
			// Wall time also counts a busy machine's pauses; an input that
			// is really slow is slow twice in a row.
			if _, d2, _ := timedParse(b); d2 > parseBound {
				t.Fatalf("ParsePlan took %v, then %v, on %d bytes", d, d2, len(b))
			}
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("ParsePlan modified its input")
		}
		if err != nil {
			if p != nil {
				t.Fatalf("ParsePlan returned a plan and an error: %v", err)
			}
			if why := nowhere(err, b); why != "" {
				t.Fatalf("%s: %v", why, err)
			}
			if _, again := ParsePlan(b); again == nil || again.Error() != err.Error() {
				t.Fatalf("not deterministic: %v, then %v", err, again)
			}
			return
		}

		if got := p.computeFingerprint(); got != p.Fingerprint {
			t.Fatalf("accepted plan's fingerprint %s, recomputed %s", p.Fingerprint, got)
		}
		path := filepath.Join(t.TempDir(), "plan.json")
		if err := p.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		written, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(written, b) {
			t.Fatalf("WriteFile of an accepted plan gives other bytes:\n%s", written)
		}
		again, err := ParsePlan(written)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("the rewritten plan parses differently: %v", err)
		}
		for _, it := range p.Agreed() {
			if it.Action == nil || it.Action.SetTemplate == "" || it.Action.ExpectCurrent != "" || it.DBTemplate != "" {
				t.Fatalf("accepted agree item %s with action %+v over %q", it.Key(), it.Action, it.DBTemplate)
			}
		}
	})
}

func timedParse(b []byte) (*Plan, time.Duration, error) {
	start := time.Now()
	p, err := ParsePlan(b)
	return p, time.Since(start), err
}

// nowhere says what is missing when err does not say where in b the problem
// is, and returns "" when it does.
func nowhere(err error, b []byte) string {
	msg := err.Error()
	switch {
	case errors.Is(err, errEdited):
		// About the whole file: its canonical form or its fingerprint.
		return ""
	case strings.HasPrefix(msg, "not a plan file: "):
		m := jsonWhere.FindStringSubmatch(msg)
		if m == nil {
			return "JSON error without a line"
		}
		if n, _ := strconv.Atoi(m[1]); n > bytes.Count(b, []byte("\n"))+1 {
			return "JSON error on a line past the end"
		}
		return ""
	case strings.HasPrefix(msg, "format_version "), msg == "counts do not match the items":
		// Named fields of the plan itself.
		return ""
	case itemWhere.MatchString(msg):
		return ""
	}
	return "error names no line, field or item"
}

// smallPlan is a plan as `backfill plan` builds one: items of several
// verdicts, sorted, one of them a write.
func smallPlan() *Plan {
	ev := func(id int64, tmpl, rule string) *ItemEvidence {
		return &ItemEvidence{CaptureID: id, SHA256: strings.Repeat("ab", 32), CapturedAt: "2026-11-27T09:00:01.001Z",
			Template: tmpl, Rule: rule, Captures: 1}
	}
	tenantClaim := &ItemCP{Templates: []string{"seo-agent"}, Level: "tenant", Sources: []string{"cp.csv:2"}}
	p := &Plan{
		FormatVersion: FormatVersion,
		Author:        "alice",
		CreatedAt:     "2026-11-27T15:00:00Z",
		Inputs: Inputs{
			Evidence:  EvidenceInput{Path: "./evidence.db", ChainHead: strings.Repeat("0f", 32), Captures: 3},
			Inventory: FileInput{Path: "inventory.yaml", SHA256: strings.Repeat("1e", 32)},
			CP:        CPInput{Source: "cp.csv", SHA256: strings.Repeat("2d", 32), Claims: 1},
			Catalog:   CatalogInput{Path: "catalog", SHA256: strings.Repeat("3c", 32)},
		},
		Items: []Item{
			{Tenant: "acme", WorkspaceID: "00000001-0000-4000-8000-000000000001", WorkspaceName: "seo-1", Kind: "workspace",
				Runtime: "claude-code", DBStatus: "online", Evidence: ev(1, "seo-agent", "display-name"), CP: tenantClaim,
				Verdict: Agree, Reason: "capture 1 (display-name) and the CP (tenant-wide claim at cp.csv:2) both name seo-agent",
				Notes:  []string{"capture 4 shows the runtime default claude-code-default: the workspace restarted after the earliest capture"},
				Action: &Action{SetTemplate: "seo-agent"}},
			{Tenant: "acme", WorkspaceID: "00000001-0000-4000-8000-000000000002", WorkspaceName: "set-drift", Kind: "workspace",
				Runtime: "claude-code", DBTemplate: "platform-agent", DBStatus: "online", Evidence: ev(2, "seo-agent", "display-name"),
				CP: tenantClaim, Verdict: AlreadySet, Drift: true,
				Reason: `template is already "platform-agent" in the database; drift: the evidence names seo-agent and the CP claims seo-agent`},
			{Tenant: "acme", WorkspaceID: "00000001-0000-4000-8000-000000000003", WorkspaceName: "research", Kind: "workspace",
				Runtime: "claude-code", DBStatus: "online", Evidence: ev(3, "research-agent", "template-key"), CP: tenantClaim,
				Verdict: UnknownTemplate, Reason: `capture 3 names template "research-agent", which is not in the catalog`},
			{Tenant: "nocp", WorkspaceID: "00000003-0000-4000-8000-000000000001", WorkspaceName: "gone", Kind: "workspace",
				Runtime: "claude-code", Verdict: Removed, Reason: "the workspace row no longer exists"},
		},
	}
	p.Seal()
	return p
}

// planSeeds returns the plans that seed the fuzzer: one written here by
// WriteFile, the golden plan, and forgeries with a valid fingerprint that
// only the semantic checks catch. It fails when any of them no longer gets
// the answer it was made for, so that no seed silently stops reaching the
// code it is meant to.
func planSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	dir := tb.TempDir()
	written := func(name string, p *Plan) []byte {
		path := filepath.Join(dir, name)
		if err := p.WriteFile(path); err != nil {
			tb.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	// forge edits a sealed plan and fingerprints it again without
	// recounting, as someone who knows the format could.
	forge := func(edit func(*Plan)) *Plan {
		p := smallPlan()
		edit(p)
		p.Fingerprint = p.computeFingerprint()
		return p
	}

	small := written("small.json", smallPlan())
	golden := fixture.Plan(FormatVersion)
	// A plan of format 1, as an earlier backfill wrote it: still read.
	v1 := fixture.Plan(1)
	if p, err := ParsePlan(v1); err != nil || p.FormatVersion != 1 || len(p.Databases) != 0 {
		tb.Fatalf("a format 1 plan no longer reads: %v", err)
	}
	for name, b := range map[string][]byte{"the plan written here": small, goldenPlan: golden} {
		if _, err := ParsePlan(b); err != nil {
			tb.Fatalf("%s does not parse (if the plan format changed, go test ./internal/cli -run TestPlanGoldenEveryVerdict -update rewrites it): %v",
				name, err)
		}
	}

	forgeries := []struct {
		name string
		plan *Plan
		want string
	}{
		{"unsorted", forge(func(p *Plan) { p.Items[0], p.Items[1] = p.Items[1], p.Items[0] }),
			"item acme/00000001-0000-4000-8000-000000000001: items are not sorted"},
		{"repeated", forge(func(p *Plan) { p.Items[1] = p.Items[0]; p.Seal() }),
			"item acme/00000001-0000-4000-8000-000000000001: items are not sorted"},
		{"agree-without-action", forge(func(p *Plan) { p.Items[0].Action = nil }),
			"item acme/00000001-0000-4000-8000-000000000001: only agree items carry an action"},
		{"action-over-a-value", forge(func(p *Plan) { p.Items[0].DBTemplate = "platform-agent" }),
			"item acme/00000001-0000-4000-8000-000000000001: an action must set a template over an empty one"},
		{"unknown-verdict", forge(func(p *Plan) { p.Items[2].Verdict = "maybe"; p.Seal() }),
			`item acme/00000001-0000-4000-8000-000000000003: unknown verdict "maybe"`},
		{"counts-off", forge(func(p *Plan) { p.Counts[string(Agree)]++ }),
			"counts do not match the items"},
	}
	seeds := [][]byte{small, golden}
	for _, fg := range forgeries {
		b := written(fg.name+".json", fg.plan)
		if _, err := ParsePlan(b); err == nil || !strings.HasPrefix(err.Error(), fg.want) {
			tb.Fatalf("forged plan %s: error %v, want %q", fg.name, err, fg.want)
		}
		seeds = append(seeds, b)
	}
	return seeds
}
