package cli

import (
	"strings"
	"testing"
)

// TestCanaryOrFilterThatSelectsNothingFails: a canary or a filter that
// selects no write must not look like one that passed.
func TestCanaryOrFilterThatSelectsNothingFails(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	// nocp is in the inventory but has no writes in the plan.
	res := f.apply(t, "--execute", "--canary-tenant", "nocp")
	if res.code != 1 || !strings.Contains(res.stderr, "have no writes in plan") {
		t.Errorf("--canary-tenant nocp (no writes): exit %d, want 1 saying the selection has no writes", res.code)
	}
	// --tenant and --canary-tenant disjoint.
	res = f.apply(t, "--execute", "--tenant", "acme", "--canary-tenant", "concierge")
	if res.code == 0 {
		t.Errorf("--tenant acme --canary-tenant concierge exited 0 having done nothing")
	}
	if strings.Contains(res.stdout, "applied") {
		t.Errorf("something applied: %s", res.stdout)
	}
	// rollback --tenant of a tenant with nothing left to undo.
	if res := f.apply(t, "--execute", "--tenant", "acme"); res.code != 0 {
		t.Fatalf("apply acme: %d %s", res.code, res.stderr)
	}
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--tenant", "concierge")
	if res.code != 3 || !strings.Contains(res.stdout, "nothing left to roll back in the tenants selected") {
		t.Errorf("rollback of a tenant never applied: %d, does not say so or exits 0:\n%s", res.code, res.stdout)
	}
}
