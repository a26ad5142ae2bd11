package plan

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// bigPlan is a plan of n workspaces over the given number of tenants, a tenth of them
// needing a person, with reasons as long as real ones.
func bigPlan(n, tenants int) *Plan {
	p := &Plan{FormatVersion: FormatVersion, Author: "alice", CreatedAt: "2026-11-27T15:00:00Z"}
	verdicts := []Verdict{Conflict, CPMissing, UnknownTemplate, NoEvidence, RuntimeMismatch}
	for i := 0; i < n; i++ {
		it := Item{Tenant: fmt.Sprintf("tenant-%04d", i%tenants), WorkspaceID: fmt.Sprintf("%08d-0000-4000-8000-%012d", i%tenants, i),
			WorkspaceName: fmt.Sprintf("workspace number %d of a large fleet", i), Runtime: "claude-code", Kind: "workspace", Provisioning: hosted,
			Evidence: &ItemEvidence{CaptureID: int64(i + 1), SHA256: strings.Repeat("ab", 32), Template: "seo-agent", Rule: "display-name", Captures: 1, Source: "container"},
			CP:       &ItemCP{Templates: []string{"seo-agent"}, Level: "tenant", Sources: []string{"cp.csv:2"}}}
		if i%10 == 0 {
			it.Verdict = verdicts[(i/10)%len(verdicts)]
			it.Reason = fmt.Sprintf("capture %d names seo-agent but the CP claims platform-agent (workspace claim at cp.csv:%d), which a person must settle", i+1, i)
		} else {
			it.Verdict, it.Action = Agree, &Action{SetTemplate: "seo-agent"}
		}
		p.Items = append(p.Items, it)
	}
	sortItems(p.Items)
	p.Seal()
	return p
}

// TestSummaryFitsATicket: at 5,000 and 100,000 workspaces the summary is
// under 60,000 characters, says what it left out, and the CSV has every row.
func TestSummaryFitsATicket(t *testing.T) {
	for _, c := range []struct{ n, tenants int }{{5000, 50}, {100000, 50}, {100000, 5000}} {
		n := c.n
		p := bigPlan(n, c.tenants)
		var b bytes.Buffer
		if err := WriteSummary(&b, p, "plan.json", "plan-full.md", nil); err != nil {
			t.Fatal(err)
		}
		s := b.String()
		if len(s) >= summaryBudget {
			t.Errorf("%d workspaces: summary is %d characters", n, len(s))
		}
		review := len(NeedsReview(p))
		for _, want := range []string{fmt.Sprintf("## Needs a person (%d)", review), "## Writes (", "<details>", "plan-full.md", p.Fingerprint} {
			if !strings.Contains(s, want) {
				t.Errorf("%d workspaces: summary lacks %q", n, want)
			}
		}
		var csv bytes.Buffer
		if err := WriteItemsCSV(&csv, p); err != nil {
			t.Fatal(err)
		}
		if rows := strings.Count(csv.String(), "\n"); rows != n+1 {
			t.Errorf("%d workspaces: CSV has %d lines", n, rows)
		}
		if c.tenants > 1000 && !strings.Contains(s, "did not fit in this summary") {
			t.Errorf("%d tenants: nothing said to be left out", c.tenants)
		}
		t.Logf("%d workspaces in %d tenants: summary %d characters, full CSV %d bytes", n, c.tenants, len(s), csv.Len())
	}
}
