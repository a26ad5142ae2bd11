package plan

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestSummaryBudgetUnreachable: thousands of unreachable tenants still fit.
func TestSummaryBudgetUnreachable(t *testing.T) {
	p := bigPlan(1000, 50)
	for i := 0; i < 2000; i++ {
		p.Databases = append(p.Databases, TenantDatabase{Tenant: fmt.Sprintf("tenant-down-%04d", i),
			Unreachable: "connect: failed to connect to `user=backfill database=app`: dial tcp 10.0.0.1:5432: i/o timeout"})
	}
	var b bytes.Buffer
	if err := WriteSummary(&b, p, "plan.json", "full.md", nil); err != nil {
		t.Fatal(err)
	}
	if b.Len() >= summaryBudget {
		t.Errorf("summary is %d characters", b.Len())
	}
}

// TestSummaryBudgetWarnings: long warnings are clipped.
func TestSummaryBudgetWarnings(t *testing.T) {
	p := bigPlan(100, 5)
	var w []string
	for i := 0; i < 20; i++ {
		w = append(w, strings.Repeat("x", 5000))
	}
	var b bytes.Buffer
	WriteSummary(&b, p, "plan.json", "full.md", w)
	if b.Len() >= summaryBudget {
		t.Errorf("summary is %d characters", b.Len())
	}
}

// TestSummaryBudgetLongNames: long names and reasons still fit.
func TestSummaryBudgetLongNames(t *testing.T) {
	p := bigPlan(2000, 1000)
	for i := range p.Items {
		p.Items[i].Tenant = fmt.Sprintf("%s-%04d", strings.Repeat("t", 200), i%1000)
		if p.Items[i].Action != nil {
			p.Items[i].Action.SetTemplate = strings.Repeat("s", 200)
		}
		p.Items[i].Reason = strings.Repeat("r", 2000)
	}
	p.Seal()
	var b bytes.Buffer
	WriteSummary(&b, p, "plan.json", "full.md", nil)
	if b.Len() >= summaryBudget {
		t.Errorf("summary is %d characters", b.Len())
	}
}
